"""The source contract: six relations, their columns, and connecting to the database.

Relation and column names are the upstream SQL-to-ARC converter's, so an
existing provider's views plug in unchanged (contract v1, :data:`CONTRACT`).
Contract v2 adds optional columns (:data:`OPTIONAL_COLUMNS`, docs/contract.md):
``check_source_contract`` finds them with the same catalogue query that checks
the required ones, so a source that has them gets them read and one that has
not keeps working unchanged, with no extra query. It fails fast (one line
naming what is missing) before any work starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import orjson
import psycopg
from psycopg.types.json import set_json_loads

from services.common.errors import SourceContractError, SourceUnavailableError
from services.common.logs import mask_url

DDL_FILE = Path(__file__).resolve().parents[3] / "schemas" / "source" / "source_contract.sql"

#: Relation -> the columns arcstream reads (``id`` is optional: used for ordering when present).
CONTRACT: dict[str, tuple[str, ...]] = {
    "vInvestigation": ("identifier", "title", "description_text", "submission_date", "public_release_date"),
    "vStudy": (
        "identifier",
        "investigation_ref",
        "title",
        "description_text",
        "submission_date",
        "public_release_date",
    ),
    "vAssay": (
        "identifier",
        "investigation_ref",
        "study_ref",
        "title",
        "description_text",
        "measurement_type_term",
        "measurement_type_uri",
        "measurement_type_version",
        "technology_type_term",
        "technology_type_uri",
        "technology_type_version",
        "technology_platform",
    ),
    "vContact": (
        "investigation_ref",
        "target_type",
        "target_ref",
        "last_name",
        "first_name",
        "mid_initials",
        "email",
        "phone",
        "fax",
        "postal_address",
        "affiliation",
        "roles",
    ),
    "vPublication": (
        "investigation_ref",
        "target_type",
        "target_ref",
        "pubmed_id",
        "doi",
        "authors",
        "title",
        "status_term",
        "status_uri",
        "status_version",
    ),
    "vAnnotationTable": (
        "investigation_ref",
        "target_type",
        "target_ref",
        "table_name",
        "column_type",
        "column_io_type",
        "column_value",
        "column_annotation_term",
        "column_annotation_uri",
        "column_annotation_version",
        "row_index",
        "cell_value",
        "cell_annotation_term",
        "cell_annotation_uri",
        "cell_annotation_version",
    ),
}

#: Contract v2: optional columns, read when the relation has them (docs/contract.md says what each holds).
#: JSON columns accept ``json``/``jsonb`` or JSON text.
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "vInvestigation": ("comments", "license", "ontology_source_references"),
    "vStudy": ("comments", "design_descriptors"),
    "vAssay": ("comments", "technology_platform_uri", "technology_platform_version"),
    "vContact": ("orcid", "comments"),
    "vPublication": ("comments",),
    # column_index goes right after the column's own fields: loader and assembly rely on that order.
    "vAnnotationTable": ("column_index",),
}

CHILD_RELATIONS = ("vStudy", "vAssay", "vContact", "vPublication", "vAnnotationTable")


def selected_columns(relation: str, found: Mapping[str, set[str]]) -> tuple[str, ...]:
    """The columns read from ``relation``: the required ones, then the optional ones it has.

    In ``vAnnotationTable`` the optional ``column_index`` is placed before ``row_index``
    so that a cell row reads: investigation, table and column fields, then the cell.
    """
    present = [name for name in OPTIONAL_COLUMNS.get(relation, ()) if name in found.get(relation, set())]
    required = CONTRACT[relation]
    if relation == "vAnnotationTable" and present:
        cell_start = required.index("row_index")
        return (*required[:cell_start], *present, *required[cell_start:])
    return (*required, *present)


def optional_columns_found(found: Mapping[str, set[str]]) -> dict[str, list[str]]:
    """Contract v2 columns the source has, per relation (for the start-up log)."""
    return {
        relation: [name for name in names if name in found.get(relation, set())]
        for relation, names in OPTIONAL_COLUMNS.items()
        if any(name in found.get(relation, set()) for name in names)
    }


async def connect(database_url: str, **kwargs: object) -> psycopg.AsyncConnection:
    """Open a connection; an unreachable server becomes one clear :class:`SourceUnavailableError`.

    ``json``/``jsonb`` columns are parsed with orjson (several times faster than the
    standard library on the snapshot's hot path).
    """
    try:
        conn = await psycopg.AsyncConnection.connect(database_url, **kwargs)  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise SourceUnavailableError(
            f"cannot connect to the database at {mask_url(database_url)}: {reason} "
            "(start it with 'arcstream dev up' or set DATABASE_URL)"
        ) from exc
    set_json_loads(orjson.loads, conn)
    return conn


async def ensure_source_schema(conn: psycopg.AsyncConnection) -> None:
    """Create the six relations (with the v2 columns) from ``schemas/source/`` where they are absent."""
    await conn.execute(DDL_FILE.read_text(encoding="utf-8").encode())


async def relation_columns(conn: psycopg.AsyncConnection) -> dict[str, set[str]]:
    """Columns of each contract relation visible on the search path (tables or views)."""
    cursor = await conn.execute(
        """
        SELECT c.relname, a.attname
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE c.relname = ANY(%s) AND pg_catalog.pg_table_is_visible(c.oid)
        """,
        (list(CONTRACT),),
    )
    found: dict[str, set[str]] = {}
    for relname, attname in await cursor.fetchall():
        found.setdefault(relname, set()).add(attname)
    return found


async def check_source_contract(conn: psycopg.AsyncConnection) -> dict[str, set[str]]:
    """Raise :class:`SourceContractError` naming the first missing relation or columns."""
    found = await relation_columns(conn)
    for relation, columns in CONTRACT.items():
        if relation not in found:
            raise SourceContractError(f'required relation "{relation}" is missing from the database')
        missing = [column for column in columns if column not in found[relation]]
        if missing:
            raise SourceContractError(f'relation "{relation}" lacks required column(s): {", ".join(missing)}')
    return found
