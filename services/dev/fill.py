"""``arcstream gen``: generated demo data into the configured database, never on top of existing rows.

Generated investigations are ``INV-<index>``; writing index 3 into a database that
already holds ``INV-000003`` would fail half-way with a unique violation. So the
range is decided before anything is written: an empty database starts at 0, a
populated one needs ``--append`` (after the highest generated index found) or an
explicit ``--start`` that collides with nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg

from services.common.errors import FatalError
from services.dev.generator import Profile, generate_investigation
from services.dev.writer import write_rows
from services.extractor.source.schema import ensure_source_schema

_GENERATED = re.compile(r"^INV-(\d{6})$")


class PopulatedDatabaseError(FatalError):
    """The database already holds investigations the requested range would collide with."""


@dataclass(frozen=True)
class FillResult:
    start: int
    written: int


def identifier(index: int) -> str:
    """The identifier the generator gives investigation ``index``."""
    return f"INV-{index:06d}"


async def _existing(conn: psycopg.AsyncConnection) -> tuple[int, int | None]:
    """How many investigations there are, and the highest generated index among them."""
    cursor = await conn.execute('SELECT identifier FROM "vInvestigation"')
    identifiers = [row[0] for row in await cursor.fetchall()]
    indexes = [int(m.group(1)) for m in (_GENERATED.match(str(i)) for i in identifiers) if m]
    return len(identifiers), max(indexes, default=None)


async def _first_collision(conn: psycopg.AsyncConnection, start: int, count: int) -> str | None:
    wanted = [identifier(index) for index in range(start, start + count)]
    cursor = await conn.execute(
        'SELECT identifier FROM "vInvestigation" WHERE identifier = ANY(%s) ORDER BY identifier LIMIT 1', (wanted,)
    )
    row = await cursor.fetchone()
    return None if row is None else str(row[0])


async def choose_start(conn: psycopg.AsyncConnection, count: int, start: int | None, append: bool) -> int:
    """The first index to write; raise :class:`PopulatedDatabaseError` instead of colliding."""
    existing, highest = await _existing(conn)
    if append:
        return 0 if highest is None else highest + 1
    if start is None:
        if existing:
            raise PopulatedDatabaseError(
                f"the database already holds {existing} investigation(s): add after them with "
                "'arcstream gen --append', or point DATABASE_URL at an empty database"
            )
        return 0
    collision = await _first_collision(conn, start, count)
    if collision is not None:
        raise PopulatedDatabaseError(
            f"investigation {collision} already exists: choose a --start past it, or use --append"
        )
    return start


async def fill(
    conn: psycopg.AsyncConnection,
    count: int,
    seed: int,
    profile: Profile,
    *,
    start: int | None,
    append: bool,
    contract: int = 1,
) -> FillResult:
    """Create the six relations where absent, then write ``count`` generated investigations
    (``contract=2``: with values in the optional v2 columns too, docs/contract.md)."""
    await ensure_source_schema(conn)
    await conn.commit()
    first = await choose_start(conn, count, start, append)
    await conn.commit()
    rows = (generate_investigation(seed, index, profile, contract) for index in range(first, first + count))
    try:
        written = await write_rows(conn, rows)
    except psycopg.errors.UniqueViolation as exc:  # someone wrote the same range meanwhile
        detail = exc.diag.message_detail or "a unique key collided"
        raise PopulatedDatabaseError(f"an investigation of this range was written meanwhile: {detail}") from exc
    except (psycopg.errors.WrongObjectType, psycopg.errors.ObjectNotInPrerequisiteState) as exc:
        raise FatalError(
            f"cannot write demo data: {str(exc).strip().splitlines()[0]} "
            "(arcstream gen writes into tables; the six relations here are views)"
        ) from exc
    return FillResult(first, written)
