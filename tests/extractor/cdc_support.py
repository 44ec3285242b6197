"""Change data capture test support: a live Debezium capture and CDC extractor per test module.

Starting the connector's JVM costs seconds, so a test module shares one
database, one capture process (``arcstream cdc capture``) and one extractor
process (``arcstream extract cdc``) through :func:`cdc_stack`; tests keep
apart by using their own investigation identifiers. Both run as real
subprocesses of the CLI, so a restart test can stop and kill them like an
operator (or a crash) would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from services.common.config import KafkaSettings, Settings, load_settings
from services.common.kafka.clients import make_consumer, start_client
from services.common.kafka.topics import ensure_topics
from services.common.records import loads
from services.dev.stack.ports import free_port
from services.dev.stack.processes import terminate
from services.dev.stack.stack import start_store
from services.dev.stack.state import StackState
from services.extractor.cdc.capture.setup import setup_cdc
from services.extractor.source.schema import ensure_source_schema

#: Generous upper bounds that only guard against hangs (never timing assertions).
READY_TIMEOUT_S = 90.0
WAIT_TIMEOUT_S = 60.0


class ServiceProcess:
    """One ``arcstream`` subcommand running in the background, its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.cli", *self.args], env=self.env, stdout=log, stderr=log
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, *, kill: bool = False, timeout: float = 30.0) -> int | None:
        """SIGTERM (clean stop) or SIGKILL (crash); return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        code = self.proc.returncode
        self.proc = None
        return code

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class CdcStack:
    """A module's database, settings, capture and extractor."""

    settings: Settings
    database_url: str
    capture: ServiceProcess
    extractor: ServiceProcess
    setup_lines: list[str] = field(default_factory=list)
    #: Builder and uploader (and the store's URL) when the stack runs the whole pipeline.
    downstream: list[ServiceProcess] = field(default_factory=list)
    store_url: str | None = None
    #: ``/metrics``, ``/healthz``, ``/readyz`` of capture and extractor.
    metrics_urls: dict[str, str] = field(default_factory=dict)

    def start_capture(self) -> None:
        self.capture.start()
        self.wait_for_streaming()

    def start_extractor(self) -> None:
        self.extractor.start()

    def conn(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.database_url, autocommit=True)

    def wait_for_streaming(self) -> None:
        """The connector streams once its replication slot is active (changes from then on are kept)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        with self.conn() as conn:
            while time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                    (self.settings.cdc.slot_name,),
                ).fetchone()
                if row and row[0]:
                    return
                if not self.capture.alive():
                    raise AssertionError(f"capture exited:\n{self.capture.log_tail()}")
                time.sleep(0.2)
        raise AssertionError(f"capture did not start streaming:\n{self.capture.log_tail()}")


def _drop_slot(admin_url: str, slot: str) -> None:
    """A logical slot blocks DROP DATABASE; drop it once the walsender has let go."""
    deadline = time.monotonic() + 20
    with psycopg.connect(admin_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
            if row is None:
                return
            if not row[0]:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                return
            time.sleep(0.2)


def _prepare_with(prepare: Callable[[psycopg.Connection[Any]], None], database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        prepare(conn)


def _service_env(tmp: Path, config_file: Path) -> dict[str, str]:
    """The subprocesses' environment: our config file only (no developer servers or settings)."""
    hidden = ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "ARC_STORE_URL")
    env = {key: value for key, value in os.environ.items() if not key.startswith("ARCSTREAM_") and key not in hidden}
    env["ARCSTREAM_CONFIG"] = str(config_file)
    env["ARCSTREAM_STATE_DIR"] = str(tmp / "no-stack")
    return env


