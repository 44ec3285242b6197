"""Turn the source rows of one investigation into an :class:`InvestigationPayload`.

This is where the known real-data quirks are accepted (DESIGN.md):

- ``study_ref`` as a JSON array, a bare identifier, or an already-parsed list;
- the same assay repeated once per study link: merged (study links united)
  when every other field agrees, otherwise the investigation fails;
- duplicate study rows: merged when identical, otherwise the investigation fails;
- ``roles`` as JSON text or an already-parsed list; role entries with an empty term dropped
  (an empty term means "no annotation");
- a missing ``first_name`` is kept as ``null`` (the builder decides what to do with it).

Contract v2 columns (docs/contract.md) are read when the source has them:
comments (JSON ``[{"name","value"}]``, or an object of name -> value), design
descriptors and ontology source references (JSON lists), the technology
platform's URI/version, ORCID, licence, and ``column_index``, which keeps equal
headers at different positions apart and orders a table's columns.

Anything else that does not fit the payload model raises :class:`AssemblyError`
with a one-line reason; the caller reports it and continues. The result is the
validated payload as plain data (:func:`services.common.payload.validate_document`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from services.common.errors import PayloadError
from services.common.payload import PAYLOAD_SCHEMA_VERSION, validate_document

Row = Mapping[str, Any]


class AssemblyError(PayloadError):
    """The rows of one investigation cannot form a valid payload."""


def text(value: Any) -> str | None:
    """Source value as text: dates as ISO 8601, empty strings kept, ``None`` kept."""
    if value is None or type(value) is str:
        return value
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def annotation(row: Row, prefix: str) -> dict[str, str | None] | None:
    """The ``<prefix>_term/uri/version`` triple, or ``None`` when the term is empty."""
    return _annotation(row.get(f"{prefix}_term"), row.get(f"{prefix}_uri"), row.get(f"{prefix}_version"))


def _json_value(value: Any, what: str) -> Any:
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise AssemblyError(f"{what} is not valid JSON: {value[:60]!r}") from exc
    return value


def study_refs(value: Any) -> list[str]:
    """``study_ref``: JSON array of identifiers, one bare identifier, or an already-parsed list."""
    if value is None:
        return []
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped:
            return []
        if not stripped.startswith("["):
            return [stripped]
        value = _json_value(stripped, "study_ref")
    if isinstance(value, list) and all(isinstance(item, str | int) for item in value):
        return [str(item) for item in value]
    raise AssemblyError(f"study_ref must be a list of study identifiers, got {value!r:.60}")


def roles(value: Any, what: str = "roles") -> list[dict[str, str | None]]:
    """``roles`` (or another annotation list): ``[{"term","uri","version"}]`` as JSON text or a parsed list.

    Entries with an empty term are no annotation and are left out.
    """
    if value is None:
        return []
    parsed = _json_value(value, what)
    if not isinstance(parsed, list) or not all(isinstance(item, dict) for item in parsed):
        raise AssemblyError(f"{what} must be a list of {{term, uri, version}} objects, got {parsed!r:.60}")
    result = []
    for item in parsed:
        term = text(item.get("term"))
        if term and term.strip():
            result.append({"term": term, "uri": text(item.get("uri")), "version": text(item.get("version"))})
    return result


def comments(value: Any, what: str = "comments") -> list[dict[str, str | None]]:
    """``comments``: ``[{"name","value"}]`` (or ``{name: value}``) as JSON text or already parsed; ``null`` is none."""
    if value is None:
        return []
    parsed = _json_value(value, what)
    if isinstance(parsed, dict):
        parsed = [{"name": name, "value": item} for name, item in parsed.items()]
    if not isinstance(parsed, list) or not all(isinstance(item, dict) for item in parsed):
        raise AssemblyError(f"{what} must be a list of {{name, value}} objects, got {parsed!r:.60}")
    return [{"name": text(item.get("name")), "value": text(item.get("value"))} for item in parsed]


def ontology_source_references(value: Any) -> list[dict[str, str | None]]:
    """``ontology_source_references``: ``[{"name","file","version","description"}]``, JSON text or parsed."""
    parsed = _json_value(value, "ontology_source_references") if value is not None else []
    if not isinstance(parsed, list) or not all(isinstance(item, dict) for item in parsed):
        raise AssemblyError(f"ontology_source_references must be a list of objects, got {parsed!r:.60}")
    return [
        {key: text(item.get(key)) for key in ("name", "file", "version", "description")}
        for item in parsed
        if (text(item.get("name")) or "").strip()
    ]


def technology_platform(row: Row) -> str | dict[str, str | None] | None:
    """The platform's name (v1), or an annotation when the v2 URI/version columns hold something."""
    uri, version = row.get("technology_platform_uri"), row.get("technology_platform_version")
    if uri is None and version is None:
        return text(row.get("technology_platform"))
    return _annotation(row.get("technology_platform"), uri, version)


