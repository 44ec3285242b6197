"""``arcstream replay-dlq``: dead-lettered inputs go back to their origin, once, never over newer data."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any

import pytest

from services.cli import main
from services.common.config import Settings
from services.common.kafka.clients import make_producer, start_client
from services.common.kafka.reading import read_topic
from services.common.kafka.topics import ensure_topics
from services.common.records import (
    H_ERROR_CODE,
    H_ERROR_MESSAGE,
    H_ERROR_STAGE,
    H_ORIGIN_OFFSET,
    H_ORIGIN_PARTITION,
    H_ORIGIN_TOPIC,
    H_RUN_ID,
    header_dict,
    make_headers,
)
from services.ops.dlq import H_REPLAYED_FROM, replay_dlq


def run[T](coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Topics:
    """Writes what the pipeline would have written: origin records, then their dead letters."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, topic: str, key: str, value: bytes | None, headers: dict[str, str | int | None]) -> Any:
        producer = make_producer(self.settings.kafka)
        await start_client(producer, self.settings.kafka)
        try:
            return await producer.send_and_wait(
                topic, value, key=key.encode(), partition=0, headers=make_headers(headers)
            )
        finally:
            await producer.stop()

    def origin(self, key: str, value: bytes | None) -> int:
        """Write one input to arc.investigations (partition 0); return its offset."""
        metadata = run(self.send(self.settings.topics.investigations, key, value, {H_RUN_ID: "run-1"}))
        return int(metadata.offset)

    def dead_letter(self, key: str, value: bytes | None, origin_offset: int | None) -> None:
        headers: dict[str, str | int | None] = {
            H_RUN_ID: "run-1",
            H_ERROR_CODE: "mapping-failed",
            H_ERROR_MESSAGE: "study identifier 's/1' is invalid",
            H_ERROR_STAGE: "build",
        }
        if origin_offset is not None:
            headers |= {
                H_ORIGIN_TOPIC: self.settings.topics.investigations,
                H_ORIGIN_PARTITION: 0,
                H_ORIGIN_OFFSET: origin_offset,
            }
        run(self.send(self.settings.topics.dlq, key, value, headers))


@pytest.fixture
def topics(settings: Settings) -> Topics:
    run(ensure_topics(settings))
    return Topics(settings)


def records(settings: Settings, topic: str) -> list[tuple[str, bytes | None, dict[str, str]]]:
    return [
        (r.key.decode() if r.key else "", r.value, header_dict(r.headers))
        for r in run(read_topic(settings.kafka, topic))
    ]


def test_republishes_to_the_origin_without_error_headers_once(settings: Settings, topics: Topics) -> None:
    offset = topics.origin("inv-1", b'{"v": 1}')
    topics.dead_letter("inv-1", b'{"v": 1}', offset)

    items = run(replay_dlq(settings))

    assert [(i.key, i.action, i.to_topic, i.origin_offset, i.error_code) for i in items] == [
        ("inv-1", "republished", settings.topics.investigations, offset, "mapping-failed")
    ]
    origin = run(read_topic(settings.kafka, settings.topics.investigations))
    assert [(r.key, r.value, r.partition) for r in origin] == [(b"inv-1", b'{"v": 1}', 0)] * 2
    headers = header_dict(origin[-1].headers)
    assert headers[H_RUN_ID] == "run-1"
    assert headers[H_REPLAYED_FROM] == f"{settings.topics.dlq}/0/0"
    assert not {H_ERROR_CODE, H_ERROR_MESSAGE, H_ERROR_STAGE, H_ORIGIN_TOPIC, H_ORIGIN_OFFSET} & headers.keys()
    # A second run finds nothing new: each dead letter is replayed once.
    assert run(replay_dlq(settings)) == []
    assert len(records(settings, settings.topics.investigations)) == 2


def test_a_key_written_again_since_is_superseded(settings: Settings, topics: Topics) -> None:
    old = topics.origin("inv-2", b'{"v": "old"}')
    topics.dead_letter("inv-2", b'{"v": "old"}', old)
    topics.origin("inv-2", b'{"v": "new"}')
    kept = topics.origin("inv-3", b'{"v": 3}')
    topics.dead_letter("inv-3", b'{"v": 3}', kept)

    items = run(replay_dlq(settings))

    assert {i.key: i.action for i in items} == {"inv-2": "superseded", "inv-3": "republished"}
    values = [(key, value) for key, value, _ in records(settings, settings.topics.investigations)]
    assert values[-1] == ("inv-3", b'{"v": 3}')
    assert [v for k, v in values if k == "inv-2"] == [b'{"v": "old"}', b'{"v": "new"}']  # newest stays last


def test_without_origin_needs_to_topic_and_tombstones_travel(settings: Settings, topics: Topics) -> None:
    topics.dead_letter("inv-4", b'{"v": 4}', None)
    offset = topics.origin("inv-5", None)
    topics.dead_letter("inv-5", None, offset)

    dry = run(replay_dlq(settings, dry_run=True))
    assert {i.key: i.action for i in dry} == {"inv-4": "no-origin", "inv-5": "republished"}
    assert len(records(settings, settings.topics.investigations)) == 1  # dry run sent nothing

    items = run(replay_dlq(settings, to_topic=settings.topics.arcs))  # the dry run committed nothing
    assert {i.key: (i.action, i.to_topic) for i in items} == {
        "inv-4": ("republished", settings.topics.arcs),
        "inv-5": ("republished", settings.topics.arcs),
    }
    # Another topic partitions by key: compare without partition order.
    assert sorted((k, v or b"") for k, v, _ in records(settings, settings.topics.arcs)) == [
        ("inv-4", b'{"v": 4}'),
        ("inv-5", b""),
    ]
    assert [v for k, v, _ in records(settings, settings.topics.arcs) if k == "inv-5"] == [None]


def test_cli_summary_and_json(
    settings: Settings,
    topics: Topics,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    offset = topics.origin("inv-6", b"{}")
    topics.dead_letter("inv-6", b"{}", offset)
    topics.dead_letter("inv-7", b"{}", None)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.kafka.bootstrap_servers)
    monkeypatch.setenv("ARCSTREAM_TOPICS__PREFIX", settings.topics.prefix)

    assert main(["replay-dlq", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 DLQ record(s): 1 republished, 0 superseded, 1 without origin (use --to-topic)" in out
    assert "(dry run: nothing sent)" in out

    assert main(["replay-dlq", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {(item["key"], item["action"], item["origin_offset"]) for item in lines} == {
        ("inv-6", "republished", offset),
        ("inv-7", "no-origin", None),
    }