@contextmanager
def cdc_stack(
    dev_stack: StackState,
    tmp_path_factory: pytest.TempPathFactory,
    prepare: Callable[[psycopg.Connection[Any]], None] | None = None,
    pipeline: bool = False,
    **cdc: Any,
) -> Iterator[CdcStack]:
    """A fresh database (the source schema, or what ``prepare`` creates), ``cdc setup``, capture and
    extractor running (with ``pipeline``: also an ARC store, builder and uploader); ``cdc`` overrides
    ``settings.cdc`` keys."""
    assert dev_stack.postgres is not None and dev_stack.broker is not None
    admin_url = dev_stack.postgres.url
    tmp = tmp_path_factory.mktemp("cdc")
    name = f"cdc_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = f"{admin_url.rpartition('/')[0]}/{name}"
    prefix = f"t{uuid.uuid4().hex[:10]}"
    config: dict[str, Any] = {
        "database_url": database_url,
        "kafka": {
            "bootstrap_servers": dev_stack.broker.url,
            # The broker holds a joining member for half the session timeout: keep joins short.
            "session_timeout_ms": 2000,
            "heartbeat_interval_ms": 500,
        },
        "topics": {"prefix": prefix, "partitions": 3},
        "cdc": {
            "topic_prefix": f"{prefix}db",
            "slot_name": f"{prefix}_slot",
            "publication_name": f"{prefix}_pub",
            "group_id": f"{prefix}-cdc",
            "offsets_dir": str(tmp / "offsets"),
            "heartbeat_interval_ms": 1000,
            "debounce_ms": 300,
            "transaction_timeout_ms": 3000,
        }
        | cdc,
        "state_dir": str(tmp / "state"),
    }
    store = None
    if pipeline:
        # Deleted investigations must leave the store: the real API cannot delete, the local store can when asked.
        store = start_store(tmp / "store", extra_args=["--enable-delete"], known_rdis=("cdc-test",))
        config |= {
            "rdi": "cdc-test",
            "max_concurrent_arc_builds": 1,
            "uploader": {"target_url": store.url, "target_deletes": True},
            "builder": {"group_id": f"{prefix}-builder", "shutdown_grace_ms": 1000},
        }
        config["uploader"]["group_id"] = f"{prefix}-uploader"
    config_file = tmp / "arcstream.yaml"
    config_file.write_text(yaml.safe_dump(config))
    settings = load_settings(**config)

    async def prepare_source() -> list[str]:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            if prepare is None:
                await ensure_source_schema(conn)
            else:
                await asyncio.to_thread(_prepare_with, prepare, database_url)
            lines = await setup_cdc(conn, settings)
        await ensure_topics(settings)
        return lines

    env = _service_env(tmp, config_file)
    ports = {"capture": free_port(), "extractor": free_port()}
    stack = CdcStack(
        settings=settings,
        database_url=database_url,
        capture=ServiceProcess(
            ["cdc", "capture"], env | {"ARCSTREAM_METRICS__PORT": str(ports["capture"])}, tmp / "capture.log"
        ),
        extractor=ServiceProcess(
            ["extract", "cdc"], env | {"ARCSTREAM_METRICS__PORT": str(ports["extractor"])}, tmp / "extractor.log"
        ),
        metrics_urls={name: f"http://127.0.0.1:{port}" for name, port in ports.items()},
        downstream=[
            ServiceProcess([name], env, tmp / f"{name}.log") for name in (("builder", "uploader") if pipeline else ())
        ],
        store_url=store.url if store else None,
    )
    try:
        stack.setup_lines = asyncio.run(prepare_source())
        stack.start_capture()
        stack.start_extractor()
        for service in stack.downstream:
            service.start()
        yield stack
    finally:
        for service in stack.downstream:
            service.stop()
        if store is not None and store.pid:
            terminate(store.pid)
        stack.extractor.stop()
        stack.capture.stop()
        _drop_slot(admin_url, settings.cdc.slot_name)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class TopicWatcher:
    """Collects what arrives on a topic from the moment it is entered (all partitions, no group)."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self._kafka = kafka
        self._topic = topic
        self._consumer: AIOKafkaConsumer = make_consumer(kafka, [], group_id=None)
        self.records: list[ConsumerRecord[bytes, bytes]] = []

    async def __aenter__(self) -> TopicWatcher:
        await start_client(self._consumer, self._kafka)
        partitions = self._consumer.partitions_for_topic(self._topic)
        assert partitions, f"topic {self._topic} does not exist"
        tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:
            await self._consumer.position(tp)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._consumer.stop()

    def mark(self) -> int:
        """A position in :attr:`records`, to look only at what came after it."""
        return len(self.records)

    def keys_seen(self, since: int = 0) -> set[str]:
        return {record.key.decode() for record in self.records[since:] if record.key is not None}

    def values(self, key: str, since: int = 0) -> list[Any]:
        """Decoded values for ``key`` in arrival order (``None`` for a tombstone)."""
        return [
            None if record.value is None else loads(record.value)
            for record in self.records[since:]
            if record.key is not None and record.key.decode() == key
        ]

    def latest(self, key: str, since: int = 0) -> Any:
        found = self.values(key, since)
        assert found, f"nothing for {key}"
        return found[-1]

    async def wait_for(self, what: str, check: Callable[[], bool], limit_s: float = WAIT_TIMEOUT_S) -> None:
        """Collect records until ``check()`` holds; fail (naming ``what``) if it never does."""
        deadline = time.monotonic() + limit_s
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; keys seen: {sorted(self.keys_seen())}")
            batches = await self._consumer.getmany(timeout_ms=200)
            for records in batches.values():
                self.records.extend(records)

    async def wait_for_latest(
        self, key: str, check: Callable[[Any], bool], since: int = 0, limit_s: float = WAIT_TIMEOUT_S
    ) -> Any:
        """Wait until the newest value for ``key`` (after ``since``) satisfies ``check``; return it."""

        def ok() -> bool:
            found = self.values(key, since)
            return bool(found) and check(found[-1])

        await self.wait_for(f"the latest value of {key}", ok, limit_s)
        return self.latest(key, since)
