"""Capture health as Prometheus series: the replication slot as PostgreSQL sees it, and the last event.

Why: a logical replication slot keeps every WAL segment its reader has not yet
confirmed. When capture is stuck or stopped, or confirms nothing because its
tables are quiet while the rest of the database is busy, the slot retains WAL
without bound until the database server's disk is full - the most dangerous
Debezium failure, and invisible from Kafka. The slot's own numbers show it:

- ``arcstream_cdc_slot_up{slot}``: 1 when PostgreSQL answered and the slot exists;
  0 when the database cannot be queried or has no such slot (the log says which);
- ``arcstream_cdc_slot_active{slot}``: 1 while a client streams from the slot;
- ``arcstream_cdc_slot_retained_wal_bytes{slot}``: ``pg_current_wal_lsn() - restart_lsn``,
  the WAL kept on disk for the slot;
- ``arcstream_cdc_slot_lag_bytes{slot}``: ``pg_current_wal_lsn() - confirmed_flush_lsn``,
  how far the reader's confirmations trail the server's WAL;
- ``arcstream_cdc_seconds_since_last_event``: seconds since the embedded connector
  last handed over a record, heartbeats included (since capture start if it never did).

The slot is read when Prometheus scrapes (the exporter pattern), on the metrics
server's thread with its own short-timeout connection, so values are never
stale and the capture's event loop never waits for the query. The same
collector serves ``arcstream cdc slot-metrics``, the exporter for a deployment
where Kafka Connect runs the connector: there is no last-event series there,
because that process sees no events.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.common.config import Settings
from services.common.errors import ConfigError
from services.common.metrics import REGISTRY
from services.common.metrics_server import start_metrics_server
from services.extractor.cdc.capture.sink import CapturedRecord

log = logging.getLogger(__name__)

#: The engine's batch sink (as in :mod:`.engine`, not imported so the exporter needs no Java bridge).
BatchSink = Callable[[list[CapturedRecord]], Awaitable[None]]

#: Bounds one scrape's database work; Prometheus' default scrape timeout is 10 s.
QUERY_TIMEOUT_S = 5

SLOT_QUERY = """
SELECT active,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8 AS retained_bytes,
       pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::float8 AS lag_bytes