def _merge_duplicates(kind: str, items: Iterable[dict[str, Any]], ignore: str | None = None) -> list[dict[str, Any]]:
    """One entry per identifier; rows may repeat only when equal (``ignore``d field merged as a union)."""
    merged: dict[str, dict[str, Any]] = {}
    for item in items:
        seen = merged.get(item["identifier"])
        if seen is None:
            merged[item["identifier"]] = item
            continue
        if {k: v for k, v in seen.items() if k != ignore} != {k: v for k, v in item.items() if k != ignore}:
            raise AssemblyError(f"{kind} {item['identifier']!r} appears twice with different values")
        if ignore is not None:
            seen[ignore] = seen[ignore] + [ref for ref in item[ignore] if ref not in seen[ignore]]
    return list(merged.values())


def _annotation(term: Any, uri: Any, version: Any) -> dict[str, str | None] | None:
    term = text(term)
    if term is None or not term.strip():
        return None
    return {"term": term, "uri": text(uri), "version": text(version)}


@dataclass(frozen=True)
class CellLayout:
    """Where a cell row's fields are: the v1 layout, or with ``column_index`` after the column's fields."""

    column_index: bool = False

    @property
    def cell_start(self) -> int:
        """Index of ``row_index``: after the investigation, the table (3 fields) and the column (6 or 7)."""
        return 11 if self.column_index else 10


V1_CELLS = CellLayout()


def tables_from_cells(rows: Iterable[tuple[Any, ...]], layout: CellLayout = V1_CELLS) -> list[dict[str, Any]]:
    """Group one-row-per-cell records into tables and columns, in order of first appearance.

    Rows are tuples in the column order the loader selects (``selected_columns``):
    the investigation, the table (3 fields), the column (6, plus ``column_index``
    in v2), then the cell (5). Tens of cells per investigation make this the hot
    loop of a snapshot, so each cell costs one lookup of its raw table-and-column
    fields; how those fields name a column (an empty term is no annotation) is
    worked out once per distinct column. With ``column_index`` the position is
    part of what names a column (equal headers at two positions are two columns)
    and orders the columns of each table. A row whose ``column_type`` is null
    declares a table without columns (an ISA process with neither inputs nor
    outputs); it must not hold a cell value.
    """
    tables: dict[tuple[Any, ...], dict[tuple[Any, ...], dict[str, Any]]] = {}
    cells_by_raw_column: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    markers: list[tuple[Any, ...]] = []
    positioned = False
    start = layout.cell_start
    value_at, term_at, uri_at, version_at = start + 1, start + 2, start + 3, start + 4
    for row in rows:
        raw_column = row[1:start]
        cells = cells_by_raw_column.get(raw_column)
        if cells is None:
            cells = cells_by_raw_column[raw_column] = _column(tables, raw_column)["cells"]
            if raw_column[3] is None:
                markers.append(raw_column)
            elif layout.column_index and raw_column[9] is not None:
                positioned = True
        value, term = row[value_at], row[term_at]
        cells.append(
            {
                "row_index": row[start],
                "value": value if value is None or type(value) is str else text(value),
                "annotation": None if term is None else _annotation(term, row[uri_at], row[version_at]),
            }
        )
    for raw_column in markers:
        if any(cell["value"] is not None or cell["annotation"] is not None for cell in cells_by_raw_column[raw_column]):
            raise AssemblyError(
                f"table {raw_column[2]!r} of {raw_column[0]} {raw_column[1]!r} has a cell without column_type"
            )
    return [
        {
            "target_type": text(target_type),
            "target_ref": text(target_ref),
            "table_name": text(table_name),
            "columns": _ordered(columns) if positioned else list(columns.values()),
        }
        for (target_type, target_ref, table_name), columns in tables.items()
    ]


def _ordered(columns: dict[tuple[Any, ...], dict[str, Any]]) -> list[dict[str, Any]]:
    """Columns by ``column_index`` (the last field of their key); without one, after those that have one."""
    ordered = sorted(columns.items(), key=lambda item: (item[0][-1] is None, item[0][-1] or 0))
    return [column for _, column in ordered]


