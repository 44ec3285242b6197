"""An arctrl ARC as rows of the source relations (contract v2): what a provider's views would show for it.

This is the inverse of the builder's mapping, written from the contract guide
(docs/contract.md) so that a real ARC can be sent through the real pipeline.
Everything the contract has a place for is written; what it has none for is
returned as :class:`Unplaced` (kind and reason), so the harness can name it
when it is missing from the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from services.dev.generator import Row, SourceRows

#: CompositeHeader tag -> contract column type (term columns, protocol columns, the rest).
_COLUMN_TYPES = {
    0: "component",
    1: "characteristic",
    2: "factor",
    3: "parameter",
    4: "protocol_type",
    5: "protocol_description",
    6: "protocol_uri",
    7: "protocol_version",
    8: "protocol_ref",
    9: "performer",
    10: "date",
    11: "input",
    12: "output",
    14: "comment",
}
#: IOType tag -> contract io type (FreeText, tag 4, has no place).
_IO_TYPES = {0: "source_name", 1: "sample_name", 2: "data", 3: "material_name"}
_TERM_TAGS = frozenset({0, 1, 2, 3})


@dataclass(frozen=True)
class Unplaced:
    """Something of the ARC the source contract has no place for."""

    kind: str
    reason: str
    where: str


@dataclass
class Conversion:
    rows: SourceRows
    unplaced: list[Unplaced] = field(default_factory=list)


def _comments(item: Any) -> list[dict[str, str | None]] | None:
    found = [{"name": c.Name, "value": c.Value} for c in item.Comments]
    return found or None


def _annotation(oa: Any) -> tuple[str | None, str | None, str | None]:
    """term / uri / version of an arctrl annotation (the contract has no version on an annotation itself)."""
    if oa is None or oa.is_empty():
        return None, None, None
    return oa.Name or None, oa.TermAccessionNumber or None, None


def _annotation_list(items: Any) -> list[dict[str, str | None]] | None:
    found = []
    for oa in items:
        name, uri, version = _annotation(oa)
        if name:
            found.append({"term": name, "uri": uri, "version": version})
    return found or None


def arc_rows(arc: Any) -> Conversion:
    """The source rows of one ARC (its investigation and everything below)."""
    identifier = arc.Identifier
    unplaced: list[Unplaced] = []
    license_ = getattr(arc, "License", None)
    rows = SourceRows(
        investigation={
            "identifier": identifier,
            "title": arc.Title,
            "description_text": arc.Description,
            "submission_date": arc.SubmissionDate,
            "public_release_date": arc.PublicReleaseDate,
            "comments": _comments(arc),
            "license": license_.Content if license_ is not None else None,
            "ontology_source_references": [
                {"name": s.Name, "file": s.File, "version": s.Version, "description": s.Description}
                for s in arc.OntologySourceReferences
            ]
            or None,
        }
    )
    assay_studies: dict[str, list[str]] = {}
    for study in arc.Studies:
        for assay_id in study.RegisteredAssayIdentifiers:
            assay_studies.setdefault(assay_id, []).append(study.Identifier)
    for study in arc.Studies:
        rows.studies.append(
            {
                "identifier": study.Identifier,
                "investigation_ref": identifier,
                "title": study.Title,
                "description_text": study.Description,
                "submission_date": study.SubmissionDate,
                "public_release_date": study.PublicReleaseDate,
                "comments": _comments(study),
                "design_descriptors": _annotation_list(study.StudyDesignDescriptors),
            }
        )
        rows.contacts += _contacts(identifier, "study", study.Identifier, study.Contacts)
        rows.publications += _publications(identifier, "study", study.Identifier, study.Publications)
        rows.annotation_cells += _cells(identifier, "study", study.Identifier, study.Tables, unplaced)
    for assay in arc.Assays:
        measurement = _annotation(assay.MeasurementType)
        technology = _annotation(assay.TechnologyType)
        platform = _annotation(assay.TechnologyPlatform)
        rows.assays.append(
            {
                "identifier": assay.Identifier,
                "investigation_ref": identifier,
                "study_ref": orjson.dumps(assay_studies.get(assay.Identifier, [])).decode(),
                "title": assay.Title,
                "description_text": assay.Description,
                "measurement_type_term": measurement[0],
                "measurement_type_uri": measurement[1],
                "measurement_type_version": measurement[2],
                "technology_type_term": technology[0],
                "technology_type_uri": technology[1],
                "technology_type_version": technology[2],
                "technology_platform": platform[0],
                "technology_platform_uri": platform[1],
                "technology_platform_version": platform[2],
                "comments": _comments(assay),
            }
        )
        rows.contacts += _contacts(identifier, "assay", assay.Identifier, assay.Performers)
        rows.annotation_cells += _cells(identifier, "assay", assay.Identifier, assay.Tables, unplaced)
    rows.contacts = _contacts(identifier, "investigation", identifier, arc.Contacts) + rows.contacts
    rows.publications = _publications(identifier, "investigation", identifier, arc.Publications) + rows.publications
    return Conversion(rows, unplaced)


def _contacts(investigation: str, target_type: str, target_ref: str, persons: Any) -> list[Row]:
    return [
        {
            "investigation_ref": investigation,
            "target_type": target_type,
            "target_ref": target_ref,
            "last_name": person.LastName,
            "first_name": person.FirstName,
            "mid_initials": person.MidInitials,
            "email": person.EMail,
            "phone": person.Phone,
            "fax": person.Fax,
            "postal_address": person.Address,
            "affiliation": person.Affiliation,
            "roles": _annotation_list(person.Roles) or [],
            "orcid": person.ORCID,
            "comments": _comments(person),
        }
        for person in persons
    ]


def _publications(investigation: str, target_type: str, target_ref: str, publications: Any) -> list[Row]:
    found = []
    for publication in publications:
        status = _annotation(publication.Status)
        found.append(
            {
                "investigation_ref": investigation,
                "target_type": target_type,
                "target_ref": target_ref,
                "pubmed_id": publication.PubMedID,
                "doi": publication.DOI,
                "authors": publication.Authors,
                "title": publication.Title,
                "status_term": status[0],
                "status_uri": status[1],
                "status_version": status[2],
                "comments": _comments(publication),
            }
        )
    return found


def _cells(investigation: str, target_type: str, target_ref: str, tables: Any, unplaced: list[Unplaced]) -> list[Row]:
    cells: list[Row] = []
    for table in tables:
        where = f"{target_type} '{target_ref}' table '{table.Name}'"
        first = len(cells)
        for index, column in enumerate(table.Columns):
            header = column.header
            column_fields = _column_fields(header, f"{where} column {index}", unplaced)
            if column_fields is None:
                continue
            place = {
                "investigation_ref": investigation,
                "target_type": target_type,
                "target_ref": target_ref,
                "table_name": table.Name,
                **column_fields,
                "column_index": index,
            }
            values = [
                (row, value)
                for row, cell in enumerate(column.cells)
                if (value := _cell_fields(cell, f"{where} column {index} row {row}", unplaced)) is not None
            ]
            # A column without a single non-empty cell still is a column: one empty cell keeps it.
            cells += [{**place, "row_index": row, **value} for row, value in values or [(0, _EMPTY_CELL)]]
        if len(cells) == first:  # no column: one row with the table's fields declares the table
            cells.append(
                {
                    "investigation_ref": investigation,
                    "target_type": target_type,
                    "target_ref": target_ref,
                    "table_name": table.Name,
                    **dict.fromkeys(_COLUMN_FIELDS),
                    "column_index": None,
                    "row_index": 0,
                    **_EMPTY_CELL,
                }
            )
    return cells


_COLUMN_FIELDS = (
    "column_type",
    "column_io_type",
    "column_value",
    "column_annotation_term",
    "column_annotation_uri",
    "column_annotation_version",
)
_EMPTY_CELL: dict[str, str | None] = {
    "cell_value": None,
    "cell_annotation_term": None,
    "cell_annotation_uri": None,
    "cell_annotation_version": None,
}


def _column_fields(header: Any, where: str, unplaced: list[Unplaced]) -> dict[str, Any] | None:
    column_type = _COLUMN_TYPES.get(header.tag)
    if column_type is None:
        unplaced.append(Unplaced("column", "a free-text header has no column type in the contract", where))
        return None
    fields: dict[str, Any] = {
        "column_type": column_type,
        "column_io_type": None,
        "column_value": None,
        "column_annotation_term": None,
        "column_annotation_uri": None,
        "column_annotation_version": None,
    }
    if header.tag in _TERM_TAGS:
        name, uri, version = _annotation(header.TryGetTerm())
        fields["column_value"] = name
        if uri is not None:
            fields |= {
                "column_annotation_term": name,
                "column_annotation_uri": uri,
                "column_annotation_version": version,
            }
    elif column_type in ("input", "output"):
        io = header.TryIOType()
        if io is None or io.tag not in _IO_TYPES:
            unplaced.append(Unplaced("column", "a free-text input/output type has no io type in the contract", where))
            return None
        fields["column_io_type"] = _IO_TYPES[io.tag]
    elif column_type == "comment":
        fields["column_value"] = header.ToString()[len("Comment [") : -1]
    return fields


def _cell_fields(cell: Any, where: str, unplaced: list[Unplaced]) -> dict[str, str | None] | None:
    """The cell's value and annotation; ``None`` for an empty cell (no row in the source)."""
    if cell.is_empty():
        return None
    if cell.is_term:
        name, uri, version = _annotation(cell.AsTerm)
        if uri is None:
            return {**_EMPTY_CELL, "cell_value": name}
        return {
            "cell_value": name,
            "cell_annotation_term": name,
            "cell_annotation_uri": uri,
            "cell_annotation_version": version,
        }
    if cell.is_unitized:
        value, unit = cell.AsUnitized
        name, uri, version = _annotation(unit)
        return {
            "cell_value": value,
            "cell_annotation_term": name,
            "cell_annotation_uri": uri,
            "cell_annotation_version": version,
        }
    if cell.is_data:
        data = cell.AsData
        if data.Format or data.SelectorFormat:
            unplaced.append(Unplaced("cell", "a data cell's format and selector format have no place", where))
        return {**_EMPTY_CELL, "cell_value": data.NameText}
    return {**_EMPTY_CELL, "cell_value": cell.AsFreeText}
