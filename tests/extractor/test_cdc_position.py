"""A stale CDC position: one clear line naming it and the recovery, ``cdc reset``, and changes flow after it.

The situation is provoked for real: capture runs (real Debezium), stores its offsets
under ``state_dir``, and then the database is dropped and created again, as after a
restore. Offsets live at their default place, so this also shows ``cdc.offsets_dir``
follows ``ARCSTREAM_STATE_DIR``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from services.common.config import Settings, load_settings
from services.common.kafka.topics import ensure_topics
from services.dev.stack.state import StackState
from services.extractor.cdc.capture.position import check_position, stale_from_failure
from services.extractor.cdc.capture.properties import offsets_file
from services.extractor.cdc.capture.setup import setup_cdc
from services.extractor.source.schema import ensure_source_schema

from .cdc_support import ServiceProcess, TopicWatcher

#: Bound hangs only; nothing here asserts speed.
LIMIT_S = 90.0


def environment(settings: Settings, state_dir: Path) -> dict[str, str]:
    """What an operator's shell would hold: the servers, the names, ``ARCSTREAM_STATE_DIR`` and nothing else."""
    hidden = ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "ARC_STORE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCSTREAM_") and k not in hidden}
    cdc = settings.cdc
    return env | {
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "ARCSTREAM_STATE_DIR": str(state_dir),
        "ARCSTREAM_TOPICS__PREFIX": settings.topics.prefix,
        "ARCSTREAM_CDC__TOPIC_PREFIX": cdc.topic_prefix,
        "ARCSTREAM_CDC__SLOT_NAME": cdc.slot_name,
        "ARCSTREAM_CDC__PUBLICATION_NAME": cdc.publication_name,
        "ARCSTREAM_CDC__HEARTBEAT_INTERVAL_MS": "1000",
        "ARCSTREAM_CDC__OFFSET_FLUSH_INTERVAL_MS": "200",
    }


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def prepare(settings: Settings) -> None:
    async def run() -> None:
        url = settings.database_url.get_secret_value()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await ensure_source_schema(conn)
            await setup_cdc(conn, settings)
        await ensure_topics(settings)

    asyncio.run(run())


def wait_streaming(database_url: str, slot: str, capture: ServiceProcess) -> None:
    deadline = time.monotonic() + LIMIT_S
    with psycopg.connect(database_url) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
            if row and row[0]:
                return
            assert capture.alive(), capture.log_tail()
            time.sleep(0.2)
    raise AssertionError(f"capture did not stream:\n{capture.log_tail()}")


def insert_and_see(settings: Settings, identifier: str) -> None:
    """Insert an investigation and wait until its change record is on the change topic."""
    topic = f"{settings.cdc.topic_prefix}.public.vInvestigation"

    async def run() -> None:
        async with TopicWatcher(settings.kafka, topic) as watcher:
            with psycopg.connect(settings.database_url.get_secret_value(), autocommit=True) as conn:
                conn.execute('INSERT INTO "vInvestigation" (identifier, title) VALUES (%s, %s)', (identifier, "t"))
            await watcher.wait_for(
                f"the change of {identifier}",
                lambda: any(identifier.encode() in (record.value or b"") for record in watcher.records),
            )

    asyncio.run(run())


def recreate_database(admin_url: str, database_url: str, slot: str) -> None:
    """Drop and create the database again, as a restore would; its slot goes with it."""
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        deadline = time.monotonic() + 30
        active = "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND active"
        while conn.execute(active, (slot,)).fetchone() and time.monotonic() < deadline:
            time.sleep(0.2)  # the stopped capture's walsender lets go of the slot
        drop = "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s"
        conn.execute(drop, (slot,))
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def test_stale_offsets_are_named_with_the_recovery_and_reset_makes_changes_flow(
    dev_stack: StackState, database_url: str, tmp_path: Path, make_settings: Any
) -> None:
    assert dev_stack.postgres is not None
    state_dir = tmp_path / "operator-state"
    base: Settings = make_settings()
    names = {
        "topic_prefix": f"{base.topics.prefix}db",
        "slot_name": f"{base.topics.prefix}_slot",
        "publication_name": f"{base.topics.prefix}_pub",
    }
    settings = make_settings(state_dir=state_dir, cdc=names)
    env = environment(settings, state_dir)
    prepare(settings)

    # 1. A capture runs, sees a change and stops: its offsets are stored under state_dir.
    capture = ServiceProcess(["cdc", "capture"], env, tmp_path / "capture.log")
    capture.start()
    try:
        wait_streaming(database_url, settings.cdc.slot_name, capture)
        insert_and_see(settings, "BEFORE-1")
    finally:
        assert capture.stop() == 0, capture.log_tail()
    stored = offsets_file(load_settings(state_dir=state_dir, cdc=names))
    assert stored == state_dir / "cdc" / f"{settings.cdc.slot_name}.offsets"
    assert stored.is_file()

    # 2. The database is recreated: the stored position points into WAL that no slot keeps.
    recreate_database(dev_stack.postgres.url, database_url, settings.cdc.slot_name)
    prepare(settings)

    failed = cli(env, "cdc", "capture")
    assert failed.returncode == 1
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1, failed.stderr
    assert "CDC position stale" in lines[0] and str(stored) in lines[0]
    assert "arcstream cdc reset" in lines[0] and "arcstream extract snapshot" in lines[0]

    # 3. The recovery command: a new slot now, the old offsets set aside.
    reset = cli(env, "cdc", "reset")
    assert reset.returncode == 0, reset.stderr
    assert f"replication slot {settings.cdc.slot_name} created at" in reset.stdout
    assert "extract snapshot" in reset.stdout
    assert not stored.exists()
    assert list(stored.parent.glob(f"{stored.name}.stale-*"))
    again = cli(env, "cdc", "reset")
    assert again.returncode == 1 and "nothing to reset" in again.stderr

    # 4. Capture resumes from the new slot and changes flow again.
    capture = ServiceProcess(["cdc", "capture"], env, tmp_path / "capture-after.log")
    capture.start()
    try:
        wait_streaming(database_url, settings.cdc.slot_name, capture)
        insert_and_see(settings, "AFTER-1")
    finally:
        assert capture.stop() == 0, capture.log_tail()

    async def position_now() -> str:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            return (await check_position(conn, settings)).status

    assert asyncio.run(position_now()) == "resume"


def test_debeziums_own_stale_offset_failure_becomes_the_same_one_line(make_settings: Any) -> None:
    settings = make_settings(cdc={"slot_name": "s1"})
    debezium = (
        "the connector stopped: The connector is trying to read change stream starting at PostgresOffsetContext "
        "[sourceInfo=source_info[server='arcdb'db='x', lsn=LSN{0/1B321B8}]], but this is no longer available on "
        "the server. Reconfigure the connector to use a snapshot mode when needed."
    )
    error = stale_from_failure(settings, debezium)
    assert error is not None
    assert "CDC position stale" in str(error) and "'s1'" in str(error) and "arcstream cdc reset" in str(error)
    assert "\n" not in str(error)
    assert stale_from_failure(settings, "the connector stopped: password authentication failed") is None
