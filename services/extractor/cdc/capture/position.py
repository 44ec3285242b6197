"""Is the embedded connector's stored position still valid? And resetting it safely when it is not.

The connector's position lives in two places that can drift apart: the offsets file
(``<state_dir>/cdc/<slot>.offsets``, the last WAL position handed to Kafka) and the
replication slot in PostgreSQL (which keeps the WAL from its position on). Resuming
needs both. When the database was recreated or restored, the slot was dropped, or
PostgreSQL removed WAL the slot needed (``max_slot_wal_keep_size``), the changes
between the stored position and now are gone: Debezium then stops with a long Java
exception. :func:`check_position` recognises these cases before the JVM starts and
names the recovery; :func:`reset_position` performs it: a new slot now (so every
change from now on is kept), the old offsets moved aside, and a snapshot to cover
what was lost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import psycopg

from services.common.config import Settings
from services.common.errors import FatalError
from services.extractor.cdc.capture.properties import offsets_file

#: ``fresh``: nothing stored, capture starts now; ``resume``: offsets and slot agree; ``slot-only``: no
#: offsets, the slot's own position is used (nothing lost); ``in-use``: a capture streams from the slot
#: right now (another one waits for it, Debezium retries); the others cannot resume.
PositionStatus = Literal["fresh", "resume", "slot-only", "in-use", "slot-missing", "wal-lost", "other-database"]
RESUMABLE: frozenset[PositionStatus] = frozenset({"fresh", "resume", "slot-only", "in-use"})

_LSN = re.compile(rb'"lsn":(\d+)')
#: Debezium's wording when the stored offset is older than what the server still has.
DEBEZIUM_STALE = ("no longer available on the server", "Saved offset is before replication slot")

RECOVERY = "run 'arcstream cdc reset', then 'arcstream extract snapshot' (changes since then are lost to CDC)"


class StaleCdcPositionError(FatalError):
    """The stored CDC position cannot be resumed; the message names the situation and the recovery."""


@dataclass(frozen=True)
class Slot:
    database: str
    plugin: str
    active_pid: int | None
    confirmed_flush_lsn: str | None
    wal_status: str | None


@dataclass(frozen=True)
class Position:
    """What is stored about the capture position, and whether capture can resume from it."""

    status: PositionStatus
    #: What was found, in words.
    situation: str
    offsets: Path
    offsets_lsn: str | None
    slot: Slot | None
    #: What to do about it (``None`` when nothing needs doing).
    fix: str | None = None

    @property
    def resumable(self) -> bool:
        return self.status in RESUMABLE

    @property
    def message(self) -> str:
        return f"{self.situation}; {self.fix}" if self.fix else self.situation


def lsn_text(value: int) -> str:
    """PostgreSQL's ``X/Y`` form of a 64-bit WAL position."""
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def stored_lsn(path: Path) -> str | None:
    """The WAL position in an offsets file (Kafka's file store: Java-serialised JSON bytes), if readable."""
    try:
        found = _LSN.search(path.read_bytes())
    except OSError:
        return None
    return lsn_text(int(found.group(1))) if found else None


async def read_slot(conn: psycopg.AsyncConnection[Any], name: str) -> Slot | None:
    cursor = await conn.execute(
        "SELECT database, plugin, active_pid, confirmed_flush_lsn::text, wal_status"
        " FROM pg_replication_slots WHERE slot_name = %s",
        (name,),
    )
    row = await cursor.fetchone()
    return None if row is None else Slot(str(row[0]), str(row[1]), row[2], row[3], row[4])


