"""Investigation, study and assay ``Dataset`` nodes, properties in arctrl's order.

``LDDataset.create`` sets: identifier, creator, dateCreated, datePublished,
dateModified, description, hasPart, name, citation, comment, about,
measurementMethod, measurementTechnique, variableMeasured. ``hasPart`` of a
study or assay lists its data files and is present (possibly empty) exactly
when it has tables; the investigation's lists its assays, then its studies.
``dateModified`` is arctrl's reading of a comment named ``dateModified`` (an
investigation's or a study's; the comment stays too). Identifiers are the
reference mapping's (encoded) ones, and the same arcstream comments are added.
"""

from __future__ import annotations

import orjson

from services.builder.engines.fast.graph import Node, put
from services.builder.engines.fast.persons import OrcidLookup, person, publication
from services.builder.engines.fast.tables import owner_processes
from services.builder.engines.fast.terms import annotation_term, comment, defined_term, property_value_from_annotation
from services.builder.identifiers import ORIGINAL_IDENTIFIER_COMMENT
from services.common.payload import (
    AnnotationTable,
    Assay,
    Comment,
    Contact,
    InvestigationPayload,
    OntologyAnnotation,
    Publication,
    Study,
)

#: Same value as services.builder.engines.arctrl.mapping.REGISTERED_STUDIES_COMMENT (that module imports arctrl).
REGISTERED_STUDIES_COMMENT = "arcstream:registered-studies"
#: Comment name arctrl turns into a dataset's ``dateModified`` (``date_time.date_modified_key``).
DATE_MODIFIED = "dateModified"


def _comments(
    source: list[Comment], original: str, encoded: str, studies: list[str] | None = None
) -> list[Node] | None:
    found = [comment(c.name or "", c.value) for c in source]
    if original != encoded:
        found.append(comment(ORIGINAL_IDENTIFIER_COMMENT, original))
    if studies:
        found.append(comment(REGISTERED_STUDIES_COMMENT, orjson.dumps(studies).decode()))
    return found or None


def _date_modified(comments: list[Comment]) -> str | None:
    """The value of the first comment named ``dateModified`` (arctrl keeps date strings as given)."""
    return next((c.value for c in comments if c.name == DATE_MODIFIED), None)


def _tables(tables: list[AnnotationTable], encoded: str) -> tuple[list[Node] | None, list[Node] | None]:
    """(processes, data files) of a study or assay; both ``None`` without tables, as in arctrl."""
    if not tables:
        return None, None
    return owner_processes(tables, encoded)


def study(
    item: Study,
    encoded: str,
    contacts: list[Contact],
    publications: list[Publication],
    tables: list[AnnotationTable],
    orcids: OrcidLookup,
) -> Node:
    node: Node = {"@id": f"studies/{encoded}/", "@type": "Dataset", "additionalType": "Study", "identifier": encoded}
    processes, files = _tables(tables, encoded)
    put(node, "creator", [person(c, orcids) for c in contacts] or None)
    put(node, "dateCreated", item.submission_date)
    put(node, "datePublished", item.public_release_date)
    put(node, "dateModified", _date_modified(item.comments))
    put(node, "description", item.description_text)
    put(node, "hasPart", files)
    put(node, "name", item.title)
    put(node, "citation", [publication(p) for p in publications] or None)
    put(node, "comment", _comments(item.comments, item.identifier, encoded))
    put(node, "about", processes)
    return node


def _platform(platform: str | OntologyAnnotation | None) -> Node | None:
    if isinstance(platform, OntologyAnnotation):
        return annotation_term(platform)
    return defined_term(platform, None) if platform else None


def assay(
    item: Assay,
    encoded: str,
    registered: list[str],
    performers: list[Contact],
    tables: list[AnnotationTable],
    orcids: OrcidLookup,
) -> Node:
    node: Node = {"@id": f"assays/{encoded}/", "@type": "Dataset", "additionalType": "Assay", "identifier": encoded}
    processes, files = _tables(tables, encoded)
    put(node, "creator", [person(c, orcids) for c in performers] or None)
    put(node, "description", item.description_text)
    put(node, "hasPart", files)
    put(node, "name", item.title)
    put(node, "comment", _comments(item.comments, item.identifier, encoded, registered))
    put(node, "about", processes)
    if item.technology_type is not None:
        node["measurementMethod"] = annotation_term(item.technology_type)
    put(node, "measurementTechnique", _platform(item.technology_platform))
    if item.measurement_type is not None:
        node["variableMeasured"] = [property_value_from_annotation(item.measurement_type)]
    return node


def investigation(payload: InvestigationPayload, parts: list[Node], date_published: str, orcids: OrcidLookup) -> Node:
    node: Node = {"@id": "./", "@type": "Dataset", "additionalType": "Investigation"}
    node["identifier"] = payload.identifier
    contacts = [c for c in payload.contacts if c.target_type == "investigation"]
    put(node, "creator", [person(c, orcids) for c in contacts] or None)
    put(node, "dateCreated", payload.submission_date)
    node["datePublished"] = date_published
    put(node, "dateModified", _date_modified(payload.comments))
    put(node, "description", payload.description_text)
    put(node, "hasPart", parts or None)
    node["name"] = payload.title
    publications = [p for p in payload.publications if p.target_type == "investigation"]
    put(node, "citation", [publication(p) for p in publications] or None)
    put(node, "comment", [comment(c.name or "", c.value) for c in payload.comments] or None)
    return node
