"""Replication slot health against the test stack's real PostgreSQL: retained WAL, lag, activity.

A logical slot made with ``test_decoding`` stands in for Debezium's where no
streaming client is needed: SQL can write WAL past it and consume it, so the
numbers can be checked against what the server says independently. The
exporter command (``arcstream cdc slot-metrics``) runs as a real process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from services.common.config import WELL_KNOWN_ENV
from services.dev.stack.ports import free_port
from services.extractor.cdc.capture.health import SlotHealthCollector
from tests.observability.scrape import Samples, parse, scrape, value
from tests.support import until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def slot(database_url: str) -> Iterator[str]:
    """A slot name for this test; the slot (if a test made it) is dropped so the database can be."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s", (name,)
        )


def collect(collector: SlotHealthCollector) -> Samples:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    return parse(generate_latest(registry).decode())


def write_wal(conn: psycopg.Connection[Any], rows: int) -> int:
    """Insert ``rows`` rows; return the WAL bytes the server inserted meanwhile (by its own LSNs).

    Returns once the WAL writer has written them out (``pg_current_wal_lsn`` caught up): the
    test stack runs with ``synchronous_commit=off``, where that trails the commit briefly.
    """

    def lsn(function: str) -> str:
        row = conn.execute(f"SELECT {function}()::text").fetchone()
        assert row is not None
        return str(row[0])

    before = lsn("pg_current_wal_insert_lsn")
    conn.execute("CREATE TABLE IF NOT EXISTS filler (id serial PRIMARY KEY, note text)")
    conn.execute("INSERT INTO filler (note) SELECT repeat('x', 200) FROM generate_series(1, %s)", (rows,))
    after = lsn("pg_current_wal_insert_lsn")

    async def written_out() -> bool:
        row = conn.execute("SELECT pg_current_wal_lsn() >= %s::pg_lsn", (after,)).fetchone()
        return bool(row and row[0])

    asyncio.run(until(written_out, "the WAL writer", limit_s=30))
    row = conn.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)::bigint", (after, before)).fetchone()
    assert row is not None
    return int(row[0])


def test_slot_series_follow_the_servers_wal_positions(database_url: str, slot: str) -> None:
    collector = SlotHealthCollector(database_url, slot)
    try:
        missing = collect(collector)
        assert value(missing, "arcstream_cdc_slot_up", slot=slot) == 0
        assert value(missing, "arcstream_cdc_slot_retained_wal_bytes", slot=slot) is None

        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (slot,))
            fresh = collect(collector)
            assert value(fresh, "arcstream_cdc_slot_up", slot=slot) == 1
            assert value(fresh, "arcstream_cdc_slot_active", slot=slot) == 0  # nobody streams from it

            written = write_wal(conn, 2000)
            assert written > 100_000
            behind = collect(collector)

            def grew(name: str) -> float:
                now, then = value(behind, name, slot=slot), value(fresh, name, slot=slot)
                assert now is not None and then is not None, name
                return now - then

            # Nothing read the slot, so it keeps (at least) everything written since.
            assert grew("arcstream_cdc_slot_retained_wal_bytes") >= written
            assert grew("arcstream_cdc_slot_lag_bytes") >= written

            conn.execute("SELECT count(*) FROM pg_logical_slot_get_changes(%s, NULL, NULL)", (slot,))
            consumed = collect(collector)
        lag_after_reading = value(consumed, "arcstream_cdc_slot_lag_bytes", slot=slot)
        lag_before_reading = value(behind, "arcstream_cdc_slot_lag_bytes", slot=slot)
        assert lag_after_reading is not None and lag_before_reading is not None
        assert lag_after_reading < written <= lag_before_reading
    finally:
        collector.close()


def test_an_unreachable_database_is_a_zero_not_a_failed_scrape(slot: str) -> None:
    collector = SlotHealthCollector(f"postgresql://nobody@127.0.0.1:{free_port()}/none", slot)
    samples = collect(collector)
    assert value(samples, "arcstream_cdc_slot_up", slot=slot) == 0
    assert value(samples, "arcstream_cdc_slot_active", slot=slot) is None


def _exporter_env(database_url: str, slot: str, port: int, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCSTREAM_") and k not in WELL_KNOWN_ENV}
    return env | {
        "DATABASE_URL": database_url,
        "ARCSTREAM_CDC__SLOT_NAME": slot,
        "ARCSTREAM_METRICS__PORT": str(port),
        "ARCSTREAM_STATE_DIR": str(tmp_path / "state"),
    }


def test_slot_metrics_command_exports_the_slot_for_a_connect_deployment(
    database_url: str, slot: str, tmp_path: Path
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (slot,))
        write_wal(conn, 200)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "slot-metrics.log", "wb") as log:
        exporter = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "cdc", "slot-metrics"],
            env=_exporter_env(database_url, slot, port, tmp_path),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        async def serving() -> bool:
            assert exporter.poll() is None, (tmp_path / "slot-metrics.log").read_text()
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    return (await client.get(f"{url}/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        asyncio.run(until(serving, "the exporter to listen", limit_s=60))
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 503  # nothing read the slot yet
        samples = scrape(url)
        assert value(samples, "arcstream_cdc_slot_up", slot=slot) == 1
        assert value(samples, "arcstream_cdc_slot_active", slot=slot) == 0
        retained = value(samples, "arcstream_cdc_slot_retained_wal_bytes", slot=slot)
        assert retained is not None and retained > 0
        assert value(samples, "arcstream_cdc_seconds_since_last_event") is None  # no events in this process
        assert httpx.get(f"{url}/readyz", timeout=5).json() == {"ready": True, "checks": {"slot_read": True}}
    finally:
        exporter.send_signal(signal.SIGTERM)
        code = exporter.wait(timeout=30)
    assert code == 0


def test_slot_metrics_command_without_a_port_says_what_to_set(tmp_path: Path) -> None:
    env = _exporter_env("postgresql://nobody@127.0.0.1:1/none", "s", 0, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "cdc", "slot-metrics"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "arcstream cdc: error: cdc slot-metrics serves /metrics: set metrics.port (ARCSTREAM_METRICS__PORT)"
    )