FROM pg_replication_slots
WHERE slot_name = %s
"""


class SlotHealthCollector(Collector):
    """Reads one replication slot's row on every scrape; one connection, reopened after a failure."""

    def __init__(self, database_url: str, slot: str) -> None:
        self._database_url = database_url
        self._slot = slot
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._last_problem: str | None = None
        #: Whether the latest scrape read the slot's row (``False`` before the first scrape).
        self.last_read_ok = False

    def describe(self) -> Iterable[Metric]:
        # Registering asks for the names; answering without a query keeps start-up off the database.
        return self._families()

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        up, active, retained, lag = families
        with self._lock:
            row = self._read()
            self.last_read_ok = row is not None
        up.add_metric([self._slot], 0 if row is None else 1)
        if row is not None:
            is_active, retained_bytes, lag_bytes = row
            active.add_metric([self._slot], 1 if is_active else 0)
            # NULL positions (a slot never used) leave the byte series out rather than invent 0.
            if retained_bytes is not None:
                retained.add_metric([self._slot], retained_bytes)
            if lag_bytes is not None:
                lag.add_metric([self._slot], lag_bytes)
        return families

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _families(self) -> list[GaugeMetricFamily]:
        labels = ["slot"]
        return [
            GaugeMetricFamily(
                "arcstream_cdc_slot_up",
                "1 when PostgreSQL answered and the replication slot exists, else 0.",
                labels=labels,
            ),
            GaugeMetricFamily(
                "arcstream_cdc_slot_active", "1 while a client streams from the replication slot.", labels=labels
            ),
            GaugeMetricFamily(
                "arcstream_cdc_slot_retained_wal_bytes",
                "WAL the server keeps for the slot: pg_current_wal_lsn() - restart_lsn.",
                labels=labels,
            ),
            GaugeMetricFamily(
                "arcstream_cdc_slot_lag_bytes",
                "WAL not yet confirmed by the slot's reader: pg_current_wal_lsn() - confirmed_flush_lsn.",
                labels=labels,
            ),
        ]

    def _read(self) -> tuple[bool, float | None, float | None] | None:
        """The slot's row, or ``None`` (logged once per distinct problem) when there is none to read."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    self._database_url,
                    autocommit=True,
                    connect_timeout=QUERY_TIMEOUT_S,
                    options=f"-c statement_timeout={QUERY_TIMEOUT_S * 1000}",
                    application_name="arcstream-slot-health",
                )
            row = self._conn.execute(SLOT_QUERY, (self._slot,)).fetchone()
        except psycopg.Error as exc:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._problem(f"cannot read replication slot {self._slot!r}: {type(exc).__name__}: {exc}".strip())
            return None
        if row is None:
            self._problem(f"replication slot {self._slot!r} does not exist (yet)")
            return None
        if self._last_problem is not None:
            log.info("replication slot %r readable again", self._slot)
            self._last_problem = None
        return bool(row[0]), row[1], row[2]

    def _problem(self, message: str) -> None:
        if message != self._last_problem:
            log.warning("%s", message)
            self._last_problem = message


class LastEvent(Collector):
    """When the connector last handed over records; wraps the capture's batch sink to notice."""

    def __init__(self) -> None:
        self._at = time.monotonic()

    def tracking(self, sink: BatchSink) -> BatchSink:
        """``sink``, noting the time of every batch before it is published."""

        async def noted(batch: list[CapturedRecord]) -> None:
            self._at = time.monotonic()
            await sink(batch)

        return noted

    def seconds_since(self) -> float:
        return time.monotonic() - self._at

    def collect(self) -> Iterable[Metric]:
        return [
            GaugeMetricFamily(
                "arcstream_cdc_seconds_since_last_event",
                "Seconds since the embedded connector last handed over a record, heartbeats included "
                "(since capture start if it never did).",
                value=self.seconds_since(),
            )
        ]


@asynccontextmanager
async def capture_health(settings: Settings, last_event: LastEvent) -> AsyncIterator[None]:
    """Serve slot health and ``last_event`` on ``/metrics`` while the capture runs."""
    slot = SlotHealthCollector(settings.database_url.get_secret_value(), settings.cdc.slot_name)
    REGISTRY.register(slot)
    REGISTRY.register(last_event)
    try:
        yield
    finally:
        REGISTRY.unregister(last_event)
        REGISTRY.unregister(slot)
        await asyncio.to_thread(slot.close)


async def run_slot_metrics(settings: Settings, stop: asyncio.Event) -> None:
    """``arcstream cdc slot-metrics``: serve the slot's health until ``stop`` is set.

    For a deployment where Kafka Connect runs the connector: the same series as
    ``cdc capture`` serves, without the last-event age. ``/readyz`` is ready
    once a scrape has read the slot, until one cannot.
    """
    metrics = settings.metrics
    if metrics.port == 0 and not metrics.ephemeral_port:
        raise ConfigError("cdc slot-metrics serves /metrics: set metrics.port (ARCSTREAM_METRICS__PORT)")
    slot = SlotHealthCollector(settings.database_url.get_secret_value(), settings.cdc.slot_name)
    REGISTRY.register(slot)
    server = start_metrics_server(metrics, lambda: {"slot_read": slot.last_read_ok})
    assert server is not None  # the port check above
    log.info("health of replication slot %r on %s/metrics", settings.cdc.slot_name, server.url)
    try:
        await stop.wait()
    finally:
        await asyncio.to_thread(server.stop)
        REGISTRY.unregister(slot)
        await asyncio.to_thread(slot.close)