def _column(tables: dict[tuple[Any, ...], dict[tuple[Any, ...], dict[str, Any]]], raw: Sequence[Any]) -> dict[str, Any]:
    """The column (created on first sight) that raw table-and-column fields name (``column_index`` tenth, if read)."""
    target_type, target_ref, table_name, column_type, column_io_type, column_value, term, uri, version = raw[:9]
    columns = tables.setdefault((target_type, target_ref, table_name), {})
    if column_type is None:  # a row declaring a table without columns: the table exists, no column does
        return {"cells": []}
    column_annotation = _annotation(term, uri, version)
    annotation_key = tuple(column_annotation.values()) if column_annotation else None
    key = (
        (column_type, column_io_type, column_value, annotation_key)
        if len(raw) == 9
        else (column_type, column_io_type, column_value, annotation_key, raw[9])
    )
    column = columns.get(key)
    if column is None:
        column = columns[key] = {
            "column_type": column_type,
            "column_io_type": column_io_type,
            "column_value": text(column_value),
            "annotation": column_annotation,
            "cells": [],
        }
    return column


def _one_line(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _dated(row: Row) -> dict[str, Any]:
    return {
        "identifier": text(row["identifier"]),
        "title": text(row.get("title")),
        "description_text": text(row.get("description_text")),
        "submission_date": text(row.get("submission_date")),
        "public_release_date": text(row.get("public_release_date")),
    }


# Contract v2 columns: a key is set only when the source gives a value (an absent column and NULL
# alike leave the payload's default), so a v2 source with empty v2 columns costs next to nothing.


def _study(row: Row) -> dict[str, Any]:
    study = _dated(row)
    if row.get("comments") is not None:
        study["comments"] = comments(row["comments"])
    if row.get("design_descriptors") is not None:
        study["design_descriptors"] = roles(row["design_descriptors"], "design_descriptors")
    return study


def _investigation(row: Row) -> dict[str, Any]:
    investigation = _dated(row)
    if row.get("comments") is not None:
        investigation["comments"] = comments(row["comments"])
    if row.get("license") is not None:
        investigation["license"] = text(row["license"])
    if row.get("ontology_source_references") is not None:
        investigation["ontology_source_references"] = ontology_source_references(row["ontology_source_references"])
    return investigation


def _with_v2(item: dict[str, Any], row: Row) -> dict[str, Any]:
    """An assay, contact or publication with its v2 comments (and a contact's ORCID) when given."""
    if row.get("comments") is not None:
        item["comments"] = comments(row["comments"])
    if row.get("orcid") is not None:
        item["orcid"] = text(row["orcid"])
    return item


def assemble(
    investigation: Row,
    studies: Iterable[Row] = (),
    assays: Iterable[Row] = (),
    contacts: Iterable[Row] = (),
    publications: Iterable[Row] = (),
    annotation_cells: Iterable[tuple[Any, ...]] = (),
    cell_layout: CellLayout = V1_CELLS,
) -> dict[str, Any]:
    """Build and validate one payload document; raise :class:`AssemblyError` with a one-line reason.

    The document is built as plain dicts and validated once against the payload
    model's schema (in pydantic-core), without building a model per table cell.
    Rows are mappings of the columns read (an absent v2 column is simply not
    there); ``annotation_cells`` are tuples in ``cell_layout`` (see :func:`tables_from_cells`).
    """
    document = {
        "schema_version": PAYLOAD_SCHEMA_VERSION,
        **_investigation(investigation),
        "studies": _merge_duplicates("study", (_study(row) for row in studies)),
        "assays": _merge_duplicates(
            "assay",
            (
                _with_v2(
                    {
                        "identifier": text(row["identifier"]),
                        "study_refs": study_refs(row.get("study_ref")),
                        "title": text(row.get("title")),
                        "description_text": text(row.get("description_text")),
                        "measurement_type": annotation(row, "measurement_type"),
                        "technology_type": annotation(row, "technology_type"),
                        "technology_platform": technology_platform(row),
                    },
                    row,
                )
                for row in assays
            ),
            ignore="study_refs",
        ),
        "contacts": [
            _with_v2(
                {
                    "target_type": row["target_type"],
                    "target_ref": text(row.get("target_ref")),
                    **{name: text(row.get(name)) for name in _CONTACT_FIELDS},
                    "roles": roles(row.get("roles")),
                },
                row,
            )
            for row in contacts
        ],
        "publications": [
            _with_v2(
                {
                    "target_type": row["target_type"],
                    "target_ref": text(row.get("target_ref")),
                    **{name: text(row.get(name)) for name in _PUBLICATION_FIELDS},
                    "status": annotation(row, "status"),
                },
                row,
            )
            for row in publications
        ],
        "annotation_tables": tables_from_cells(annotation_cells, cell_layout),
    }
    try:
        return validate_document(document)
    except ValidationError as exc:
        raise AssemblyError(_one_line(exc)) from exc


_CONTACT_FIELDS = (
    "last_name",
    "first_name",
    "mid_initials",
    "email",
    "phone",
    "fax",
    "postal_address",
    "affiliation",
)
_PUBLICATION_FIELDS = ("pubmed_id", "doi", "authors", "title")