async def check_position(conn: psycopg.AsyncConnection[Any], settings: Settings) -> Position:
    """Classify the stored position of the configured slot against this database."""
    slot_name = settings.cdc.slot_name
    offsets = offsets_file(settings)
    lsn = stored_lsn(offsets) if offsets.is_file() else None
    has_offsets = offsets.is_file()
    slot = await read_slot(conn, slot_name)
    database = str((await (await conn.execute("SELECT current_database()")).fetchone() or ("?",))[0])

    def position(status: PositionStatus, situation: str, fix: str | None = None) -> Position:
        return Position(status, situation, offsets, lsn, slot, fix)

    if slot is not None and slot.database != database:
        return position(
            "other-database",
            f"replication slot {slot_name!r} belongs to database {slot.database!r}, not {database!r}",
            "set cdc.slot_name to a name of its own for this database",
        )
    if slot is not None and slot.active_pid is not None:
        return position(
            "in-use", f"replication slot {slot_name!r} is in use by server process {slot.active_pid} (a capture runs)"
        )
    if slot is not None and slot.wal_status == "lost":
        return position(
            "wal-lost",
            f"CDC position lost: PostgreSQL removed WAL that replication slot {slot_name!r} still needed "
            "(max_slot_wal_keep_size)",
            RECOVERY,
        )
    if slot is None and has_offsets:
        at = f" at {lsn}" if lsn else ""
        return position(
            "slot-missing",
            f"CDC position stale: {offsets} holds a position{at} but replication slot {slot_name!r} no longer "
            "exists (database recreated or restored, or the slot dropped)",
            RECOVERY,
        )
    if slot is None:
        return position("fresh", f"no stored position: capture creates slot {slot_name!r} and starts from now")
    if not has_offsets:
        return position(
            "slot-only", f"no offsets file: capture resumes from slot {slot_name!r} at {slot.confirmed_flush_lsn}"
        )
    return position("resume", f"capture resumes at {lsn or '?'} (slot {slot_name!r} at {slot.confirmed_flush_lsn})")


def stale_from_failure(settings: Settings, failure: str) -> StaleCdcPositionError | None:
    """Debezium's own "offset no longer available" failure as one line, or ``None`` for other failures."""
    if not any(marker in failure for marker in DEBEZIUM_STALE):
        return None
    offsets = offsets_file(settings)
    lsn = stored_lsn(offsets)
    return StaleCdcPositionError(
        f"CDC position stale: the position in {offsets}{f' ({lsn})' if lsn else ''} is no longer available from "
        f"replication slot {settings.cdc.slot_name!r}; {RECOVERY}"
    )


async def reset_position(conn: psycopg.AsyncConnection[Any], settings: Settings, *, force: bool) -> list[str]:
    """Drop the slot and set the offsets aside, then create the slot again so changes from now on are kept.

    Refuses while a capture uses the slot, for a slot of another database, and (unless
    ``force``) when the position is still valid: resetting it would lose the changes since.
    """
    position = await check_position(conn, settings)
    slot_name = settings.cdc.slot_name
    if position.status == "in-use":
        raise StaleCdcPositionError(f"cannot reset: {position.message}: stop that capture first")
    if position.status == "other-database":
        raise StaleCdcPositionError(f"cannot reset: {position.message}")
    if position.resumable and not force:
        raise StaleCdcPositionError(
            f"nothing to reset, the CDC position is valid ({position.message}); "
            "--force resets it anyway (a snapshot must follow)"
        )
    lines: list[str] = [f"found: {position.situation}"]
    if position.slot is not None:
        await conn.execute("SELECT pg_drop_replication_slot(%s)", (slot_name,))
        lines.append(f"replication slot {slot_name} dropped")
    if position.offsets.is_file():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = position.offsets.with_name(f"{position.offsets.name}.stale-{stamp}")
        position.offsets.replace(aside)
        lines.append(f"offsets {position.offsets} moved to {aside.name}")
    cursor = await conn.execute(
        "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')", (slot_name,)
    )
    created = await cursor.fetchone()
    at = created[0] if created else "?"
    lines.append(f"replication slot {slot_name} created at {at}: changes from now on are kept")
    lines.append("next: 'arcstream extract snapshot' (exports what changed before now), then 'arcstream cdc capture'")
    return lines
