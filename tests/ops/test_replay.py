"""``arcstream replay``: moving a stopped group's offsets on the real broker."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from services.cli import main
from services.common.config import Settings
from services.common.errors import ConfigError
from services.common.kafka.clients import make_admin, make_consumer, make_producer, start_client
from services.common.kafka.groups import describe_group, stop_consumer
from services.common.kafka.topics import ensure_topics
from services.ops.replay import GroupActiveError, ReplayTarget, parse_target, replay

#: Base of the create timestamps of test messages: one message per minute from here.
BASE_MS = 1_795_000_000_000


def run[T](coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def produce(settings: Settings, topic: str, per_partition: int, *, stamped: bool = True) -> None:
    """``per_partition`` messages in every partition (message i stamped BASE_MS + i minutes, or now)."""
    await ensure_topics(settings)
    producer = make_producer(settings.kafka)
    await start_client(producer, settings.kafka)
    try:
        for partition in range(settings.topics.partitions):
            for i in range(per_partition):
                await producer.send_and_wait(
                    topic,
                    f"v{i}".encode(),
                    key=f"k{partition}-{i}".encode(),
                    partition=partition,
                    timestamp_ms=BASE_MS + i * 60_000 if stamped else None,
                )
    finally:
        await producer.stop()


async def commit(settings: Settings, group: str, offsets: dict[TopicPartition, int]) -> None:
    """What a stage leaves behind: committed offsets, no members."""
    consumer = make_consumer(settings.kafka, [], group_id=group)
    await start_client(consumer, settings.kafka)
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


async def committed(settings: Settings, group: str, topic: str) -> dict[int, int | None]:
    consumer = make_consumer(settings.kafka, [], group_id=group)
    await start_client(consumer, settings.kafka)
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topics.partitions)]
        return {tp.partition: await consumer.committed(tp) for tp in tps}
    finally:
        await consumer.stop()


def tps(settings: Settings, topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in range(settings.topics.partitions)]


def test_parse_target_forms(tmp_path: Path) -> None:
    assert parse_target("earliest") == ReplayTarget(kind="earliest")
    assert parse_target("latest") == ReplayTarget(kind="latest")
    at = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    assert parse_target("2026-11-22T08:00:00Z").timestamp_ms == int(at.timestamp() * 1000)
    assert parse_target("2026-11-22T08:00:00").timestamp_ms == int(at.timestamp() * 1000)
    assert parse_target("2026-11-22T09:00:00+01:00").timestamp_ms == int(at.timestamp() * 1000)
    good = tmp_path / "offsets.json"
    good.write_text('{"arc.arcs": {"0": 12, "2": 0}}')
    assert parse_target(str(good)).offsets == {"arc.arcs": {0: 12, 2: 0}}
    with pytest.raises(ConfigError, match="expected earliest"):
        parse_target("yesterday")
    bad = tmp_path / "bad.json"
    bad.write_text('{"arc.arcs": [1, 2]}')
    with pytest.raises(ConfigError, match="topic -> partition -> offset"):
        parse_target(str(bad))
    with pytest.raises(ConfigError, match="not valid JSON"):
        bad.write_text("{")
        parse_target(str(bad))
    with pytest.raises(ConfigError, match="No such file"):
        parse_target(str(tmp_path / "missing.json"))


def test_replay_to_earliest_rewinds_every_topic_of_the_group(settings: Settings) -> None:
    topic = settings.topics.investigations
    run(produce(settings, topic, 3))
    run(commit(settings, "g-builder", {tp: 3 for tp in tps(settings, topic)}))

    resets = run(replay(settings, "g-builder", ReplayTarget(kind="earliest")))

    assert [(r.topic, r.partition, r.before, r.after, r.end) for r in resets] == [(topic, p, 3, 0, 3) for p in range(3)]
    assert run(committed(settings, "g-builder", topic)) == {0: 0, 1: 0, 2: 0}


def test_replay_to_a_time_starts_at_the_first_message_after_it(settings: Settings) -> None:
    topic = settings.topics.arcs
    moment = run(_produce_around_a_moment(settings, topic))

    resets = run(replay(settings, "g-up", parse_target(moment.isoformat()), [topic]))

    assert {r.partition: (r.before, r.after) for r in resets} == {p: (3, 2) for p in range(3)}
    assert run(committed(settings, "g-up", topic)) == {0: 2, 1: 2, 2: 2}
    # After the last message: nothing to re-read, the offsets go to the end.
    later = datetime.fromtimestamp(moment.timestamp() + 3600, UTC).isoformat()
    assert {r.after for r in run(replay(settings, "g-up", parse_target(later), [topic]))} == {3}


async def _produce_around_a_moment(settings: Settings, topic: str) -> datetime:
    """Two messages per partition, a moment a second later, one more message a second after it.

    The dev broker answers time lookups from its own append time (not the
    record's create time), so the moment is real time between real sends.
    """
    await produce(settings, topic, 2, stamped=False)
    await _wait_for_clock(time.time() + 1)
    moment = datetime.now(UTC)
    await _wait_for_clock(moment.timestamp() + 1)
    await produce(settings, topic, 1, stamped=False)
    await commit(settings, "g-up", {tp: 3 for tp in tps(settings, topic)})
    return moment


async def _wait_for_clock(at: float) -> None:
    """Let the wall clock pass ``at`` (the broker stamps messages with it)."""
    await asyncio.sleep(max(0.0, at - time.time()) + 0.01)


def test_replay_to_an_offsets_file_touches_only_named_partitions(settings: Settings, tmp_path: Path) -> None:
    topic = settings.topics.arcs
    run(produce(settings, topic, 3))
    run(commit(settings, "g-file", {tp: 3 for tp in tps(settings, topic)}))
    offsets = tmp_path / "offsets.json"
    offsets.write_text(json.dumps({topic: {"0": 1, "2": 2}}))

    resets = run(replay(settings, "g-file", parse_target(str(offsets))))

    assert [(r.partition, r.before, r.after) for r in resets] == [(0, 3, 1), (2, 3, 2)]
    assert run(committed(settings, "g-file", topic)) == {0: 1, 1: 3, 2: 2}

    offsets.write_text(json.dumps({topic: {"1": 4}}))
    with pytest.raises(ConfigError, match=r"valid 0\.\.3"):
        run(replay(settings, "g-file", parse_target(str(offsets))))
    offsets.write_text(json.dumps({topic: {"7": 0}}))
    with pytest.raises(ConfigError, match="do not exist"):
        run(replay(settings, "g-file", parse_target(str(offsets))))
    assert run(committed(settings, "g-file", topic)) == {0: 1, 1: 3, 2: 2}


def test_dry_run_changes_nothing(settings: Settings) -> None:
    topic = settings.topics.arcs
    run(produce(settings, topic, 2))
    run(commit(settings, "g-dry", {tp: 2 for tp in tps(settings, topic)}))
    resets = run(replay(settings, "g-dry", ReplayTarget(kind="earliest"), dry_run=True))
    assert {(r.before, r.after) for r in resets} == {(2, 0)}
    assert run(committed(settings, "g-dry", topic)) == {0: 2, 1: 2, 2: 2}


def test_a_group_without_offsets_needs_a_topic(settings: Settings) -> None:
    topic = settings.topics.arcs
    run(produce(settings, topic, 1))
    with pytest.raises(ConfigError, match="--topic"):
        run(replay(settings, "g-new", ReplayTarget(kind="earliest")))
    resets = run(replay(settings, "g-new", ReplayTarget(kind="latest"), [topic]))
    assert {(r.before, r.after) for r in resets} == {(None, 1)}
    missing = f"{settings.topics.prefix}.no-such-topic"
    with pytest.raises(ConfigError, match=f"do not exist: {missing}"):
        run(replay(settings, "g-new", ReplayTarget(kind="earliest"), [missing]))
    assert missing not in run(_topics(settings))  # a typo must not create the topic


async def _topics(settings: Settings) -> list[str]:
    admin = make_admin(settings.kafka)
    await start_client(admin, settings.kafka)
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


def test_replay_refuses_while_the_group_has_members(make_settings: Callable[..., Settings]) -> None:
    # The dev broker waits half the session timeout for more members before it assigns.
    settings = make_settings(kafka={"session_timeout_ms": 2000, "heartbeat_interval_ms": 500})
    topic = settings.topics.investigations
    run(produce(settings, topic, 2))
    run(_refuses_while_member_then_succeeds(settings, topic))
    assert run(committed(settings, "g-live", topic)) == {0: 0, 1: 0, 2: 0}


async def _refuses_while_member_then_succeeds(settings: Settings, topic: str) -> None:
    member = make_consumer(settings.kafka, [topic], group_id="g-live")
    await start_client(member, settings.kafka)
    try:
        seen = 0
        while seen < 6:
            seen += sum(len(batch) for batch in (await member.getmany(timeout_ms=500)).values())
        await member.commit()
        with pytest.raises(GroupActiveError, match=r"g-live.*1 member"):
            await replay(settings, "g-live", ReplayTarget(kind="earliest"))
        assert {tp.partition: await member.committed(tp) for tp in tps(settings, topic)} == {0: 2, 1: 2, 2: 2}
    finally:
        await stop_consumer(member)
    # The member left the group (also on a broker whose first generation is 0), so replay may proceed.
    admin = make_admin(settings.kafka)
    await start_client(admin, settings.kafka)
    try:
        assert (await describe_group(admin, "g-live")).members == ()
    finally:
        await admin.close()
    resets = await replay(settings, "g-live", ReplayTarget(kind="earliest"))
    assert {(r.before, r.after) for r in resets} == {(2, 0)}


def test_cli_prints_before_and_after(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = settings.topics.investigations
    run(produce(settings, topic, 2))
    run(commit(settings, "g-cli", {tp: 2 for tp in tps(settings, topic)}))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.kafka.bootstrap_servers)

    assert main(["replay", "--group", "g-cli", "--to", "earliest"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["topic", "partition", "before", "after", "end", "to", "re-read"]
    assert [line.split() for line in lines[1:]] == [[topic, str(p), "2", "0", "2", "2"] for p in range(3)]

    assert main(["replay", "--group", "g-cli", "--to", "latest", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"before": {topic: {"0": 0, "1": 0, "2": 0}}, "after": {topic: {"0": 2, "1": 2, "2": 2}}}

    assert main(["replay", "--group", "g-cli", "--to", "soon"]) == 1
    assert "expected earliest" in capsys.readouterr().err
