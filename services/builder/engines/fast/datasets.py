"""Investigation, study and assay ``Dataset`` nodes, properties in arctrl's order.

``LDDataset.create`` sets: identifier, creator, dateCreated, datePublished,
description, hasPart, name, citation, comment, about, measurementMethod,
measurementTechnique, variableMeasured. ``hasPart`` of a study or assay lists
its data files and is present (possibly empty) exactly when it has tables; the
investigation's lists its assays, then its studies. Identifiers are the
reference mapping's (encoded) ones, and the same arcstream comments are added.
"""

from __future__ import annotations

import orjson

from services.builder.engines.fast.graph import Node, put
from services.builder.engines.fast.persons import person, publication
from services.builder.engines.fast.tables import owner_processes
from services.builder.engines.fast.terms import annotation_term, comment, defined_term, property_value_from_annotation
from services.builder.identifiers import ORIGINAL_IDENTIFIER_COMMENT
from services.common.payload import AnnotationTable, Assay, Contact, InvestigationPayload, Publication, Study

#: Same value as services.builder.engines.arctrl.mapping.REGISTERED_STUDIES_COMMENT (that module imports arctrl).
REGISTERED_STUDIES_COMMENT = "arcstream:registered-studies"


def _comments(original: str, encoded: str, studies: list[str] | None = None) -> list[Node] | None:
    found = []
    if original != encoded:
        found.append(comment(ORIGINAL_IDENTIFIER_COMMENT, original))
    if studies:
        found.append(comment(REGISTERED_STUDIES_COMMENT, orjson.dumps(studies).decode()))
    return found or None


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
) -> Node:
    node: Node = {"@id": f"studies/{encoded}/", "@type": "Dataset", "additionalType": "Study", "identifier": encoded}
    processes, files = _tables(tables, encoded)
    put(node, "creator", [person(c) for c in contacts] or None)
    put(node, "dateCreated", item.submission_date)
    put(node, "datePublished", item.public_release_date)
    put(node, "description", item.description_text)
    put(node, "hasPart", files)
    put(node, "name", item.title)
    put(node, "citation", [publication(p) for p in publications] or None)
    put(node, "comment", _comments(item.identifier, encoded))
    put(node, "about", processes)
    return node


def assay(
    item: Assay,
    encoded: str,
    registered: list[str],
    performers: list[Contact],
    tables: list[AnnotationTable],
) -> Node:
    node: Node = {"@id": f"assays/{encoded}/", "@type": "Dataset", "additionalType": "Assay", "identifier": encoded}
    processes, files = _tables(tables, encoded)
    put(node, "creator", [person(c) for c in performers] or None)
    put(node, "description", item.description_text)
    put(node, "hasPart", files)
    put(node, "name", item.title)
    put(node, "comment", _comments(item.identifier, encoded, registered))
    put(node, "about", processes)
    if item.technology_type is not None:
        node["measurementMethod"] = annotation_term(item.technology_type)
    if item.technology_platform:
        node["measurementTechnique"] = defined_term(item.technology_platform, None)
    if item.measurement_type is not None:
        node["variableMeasured"] = [property_value_from_annotation(item.measurement_type)]
    return node


def investigation(payload: InvestigationPayload, parts: list[Node], date_published: str) -> Node:
    node: Node = {"@id": "./", "@type": "Dataset", "additionalType": "Investigation"}
    node["identifier"] = payload.identifier
    contacts = [c for c in payload.contacts if c.target_type == "investigation"]
    put(node, "creator", [person(c) for c in contacts] or None)
    put(node, "dateCreated", payload.submission_date)
    node["datePublished"] = date_published
    put(node, "description", payload.description_text)
    put(node, "hasPart", parts or None)
    node["name"] = payload.title
    publications = [p for p in payload.publications if p.target_type == "investigation"]
    put(node, "citation", [publication(p) for p in publications] or None)
    return node
