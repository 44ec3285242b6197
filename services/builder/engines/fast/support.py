"""Which payloads the fast engine writes itself; everything else goes to arctrl.

The fast engine reproduces the reference engine only for payloads the
reference maps without complaint and whose every feature was checked against
arctrl 3.2.3 (tests/builder/test_fast_engine.py). :func:`unsupported_reason`
returns a short reason code for any other payload - a payload the reference
rejects (its precise error then comes from the reference itself), an arctrl
rule the fast engine does not model, or a value arctrl would rewrite - so the
caller falls back instead of guessing.

It also returns the encoded study and assay identifiers, so the writer uses
exactly the reference mapping's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.builder.engines.fast.tables import SAMPLE_KINDS, TERM_KINDS
from services.builder.identifiers import encode_identifier
from services.common.errors import MappingError
from services.common.payload import AnnotationTable, Cell, Column, InvestigationPayload

#: Reason for payloads the reference mapping rejects (the reference raises the precise MappingError).
REJECTED = "rejected"
#: The licence file's path at the ARC's root: a data cell naming it is resolved against the ARC's files.
_LICENSE_FILE = "LICENSE"


class Unsupported(Exception):
    """The payload needs the reference engine; ``args[0]`` is the reason code."""


@dataclass
class Plan:
    """What the writer needs from the check: identifiers as the reference mapping encodes them."""

    studies: dict[str, str] = field(default_factory=dict)
    assays: dict[str, str] = field(default_factory=dict)


def _identifiers(originals: list[str], what: str) -> dict[str, str]:
    """Same rules as the reference mapping's ``_identifier_map``."""
    mapping: dict[str, str] = {}
    node_ids: set[str] = set()
    for original in originals:
        if original in mapping:
            raise Unsupported(REJECTED)
        try:
            encoded = encode_identifier(original, what)
        except MappingError:
            raise Unsupported(REJECTED) from None
        node_id = encoded.replace(" ", "_")
        if node_id in node_ids:
            raise Unsupported(REJECTED)
        mapping[original] = encoded
        node_ids.add(node_id)
    return mapping


def _json_ld_node(value: str | None) -> bool:
    """arctrl first tries to parse affiliations and addresses as JSON-LD nodes (an object with ``@id`` and ``@type``).

    Anything else - braces in plain text, other JSON - comes out as arctrl writes it (tested).
    """
    return value is not None and "{" in value and "@id" in value and "@type" in value


def _braces(value: str | None) -> bool:
    """arctrl splits authors on commas outside braces (and parses each as a JSON-LD node if it can)."""
    return value is not None and "{" in value


def check(payload: InvestigationPayload) -> Plan:
    """The plan for a supported (prepared) payload; raises :class:`Unsupported` with a reason code otherwise."""
    if not payload.identifier.strip() or not (payload.title or "").strip():
        raise Unsupported(REJECTED)
    plan = Plan(
        studies=_identifiers([s.identifier for s in payload.studies], "a study"),
        assays=_identifiers([a.identifier for a in payload.assays], "an assay"),
    )
    for assay in payload.assays:
        if any(ref not in plan.studies for ref in assay.study_refs):
            raise Unsupported(REJECTED)
        if len(set(assay.study_refs)) != len(assay.study_refs):
            raise Unsupported(REJECTED)  # arctrl refuses to register an assay twice on a study
    for contact in payload.contacts:
        if not (contact.first_name or "").strip() and not (contact.last_name or "").strip() and not contact.orcid:
            raise Unsupported(REJECTED)
        _check_target(plan, contact.target_type, contact.target_ref)
        if _json_ld_node(contact.affiliation) or _json_ld_node(contact.postal_address):
            raise Unsupported("json-like-person-field")
    for publication in payload.publications:
        if not (publication.title or "").strip():
            raise Unsupported(REJECTED)
        _check_target(plan, publication.target_type, publication.target_ref)
        if _braces(publication.authors):
            raise Unsupported("json-like-author")
    _check_tables(plan, payload.annotation_tables, payload.license is not None)
    return plan


def _check_target(plan: Plan, target_type: str, ref: str | None) -> None:
    if target_type == "study" and ref not in plan.studies:
        raise Unsupported(REJECTED)
    if target_type == "assay" and ref not in plan.assays:
        raise Unsupported(REJECTED)


def _check_tables(plan: Plan, tables: list[AnnotationTable], licensed: bool) -> None:
    names: dict[tuple[str, str], set[str]] = {}
    nodes: dict[str, str] = {}
    for table in tables:
        owners = plan.studies if table.target_type == "study" else plan.assays
        if table.target_ref not in owners:
            raise Unsupported(REJECTED)
        if not table.table_name.strip():
            raise Unsupported(REJECTED)
        seen = names.setdefault((table.target_type, table.target_ref), set())
        node_name = table.table_name.replace(" ", "_")
        if node_name in seen:
            raise Unsupported(REJECTED)
        seen.add(node_name)
        _check_columns(table, nodes, licensed)


def _check_columns(table: AnnotationTable, nodes: dict[str, str], licensed: bool) -> None:
    """Column rules of the reference mapping (single-use columns were made unique by the builder's decisions)."""
    for column in table.columns:
        kind = column.column_type
        if len({cell.row_index for cell in column.cells}) != len(column.cells):
            raise Unsupported(REJECTED)
        if kind in TERM_KINDS:
            _check_term_header(column)
        elif column.annotation is not None:
            raise Unsupported(REJECTED)
        elif kind == "protocol_type":
            if any(_unitized(cell) for cell in column.cells):
                raise Unsupported(REJECTED)
        elif any(cell.annotation is not None for cell in column.cells) or (
            kind == "comment" and not (column.column_value or "").strip()
        ):
            raise Unsupported(REJECTED)
        if kind in ("input", "output"):
            _check_io(column, kind, nodes, licensed)


def _unitized(cell: Cell) -> bool:
    """A value with a different annotation: a unitized cell, which a Protocol Type column cannot hold."""
    return cell.annotation is not None and cell.value is not None and cell.value != cell.annotation.term


def _check_term_header(column: Column) -> None:
    annotation = column.annotation
    value = (column.column_value or "").strip() or None
    if annotation is not None and value is not None and value != annotation.term:
        raise Unsupported(REJECTED)
    if annotation is None and value is None:
        raise Unsupported(REJECTED)


def _check_io(column: Column, kind: str, nodes: dict[str, str], licensed: bool) -> None:
    io_type = column.column_io_type or ("source_name" if kind == "input" else "sample_name")
    if io_type == "data":
        for cell in column.cells:
            _check_data_name(cell.value, licensed)
        return
    # Same node ids as the reference mapping's clash check (an output Source Name is a Sample node).
    prefix = "Sample" if kind == "output" and io_type == "source_name" else SAMPLE_KINDS[io_type]
    for cell in column.cells:
        name = cell.value or ""
        if not name:
            continue
        node_id = f"#{prefix}_{name.replace(' ', '_')}"
        if nodes.setdefault(node_id, name) != name:
            raise Unsupported(REJECTED)


def _check_data_name(value: str | None, licensed: bool) -> None:
    """Data cells arctrl writes differently: with a ``#`` selector (fragment nodes), or naming the licence file.

    Empty data cells and bare folders come out as arctrl writes them (the differential test has them).
    """
    if value is None:
        return
    if "#" in value:
        raise Unsupported("data-fragment")
    relative = value.lstrip("/")
    relative = relative[2:] if relative.startswith("./") else relative
    if licensed and relative == _LICENSE_FILE:
        raise Unsupported("data-path")
