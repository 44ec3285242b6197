"""Helpers for running the real builder, uploader and store inside an ops test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson

from services.builder.service import BuilderService
from services.common.config import Settings
from services.common.kafka.clients import make_producer, start_client
from services.common.kafka.topics import ensure_topics
from services.common.payload import InvestigationPayload
from services.common.records import H_KIND, H_SCHEMA_VERSION, H_SOURCE_TS, make_headers
from services.common.report import utc_now_iso
from services.dev.stack.state import ServerRecord
from services.uploader.service import Uploader

#: The dev broker assigns partitions after half the session timeout: keep joins short.
FAST_GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500}


def run[T](coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def until(condition: Callable[[], Awaitable[bool]], what: str, limit_s: float = 120.0) -> None:
    """Poll until ``condition()`` holds; the limit only ends a hung test, it asserts nothing about speed."""
    deadline = time.monotonic() + limit_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def publish(settings: Settings, *payloads: InvestigationPayload) -> None:
    """Payloads on arc.investigations, as the extractor writes them (source time: now)."""
    await ensure_topics(settings)
    producer = make_producer(settings.kafka)
    await start_client(producer, settings.kafka)
    try:
        for payload in payloads:
            await producer.send_and_wait(
                settings.topics.investigations,
                orjson.dumps(payload.model_dump(mode="json")),
                key=payload.identifier.encode(),
                headers=make_headers({H_KIND: "payload", H_SCHEMA_VERSION: "1", H_SOURCE_TS: utc_now_iso()}),
            )
    finally:
        await producer.stop()


@asynccontextmanager
async def running(service: BuilderService | Uploader) -> AsyncIterator[None]:
    """The service as a task of this loop, stopped the SIGTERM way on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task


def stored(store: ServerRecord) -> dict[str, str]:
    """identifier -> content hash of every ARC in a store."""
    response = httpx.get(f"{store.url}/v3/arcs", timeout=10)
    response.raise_for_status()
    return {arc["identifier"]: arc["arc_hash"] for arc in response.json()}


async def delivered(store: ServerRecord, count: int) -> bool:
    return len(await asyncio.to_thread(stored, store)) == count
