"""Helpers every test package uses."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiohttp import web
from aiokafka import ConsumerRecord

from services.common.config import WELL_KNOWN_ENV, Settings
from services.common.kafka.clients import make_admin, make_producer, start_client
from services.common.kafka.groups import describe_group
from services.common.kafka.topics import ensure_topics
from services.common.report import OutcomeRecord
from services.dev.stack.ports import free_port


async def until(condition: Callable[[], Awaitable[bool]], what: str = "condition", limit_s: float = 120.0) -> None:
    """Poll until ``condition()`` holds; the limit only bounds a hung test, it asserts nothing about speed."""
    deadline = time.monotonic() + limit_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.3)


async def publish_outcomes(settings: Settings, records: list[OutcomeRecord]) -> None:
    """Report records on the report topic, keyed by identifier, as the stages write them."""
    await ensure_topics(settings)
    producer = make_producer(settings.kafka)
    await start_client(producer, settings.kafka)
    try:
        for record in records:
            value = record.model_dump_json(exclude_none=True).encode()
            await producer.send_and_wait(settings.topics.report, key=record.identifier.encode(), value=value)
    finally:
        await producer.stop()


@dataclass
class StatusView:
    """An ``arcstream status`` process serving the status page at ``url``."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def assert_running(self) -> None:
        assert self.process.poll() is None, self.log.read_text()


@contextmanager
def status_view(settings: Settings, tmp_path: Path) -> Iterator[StatusView]:
    """``arcstream status`` over ``settings``' topics on a free port, with only this test's settings in its
    environment; stopped with SIGTERM (killed if it hangs) however the test ends."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCSTREAM_") and k not in WELL_KNOWN_ENV}
    env |= {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "ARCSTREAM_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "ARCSTREAM_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
        "ARCSTREAM_TOPICS__PREFIX": settings.topics.prefix,
        "ARCSTREAM_TOPICS__PARTITIONS": str(settings.topics.partitions),
        "ARCSTREAM_STATE_DIR": str(tmp_path / "state"),
        "ARCSTREAM_LOG_LEVEL": "WARNING",
    }
    log = tmp_path / "status.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "status", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        yield StatusView(f"http://127.0.0.1:{port}", process, log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


async def group_members(settings: Settings, group: str) -> int:
    """Members of a consumer group once it is stable (0 while it rebalances)."""
    admin = make_admin(settings.kafka)
    await start_client(admin, settings.kafka)
    try:
        description = await describe_group(admin, group)
        return len(description.members) if description.state == "Stable" else 0
    finally:
        await admin.close()


def latest_titles(arcs: Iterable[ConsumerRecord[bytes, bytes]]) -> dict[str, str]:
    """Identifier -> title of the newest ARC per key (records in partition order, i.e. production order per key)."""
    latest: dict[str, str] = {}
    for record in arcs:
        if record.key is not None and record.value is not None:
            root = next(node for node in orjson.loads(record.value)["@graph"] if node["@id"] == "./")
            latest[record.key.decode()] = root["name"]
    return latest


@asynccontextmanager
async def serve_app(
    app: web.Application, ssl_context: ssl.SSLContext | None = None, port: int | None = None
) -> AsyncIterator[str]:
    """Serve an aiohttp application in this process on a loopback port (a free one unless given); yield its
    base URL (``https`` with a TLS context)."""
    port = port or free_port()
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
