"""The whole RO-Crate document: context, graph order, licence, descriptor, pinned dates.

arctrl flattens the investigation dataset (its ``sdDatePublished`` and
``license`` are appended last), then adds the metadata descriptor. Dates are
pinned exactly as :mod:`services.builder.engines.arctrl.rocrate` pins arctrl's clock stamps.
"""

from __future__ import annotations

from typing import Any

from services.builder.engines.fast.datasets import assay, investigation, study
from services.builder.engines.fast.graph import Graph, Node
from services.builder.engines.fast.persons import OrcidLookup
from services.builder.engines.fast.support import Plan
from services.common.payload import AnnotationTable, InvestigationPayload

#: Same value as services.builder.engines.arctrl.rocrate.UNDATED (that module imports arctrl).
UNDATED = "1970-01-01"
CONTEXT: list[Any] = [
    "https://w3id.org/ro/crate/1.2/context",
    {
        "Sample": "https://bioschemas.org/Sample",
        "LabProtocol": "https://bioschemas.org/LabProtocol",
        "LabProcess": "https://bioschemas.org/LabProcess",
        "computationalTool": "https://bioschemas.org/properties/computationalTool",
        "labEquipment": "https://bioschemas.org/properties/labEquipment",
        "reagent": "https://bioschemas.org/properties/reagent",
        "intendedUse": "https://bioschemas.org/properties/intendedUse",
        "executesLabProtocol": "https://bioschemas.org/properties/executesLabProtocol",
        "parameterValue": "https://bioschemas.org/properties/parameterValue",
        "columnIndex": "https://w3id.org/ro/terms/arc#columnIndex",
    },
]
#: The licence node arctrl writes without a licence, and the path of a licence given as text.
LICENSE: Node = {"@id": "#LICENSE", "@type": "CreativeWork", "text": "ALL RIGHTS RESERVED BY THE AUTHORS"}
LICENSE_PATH = "LICENSE"
DESCRIPTOR: Node = {
    "@id": "ro-crate-metadata.json",
    "@type": "CreativeWork",
    "conformsTo": {"@id": "https://w3id.org/ro/crate/1.2"},
    "about": {"@id": "./"},
}


def _by_owner(tables: list[AnnotationTable], kind: str) -> dict[str, list[AnnotationTable]]:
    owners: dict[str, list[AnnotationTable]] = {}
    for table in tables:
        if table.target_type == kind:
            owners.setdefault(table.target_ref, []).append(table)
    return owners


def rocrate(payload: InvestigationPayload, plan: Plan) -> dict[str, Any]:
    """The RO-Crate JSON-LD document of a payload :func:`support.check` accepted."""
    pinned = payload.public_release_date or payload.submission_date or UNDATED
    study_tables = _by_owner(payload.annotation_tables, "study")
    assay_tables = _by_owner(payload.annotation_tables, "assay")
    orcids = OrcidLookup(payload)
    parts: list[Node] = []
    for item in payload.assays:
        performers = [c for c in payload.contacts if c.target_type == "assay" and c.target_ref == item.identifier]
        registered = [plan.studies[ref] for ref in item.study_refs]
        encoded = plan.assays[item.identifier]
        parts.append(assay(item, encoded, registered, performers, assay_tables.get(item.identifier, []), orcids))
    for entry in payload.studies:
        contacts = [c for c in payload.contacts if c.target_type == "study" and c.target_ref == entry.identifier]
        publications = [
            p for p in payload.publications if p.target_type == "study" and p.target_ref == entry.identifier
        ]
        encoded = plan.studies[entry.identifier]
        parts.append(study(entry, encoded, contacts, publications, study_tables.get(entry.identifier, []), orcids))
    root = investigation(payload, parts, payload.public_release_date or pinned, orcids)
    root["sdDatePublished"] = pinned
    root["license"] = (
        dict(LICENSE)
        if payload.license is None
        else {"@id": LICENSE_PATH, "@type": "CreativeWork", "text": payload.license}
    )
    graph = Graph()
    graph.flatten(root)
    graph.add(dict(DESCRIPTOR))
    return {"@context": CONTEXT, "@graph": graph.compacted()}
