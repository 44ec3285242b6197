"""Payload ontology annotations to arctrl ``OntologyAnnotation`` objects.

The payload carries term / URI / version. arctrl wants name, term accession and
term source REF; the upstream converter passed them positionally and ended up
with the URI as term source. Here the term source is derived from the accession
(``OBI`` from ``http://purl.obolibrary.org/obo/OBI_0000070`` or ``OBI:0000070``)
and arguments are passed by keyword.
"""

from __future__ import annotations

from arctrl import OntologyAnnotation as ArcOntologyAnnotation

from services.builder.accessions import term_source
from services.common.payload import OntologyAnnotation


def term(annotation: OntologyAnnotation) -> ArcOntologyAnnotation:
    """The arctrl annotation for a payload annotation."""
    return ArcOntologyAnnotation(name=annotation.term, tan=annotation.uri, tsr=term_source(annotation.uri))


def to_arctrl(annotation: OntologyAnnotation | None) -> ArcOntologyAnnotation | None:
    """The arctrl annotation for an optional payload annotation."""
    return None if annotation is None else term(annotation)


def named(name: str) -> ArcOntologyAnnotation:
    """A free-text term (a name without accession)."""
    return ArcOntologyAnnotation(name=name)
