"""``arcstream cdc setup``: prepare PostgreSQL for capture, idempotently, saying what it did.

- ``wal_level`` must be ``logical`` (pgoutput needs it; changing it needs a restart,
  so we check and explain rather than change it);
- each captured table (every mapped relation that is a table, not a view) gets
  ``REPLICA IDENTITY FULL`` unless its mapping column is covered by the primary
  key: deletes and updates then carry the old row, which is how a deleted child
  still finds its investigation, and keyless tables can be updated at all;
- the publication lists exactly those tables (created, or its table list set).
The replication slot is created by the connector on its first start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from services.common.config import Settings
from services.common.errors import SourceContractError
from services.extractor.cdc.mapping import InvestigationMapper, TableMapping


@dataclass(frozen=True)
class CapturedTable:
    """A mapped relation resolved in the database."""

    schema: str
    name: str
    kind: str
    replica_identity: str
    primary_key: tuple[str, ...]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


_RESOLVE = """
SELECT n.nspname, c.relname, c.relkind::text, c.relreplident::text,
       coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum)
                   FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                  WHERE i.indrelid = c.oid AND i.indisprimary), '{}')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = to_regclass(%s)
"""


def _regclass_text(key: str) -> str:
    """A mapping key (``schema.table`` or ``table``) as a quoted name for ``to_regclass``."""
    schema, dot, name = key.partition(".")
    if not dot:
        return '"' + key.replace('"', '""') + '"'
    return '"' + schema.replace('"', '""') + '"."' + name.replace('"', '""') + '"'


async def resolve_tables(
    conn: psycopg.AsyncConnection[Any], mapper: InvestigationMapper
) -> tuple[dict[str, tuple[CapturedTable, TableMapping]], list[str]]:
    """Mapped relations that are tables (to capture), and notes about those skipped."""
    tables: dict[str, tuple[CapturedTable, TableMapping]] = {}
    notes: list[str] = []
    for key, mapping in mapper.mappings.items():
        row = await (await conn.execute(_RESOLVE, (_regclass_text(key),))).fetchone()
        if row is None:
            notes.append(f"skipped {key}: no such relation")
            continue
        table = CapturedTable(row[0], row[1], row[2], row[3], tuple(row[4]))
        if table.kind not in ("r", "p"):
            notes.append(f"skipped {table.qualified}: a view, not a table (map the tables under it)")
            continue
        tables[table.qualified] = (table, mapping)
    return tables, notes


def needs_full_identity(table: CapturedTable, mapping: TableMapping) -> bool:
    """Old values are needed unless the mapping column is part of the primary key (always sent)."""
    return not (mapping.column is not None and mapping.column in table.primary_key)


async def publication_tables(conn: psycopg.AsyncConnection[Any], publication: str) -> list[str]:
    """``schema.table`` of every table in the publication (empty if it does not exist)."""
    cursor = await conn.execute(
        "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s ORDER BY 1, 2",
        (publication,),
    )
    return [f"{schema}.{name}" for schema, name in await cursor.fetchall()]


async def setup_cdc(conn: psycopg.AsyncConnection[Any], settings: Settings) -> list[str]:
    """Make the database ready for capture; return one line per check or action."""
    lines: list[str] = []
    wal_level = (await (await conn.execute("SHOW wal_level")).fetchone() or ("?",))[0]
    if wal_level != "logical":
        raise SourceContractError(
            f"wal_level is {wal_level!r}: set wal_level=logical in postgresql.conf and restart PostgreSQL"
        )
    lines.append("wal_level is logical")
    tables, notes = await resolve_tables(conn, InvestigationMapper(settings.cdc.table_mappings))
    lines.extend(notes)
    if not tables:
        raise SourceContractError("no mapped relation is a table: configure cdc.table_mappings for your tables")
    for table, mapping in tables.values():
        if not needs_full_identity(table, mapping):
            lines.append(
                f"{table.qualified}: replica identity {IDENTITY_NAMES[table.replica_identity]} kept"
                " (the mapping column is in the primary key)"
            )
        elif table.replica_identity == "f":
            lines.append(f"{table.qualified}: replica identity already FULL")
        else:
            await conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(table.identifier))
            lines.append(f"{table.qualified}: replica identity set to FULL")
    lines.append(await _ensure_publication(conn, settings.cdc.publication_name, [t for t, _ in tables.values()]))
    slot = await (
        await conn.execute("SELECT plugin FROM pg_replication_slots WHERE slot_name = %s", (settings.cdc.slot_name,))
    ).fetchone()
    lines.append(
        f"replication slot {settings.cdc.slot_name} exists ({slot[0]})"
        if slot
        else f"replication slot {settings.cdc.slot_name} will be created by 'arcstream cdc capture'"
    )
    return lines


IDENTITY_NAMES = {"d": "DEFAULT", "f": "FULL", "n": "NOTHING", "i": "INDEX"}


async def _ensure_publication(conn: psycopg.AsyncConnection[Any], name: str, tables: list[CapturedTable]) -> str:
    wanted = sorted(table.qualified for table in tables)
    table_list = sql.SQL(", ").join(table.identifier for table in sorted(tables, key=lambda t: t.qualified))
    exists = await (await conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,))).fetchone()
    if not exists:
        await conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(sql.Identifier(name), table_list))
        return f"publication {name} created for {', '.join(wanted)}"
    if sorted(await publication_tables(conn, name)) == wanted:
        return f"publication {name} already lists {', '.join(wanted)}"
    await conn.execute(sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(sql.Identifier(name), table_list))
    return f"publication {name} now lists {', '.join(wanted)}"
