"""Ontology annotations, property values and comments as arctrl writes them.

arctrl keeps an annotation's term accession (TAN) as given and derives "TAN
info" from it with unanchored regex searches (OBO PURL, ``PREFIX:id`` CURIE,
``.../PREFIX_id``), or from the term source when none matches. Whether a cell's
term gets a ``valueReference``, and a header a ``propertyID``, depends on that
info. An accession that contains a ``PREFIX:id`` part anywhere is written as
the URL arctrl makes of that part (``TermAccessionAndOntobeeUrlIfShort``):
bioregistry for a fixed list of ontologies, OLS for MS/PO/RO, the DPBO PURL,
else the OBO PURL - so ``https://bioregistry.io/NCIT:C25936`` stays itself and
``OBI:0000070`` becomes ``https://bioregistry.io/OBI:0000070`` (:func:`tan_url`).
"""

from __future__ import annotations

import re
from functools import lru_cache

from services.builder.accessions import term_source
from services.builder.engines.fast.graph import Node, put
from services.common.payload import OntologyAnnotation

_SHORT = re.compile(r"(\w+?):(\w+)")
_TAN_PATTERNS = (
    _SHORT,
    re.compile(r"http://purl.obolibrary.org/obo/(\w+?)_(\w+)"),
    re.compile(r".*\/(\w+?)[:_](\w+)"),
    re.compile(r".*252F(\w+?)_(\w+)"),
)


def accession(uri: str | None) -> str | None:
    """The TAN arctrl stores: empty and ``:`` mean none."""
    return None if uri in (None, "", ":") else uri


_OLS = "https://www.ebi.ac.uk/ols4/ontologies/{}/classes/http%253A%252F%252Fpurl.obolibrary.org%252Fobo%252F{}_{}"
#: arctrl's ``uri_parser_collection``: ontologies whose CURIEs get a URL other than the OBO PURL.
_URL_FORMATS = {
    "DPBO": "http://purl.org/nfdi4plants/ontology/dpbo/{0}_{1}",
    "MS": _OLS.format("ms", "{0}", "{1}"),
    "PO": _OLS.format("po", "{0}", "{1}"),
    "RO": _OLS.format("ro", "{0}", "{1}"),
    **{
        name: "https://bioregistry.io/{0}:{1}"
        for name in ("ENVO", "CHEBI", "GO", "OBI", "PATO", "PECO", "TO", "UO", "EFO", "NCIT", "OMP")
    },
}
_OBO_PURL = "http://purl.obolibrary.org/obo/{0}_{1}"


@lru_cache(maxsize=4096)
def has_tan_info(uri: str | None) -> bool:
    """arctrl's ``TANInfo.IsSome`` for an annotation built from this URI by the reference mapping."""
    tan = accession(uri)
    if tan is None:
        return False
    stripped = tan.strip()
    return any(pattern.search(stripped) for pattern in _TAN_PATTERNS) or bool(term_source(uri))


@lru_cache(maxsize=4096)
def tan_url(uri: str | None) -> str | None:
    """``TermAccessionAndOntobeeUrlIfShort`` with "" as none: the accession, or the URL of its ``PREFIX:id`` part."""
    tan = accession(uri)
    if tan is None:
        return None
    short = _SHORT.search(tan.strip())
    if short is None:
        return tan
    return _URL_FORMATS.get(short.group(1), _OBO_PURL).format(short.group(1), short.group(2))


def defined_term(name: str | None, uri: str | None) -> Node:
    """``BaseTypes.composeDefinedTerm``: id is the accession, else ``#OA_<name>``."""
    code = tan_url(uri)
    node: Node = {"@id": code or f"#OA_{name or ''}".replace(" ", "_"), "@type": "DefinedTerm"}
    node["name"] = name or ""
    put(node, "termCode", code)
    return node


def annotation_term(annotation: OntologyAnnotation) -> Node:
    return defined_term(annotation.term, annotation.uri)


def property_value_from_annotation(annotation: OntologyAnnotation) -> Node:
    """``BaseTypes.composePropertyValueFromOA`` (an assay's measurement type)."""
    node: Node = {"@id": f"#PV_{annotation.term}".replace(" ", "_"), "@type": "PropertyValue"}
    node["name"] = annotation.term
    put(node, "propertyID", tan_url(annotation.uri))
    return node


def property_value(
    kind: str,
    name: str,
    value: str | None,
    property_id: str | None,
    unit_code: str | None,
    unit_text: str | None,
    value_reference: str | None,
) -> Node:
    """``LDPropertyValue.create<Kind>``: the id holds name and value only (not the unit)."""
    ident = f"#{kind}_{name}" if value is None else f"#{kind}_{name}_{value}"
    node: Node = {"@id": ident.replace(" ", "_"), "@type": "PropertyValue", "additionalType": kind}
    node["name"] = name
    put(node, "value", value)
    put(node, "propertyID", property_id)
    put(node, "unitCode", unit_code)
    put(node, "unitText", unit_text)
    put(node, "valueReference", value_reference)
    return node


def comment(name: str, text: str | None) -> Node:
    """``BaseTypes.composeComment``."""
    ident = f"#LDComment_{name}" if text is None else f"#LDComment_{name}_{text}"
    node: Node = {"@id": ident.replace(" ", "_"), "@type": "Comment", "name": name}
    put(node, "text", text)
    return node


def comment_text(name: str, value: str | None) -> str:
    """``Comment.ToString()`` as arctrl writes a table or person comment into ``disambiguatingDescription``."""
    if value is None:
        return f'Comment {{Name = "{name}"}}'
    return f'Comment {{Name = "{name}", Value = "{value}"}}'
