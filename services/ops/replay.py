"""``arcstream replay``: move a consumer group's committed offsets, so a stage re-reads a topic.

Because ``arc.investigations`` and ``arc.arcs`` are compacted, rewinding the
builder group rebuilds every investigation's latest version (after a mapping
change), and a new uploader group re-delivers every ARC (re-export) without
touching the database.

Safety: offsets are only moved while the group has no members, since a
running member would overwrite them with its next commit. The reset commits
through a consumer that *assigns* the partitions (no group join), which Kafka
accepts only for an empty group, so a member that joins in between makes the
reset fail instead of being silently overruled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from services.common.config import Settings
from services.common.errors import BrokerUnavailableError, ConfigError, FatalError
from services.common.kafka.clients import make_admin, make_consumer, start_client
from services.common.kafka.groups import describe_group


class GroupActiveError(FatalError):
    """The consumer group still has members; stop them before moving its offsets."""


@dataclass(frozen=True)
class ReplayTarget:
    """Where to move the offsets: a position, a point in time, or explicit offsets."""

    kind: Literal["earliest", "latest", "time", "offsets"]
    #: ``time``: milliseconds since the epoch.
    timestamp_ms: int | None = None
    #: ``offsets``: ``{topic: {partition: offset}}``.
    offsets: dict[str, dict[int, int]] | None = None


@dataclass(frozen=True)
class PartitionReset:
    topic: str
    partition: int
    #: Committed offset before the reset (``None``: the group had none for this partition).
    before: int | None
    after: int
    #: Current end of the partition: ``end - after`` messages will be re-read.
    end: int


def parse_target(value: str) -> ReplayTarget:
    """``earliest`` | ``latest`` | an ISO 8601 time (UTC unless it names a zone) | a JSON offsets file."""
    if value == "earliest":
        return ReplayTarget(kind="earliest")
    if value == "latest":
        return ReplayTarget(kind="latest")
    if value.endswith(".json"):
        return ReplayTarget(kind="offsets", offsets=_read_offsets_file(Path(value)))
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"--to {value!r}: expected earliest, latest, an ISO time (2026-11-22T08:00:00Z) or a .json file"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return ReplayTarget(kind="time", timestamp_ms=int(moment.timestamp() * 1000))


def _read_offsets_file(path: Path) -> dict[str, dict[int, int]]:
    """``{"arc.arcs": {"0": 12, "1": 0}}``: the shape ``replay --dry-run --json`` prints."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"offsets file {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"offsets file {path} is not valid JSON: {exc}") from exc
    try:
        offsets = {
            str(topic): {int(partition): int(offset) for partition, offset in partitions.items()}
            for topic, partitions in data.items()
        }
    except (AttributeError, TypeError, ValueError):
        raise ConfigError(
            f'offsets file {path} must map topic -> partition -> offset, e.g. {{"arc.arcs": {{"0": 12}}}}'
        ) from None
    if any(offset < 0 for partitions in offsets.values() for offset in partitions.values()):
        raise ConfigError(f"offsets file {path}: offsets must not be negative")
    return offsets


async def replay(
    settings: Settings,
    group: str,
    target: ReplayTarget,
    topics: list[str] | None = None,
    *,
    dry_run: bool = False,
) -> list[PartitionReset]:
    """Move ``group``'s offsets on ``topics`` (default: every topic it has offsets for) to ``target``."""
    admin = make_admin(settings.kafka)
    await start_client(admin, settings.kafka)
    try:
        await _refuse_if_active(admin, group)
        all_partitions = await _partitions(admin, target, topics)
        consumer = make_consumer(settings.kafka, [], group_id=group)
        await start_client(consumer, settings.kafka)
        try:
            before = await _committed(admin, group, all_partitions)
            partitions = _select(all_partitions, before, target, topics, group)
            consumer.assign(partitions)
            begin = await consumer.beginning_offsets(partitions)
            end = await consumer.end_offsets(partitions)
            wanted = await _target_offsets(consumer, target, partitions, begin, end)
            if not dry_run:
                await _refuse_if_active(admin, group)
                await _commit(consumer, group, wanted)
                after = await _committed(admin, group, partitions)
            else:
                after = wanted
        finally:
            await consumer.stop()
    finally:
        await admin.close()
    return [
        PartitionReset(tp.topic, tp.partition, before.get(tp), after.get(tp, wanted[tp]), end[tp])
        for tp in sorted(partitions)
    ]


