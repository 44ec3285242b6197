"""The demo's live changes: an update, an insert and a delete, made in the source database.

Each is a plain SQL transaction, exactly what a provider's application would do;
CDC (Debezium -> ``extract cdc``) has to notice it on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import psycopg

from services.dev.generator import generate_investigation
from services.dev.writer import write_rows
from services.extractor.source.schema import CHILD_RELATIONS

ChangeKind = Literal["update", "insert", "delete"]


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    identifier: str
    #: Upload outcomes that count as "arrived".
    expected: tuple[str, ...]


async def update_title(conn: psycopg.AsyncConnection, identifier: str) -> Change:
    await conn.execute(
        """UPDATE "vInvestigation" SET title = title || ' (revised)' WHERE identifier = %s""", (identifier,)
    )
    await conn.commit()
    return Change("update", identifier, ("updated", "created"))


async def insert_investigation(conn: psycopg.AsyncConnection, seed: int, index: int) -> Change:
    rows = generate_investigation(seed, index, "small")
    await write_rows(conn, [rows])
    return Change("insert", str(rows.investigation["identifier"]), ("created", "updated"))


async def delete_investigation(conn: psycopg.AsyncConnection, identifier: str) -> Change:
    async with conn.transaction():
        for relation in CHILD_RELATIONS:
            await conn.execute(
                psycopg.sql.SQL("DELETE FROM {} WHERE investigation_ref = %s").format(psycopg.sql.Identifier(relation)),
                (identifier,),
            )
        await conn.execute("""DELETE FROM "vInvestigation" WHERE identifier = %s""", (identifier,))
    return Change("delete", identifier, ("deleted",))
