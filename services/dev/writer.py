"""Write source rows into the source relations with ``COPY`` (fast, one round trip per relation).

Rows are dicts of the contract's columns; contract v2 columns (``OPTIONAL_COLUMNS``)
are written when the rows of a relation carry them, so the same writer fills a v1
source (the demo generator) and a v2 one (real ARCs loaded by the fidelity harness).
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from services.dev.generator import SourceRows
from services.extractor.source.schema import CONTRACT, OPTIONAL_COLUMNS

_BATCH = 2_000
#: Columns holding JSON (written as ``jsonb``).
JSON_COLUMNS = frozenset({"roles", "comments", "design_descriptors", "ontology_source_references"})


def _columns(relation: str, rows: list[dict[str, object]]) -> tuple[str, ...]:
    """The contract columns, then the optional ones any of these rows carries."""
    optional = [name for name in OPTIONAL_COLUMNS.get(relation, ()) if any(name in row for row in rows)]
    return (*CONTRACT[relation], *optional)


async def _copy(conn: psycopg.AsyncConnection, relation: str, rows: list[dict[str, object]]) -> None:
    if not rows:
        return
    columns = _columns(relation, rows)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(relation), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    async with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            await copy.write_row(
                [Jsonb(row.get(c)) if c in JSON_COLUMNS and row.get(c) is not None else row.get(c) for c in columns]
            )


async def write_rows(conn: psycopg.AsyncConnection, investigations: Iterable[SourceRows]) -> int:
    """Insert every relation's rows, committing every ``_BATCH`` investigations; return the count."""
    buffers: dict[str, list[dict[str, object]]] = {relation: [] for relation in CONTRACT}
    count = 0

    async def flush() -> None:
        async with conn.transaction():
            for relation, rows in buffers.items():
                await _copy(conn, relation, rows)
                rows.clear()

    for rows in investigations:
        buffers["vInvestigation"].append(rows.investigation)
        buffers["vStudy"] += rows.studies
        buffers["vAssay"] += rows.assays
        buffers["vContact"] += rows.contacts
        buffers["vPublication"] += rows.publications
        buffers["vAnnotationTable"] += rows.annotation_cells
        count += 1
        if count % _BATCH == 0:
            await flush()
    await flush()
    return count