async def _refuse_if_active(admin: AIOKafkaAdminClient, group: str) -> None:
    description = await describe_group(admin, group)
    if description.members:
        members = ", ".join(f"{m.client_id or '?'}@{m.client_host or '?'} ({m.member_id})" for m in description.members)
        raise GroupActiveError(
            f"consumer group {group!r} is {description.state} with {len(description.members)} member(s): "
            f"{members}; stop its consumers first, then run replay again"
        )


async def _partitions(
    admin: AIOKafkaAdminClient, target: ReplayTarget, topics: list[str] | None
) -> list[TopicPartition]:
    """Partitions of the named topics, or of every topic when the group's topics must be found.

    Existence is checked against the topic list first: describing a missing
    topic would create it on a broker that auto-creates topics.
    """
    named = list(topics or [])
    if target.offsets is not None:
        named += [t for t in target.offsets if t not in named]
    try:
        existing = [t for t in await admin.list_topics() if not t.startswith("__")]
        missing = [t for t in named if t not in existing]
        if missing:
            raise ConfigError(f"topic(s) do not exist: {', '.join(missing)}")
        described = await admin.describe_topics(named or existing)
    except KafkaError as exc:
        raise BrokerUnavailableError(f"cannot read topic metadata: {exc}") from exc
    return [
        TopicPartition(topic["topic"], p["partition"])
        for topic in described
        if not topic.get("error_code")
        for p in topic.get("partitions", [])
    ]


async def _committed(
    admin: AIOKafkaAdminClient, group: str, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """Committed offsets of ``group`` (partitions without one are left out), in one request.

    The partitions are always named: the dev broker cannot answer the
    "every partition of the group" form of this request.
    """
    if not partitions:
        return {}
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=partitions)
    except KafkaError as exc:
        raise BrokerUnavailableError(f"cannot read the committed offsets of {group!r}: {exc}") from exc
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def _select(
    partitions: list[TopicPartition],
    before: dict[TopicPartition, int],
    target: ReplayTarget,
    topics: list[str] | None,
    group: str,
) -> list[TopicPartition]:
    if target.offsets is not None:
        chosen = [tp for tp in partitions if tp.partition in target.offsets.get(tp.topic, {})]
        missing = {
            (topic, partition)
            for topic, parts in target.offsets.items()
            for partition in parts
            if TopicPartition(topic, partition) not in chosen
        }
        if missing:
            raise ConfigError(f"offsets file names partitions that do not exist: {sorted(missing)}")
        return chosen
    if topics:
        return partitions
    group_topics = {tp.topic for tp in before}
    if not group_topics:
        raise ConfigError(f"consumer group {group!r} has no committed offsets; name the topic with --topic")
    return [tp for tp in partitions if tp.topic in group_topics]


async def _target_offsets(
    consumer: AIOKafkaConsumer,
    target: ReplayTarget,
    partitions: list[TopicPartition],
    begin: dict[TopicPartition, int],
    end: dict[TopicPartition, int],
) -> dict[TopicPartition, int]:
    if target.kind == "earliest":
        return {tp: begin[tp] for tp in partitions}
    if target.kind == "latest":
        return {tp: end[tp] for tp in partitions}
    if target.kind == "time":
        assert target.timestamp_ms is not None
        found = await consumer.offsets_for_times({tp: target.timestamp_ms for tp in partitions})
        # No message at or after the time: start at the end (nothing to re-read). Kafka says so
        # with no answer; the dev broker answers offset 0 with timestamp -1.
        return {tp: end[tp] if (hit := found.get(tp)) is None or hit.timestamp < 0 else hit.offset for tp in partitions}
    assert target.offsets is not None
    wanted = {tp: target.offsets[tp.topic][tp.partition] for tp in partitions}
    outside = [
        f"{tp.topic}/{tp.partition}={o} (valid {begin[tp]}..{end[tp]})"
        for tp, o in wanted.items()
        if not begin[tp] <= o <= end[tp]
    ]
    if outside:
        raise ConfigError("offsets outside the partitions' current range: " + ", ".join(outside))
    return wanted


async def _commit(consumer: AIOKafkaConsumer, group: str, offsets: dict[TopicPartition, int]) -> None:
    try:
        await consumer.commit({tp: OffsetAndMetadata(offset, "arcstream replay") for tp, offset in offsets.items()})
    except KafkaError as exc:
        raise GroupActiveError(
            f"the broker refused the reset of {group!r} ({type(exc).__name__}): "
            "a member probably joined meanwhile; stop its consumers and run replay again"
        ) from exc
