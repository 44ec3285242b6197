"""Fixtures for extractor tests: a source database filled with generated rows, topic readers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from services.common.config import Settings
from services.common.kafka.reading import read_topic
from services.common.records import H_KIND, header_dict, loads
from services.dev.generator import Profile, SourceRows, generate
from services.dev.writer import write_rows
from services.extractor.source.schema import connect, ensure_source_schema


async def _fill(database_url: str, rows: Iterable[SourceRows]) -> int:
    conn = await connect(database_url)
    try:
        await ensure_source_schema(conn)
        await conn.commit()
        return await write_rows(conn, rows)
    finally:
        await conn.close()


@pytest.fixture
def fill_source(database_url: str) -> Callable[..., int]:
    """Create the six relations and write rows (generated, or given) into this test's database."""

    def fill(n: int = 0, seed: int = 1, profile: Profile = "small", rows: Iterable[SourceRows] | None = None) -> int:
        return asyncio.run(_fill(database_url, rows if rows is not None else generate(n, seed, profile)))

    return fill


def topic_messages(settings: Settings, topic: str) -> list[Any]:
    return asyncio.run(read_topic(settings.kafka, topic))


def payloads_on_topic(settings: Settings) -> dict[str, dict[str, Any] | None]:
    """Latest payload (``None`` = tombstone) per identifier on ``arc.investigations``, markers left out."""
    latest: dict[str, dict[str, Any] | None] = {}
    for record in topic_messages(settings, settings.topics.investigations):
        if header_dict(record.headers).get(H_KIND, "payload") != "payload":
            continue
        latest[record.key.decode()] = None if record.value is None else loads(record.value)
    return latest


def markers_on_topic(settings: Settings) -> list[dict[str, Any]]:
    return [
        loads(record.value)
        for record in topic_messages(settings, settings.topics.investigations)
        if header_dict(record.headers).get(H_KIND) in ("run-start", "run-end")
    ]


def reports_on_topic(settings: Settings) -> list[dict[str, Any]]:
    return [loads(record.value) for record in topic_messages(settings, settings.topics.report)]
