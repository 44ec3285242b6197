"""Write generated rows into the source relations with ``COPY`` (fast, one round trip per relation)."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from services.dev.generator import SourceRows
from services.extractor.source.schema import CONTRACT

_BATCH = 2_000


async def _copy(conn: psycopg.AsyncConnection, relation: str, rows: list[dict[str, object]]) -> None:
    if not rows:
        return
    columns = CONTRACT[relation]
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(relation), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    async with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            await copy.write_row([Jsonb(row[c]) if c == "roles" else row[c] for c in columns])


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
