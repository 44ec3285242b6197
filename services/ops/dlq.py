"""``arcstream replay-dlq``: after a fix, send dead-lettered inputs back to where they came from.

Every DLQ record carries its origin (``arcstream.origin.topic/partition/offset``
headers). Each one is republished, with its key, value and metadata headers but
without the error and origin headers, to its origin topic and partition (or to
``--to-topic``), so the stage that failed on it processes it again.

Two rules keep this safe:

- Newest version wins: a record whose key was written to the origin topic
  again *after* the failed offset is not republished (``superseded``), since that
  would put an old version on top of a newer one in a compacted topic.
- Once only: the replayer tracks its progress as a consumer group
  (``arcstream-dlq-replay`` by default) and commits after the broker acknowledged
  every republished record; a second run only handles records dead-lettered
  since. ``arcstream replay --group arcstream-dlq-replay --to earliest`` rewinds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from services.common.config import Settings
from services.common.errors import ConfigError
from services.common.kafka.clients import make_consumer, make_producer, start_client
from services.common.kafka.reading import topic_partitions, true_end
from services.common.records import (
    ERROR_HEADERS,
    H_ERROR_CODE,
    H_ORIGIN_OFFSET,
    H_ORIGIN_PARTITION,
    H_ORIGIN_TOPIC,
    Headers,
    header_dict,
)

DEFAULT_GROUP = "arcstream-dlq-replay"
#: Where a republished record came from (``<dlq topic>/<partition>/<offset>``), for a person in Kafka UI.
H_REPLAYED_FROM = "arcstream.replayed.from"
#: Error and origin headers describe the failure, not the message: a new failure writes fresh ones.
_DROPPED_HEADERS = ERROR_HEADERS | {H_REPLAYED_FROM}

Action = Literal["republished", "superseded", "no-origin"]


@dataclass(frozen=True)
class DlqItem:
    """What happened to one DLQ record."""

    dlq_partition: int
    dlq_offset: int
    key: str | None
    error_code: str | None
    origin: TopicPartition | None
    origin_offset: int | None
    action: Action
    #: Where it went (``republished``), else ``None``.
    to_topic: str | None


async def replay_dlq(
    settings: Settings,
    *,
    to_topic: str | None = None,
    group: str = DEFAULT_GROUP,
    dry_run: bool = False,
) -> list[DlqItem]:
    """Republish every DLQ record not handled by an earlier run; return one item per record."""
    dlq = settings.topics.dlq
    consumer = make_consumer(settings.kafka, [], group_id=group)
    await start_client(consumer, settings.kafka)
    try:
        records, ends = await _unhandled(consumer, dlq)
        if not records:
            return []
        newest = await _newest_offsets(settings, records) if to_topic is None else {}
        items = [_decide(record, newest, to_topic) for record in records]
        if not dry_run:
            await _republish(settings, records, items)
            await consumer.commit(ends)
        return items
    finally:
        await consumer.stop()


async def _unhandled(
    consumer: AIOKafkaConsumer, dlq: str
) -> tuple[list[ConsumerRecord[bytes, bytes]], dict[TopicPartition, int]]:
    """DLQ records from the group's committed offsets to the current end, and those ends."""
    tps = await topic_partitions(consumer, dlq)
    if not tps:
        raise ConfigError(f"DLQ topic {dlq!r} does not exist (arcstream topics ensure creates it)")
    consumer.assign(tps)
    ends = await consumer.end_offsets(tps)
    for tp in tps:
        committed = await consumer.committed(tp)
        if committed is None or committed < 0:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)
    records = await _read_until(consumer, ends)
    return records, {tp: end for tp, end in ends.items() if end > 0}


async def _read_until(
    consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]
) -> list[ConsumerRecord[bytes, bytes]]:
    """Records up to ``ends`` (corrected in place by fetch highwaters, see :func:`true_end`)."""
    records: list[ConsumerRecord[bytes, bytes]] = []
    remaining = {tp for tp, end in ends.items() if await consumer.position(tp) < end}
    while remaining:
        batches = await consumer.getmany(*remaining, timeout_ms=1000)
        for tp, batch in batches.items():
            ends[tp] = true_end(consumer, tp, ends[tp])
            records += [record for record in batch if record.offset < ends[tp]]
        for tp in list(remaining):
            if await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
    return records


def _origin(record: ConsumerRecord[bytes, bytes]) -> tuple[TopicPartition, int] | None:
    headers = header_dict(record.headers)
    try:
        return (
            TopicPartition(headers[H_ORIGIN_TOPIC], int(headers[H_ORIGIN_PARTITION])),
            int(headers[H_ORIGIN_OFFSET]),
        )
    except (KeyError, ValueError):
        return None


async def _newest_offsets(
    settings: Settings, records: Sequence[ConsumerRecord[bytes, bytes]]
) -> dict[tuple[TopicPartition, bytes | None], int]:
    """Newest offset per key in each origin partition, scanning only after the oldest failure."""
    start: dict[TopicPartition, int] = {}
    for record in records:
        origin = _origin(record)
        if origin is not None:
            tp, offset = origin
            start[tp] = min(start.get(tp, offset), offset)
    if not start:
        return {}
    scanner = make_consumer(settings.kafka, [], group_id=None)
    await start_client(scanner, settings.kafka)
    try:
        scanner.assign(list(start))
        ends = await scanner.end_offsets(list(start))
        for tp, offset in start.items():
            scanner.seek(tp, min(offset, ends[tp]))
        newest: dict[tuple[TopicPartition, bytes | None], int] = {}
        for record in await _read_until(scanner, ends):
            tp = TopicPartition(record.topic, record.partition)
            newest[(tp, record.key)] = record.offset
        return newest
    finally:
        await scanner.stop()


def _decide(
    record: ConsumerRecord[bytes, bytes],
    newest: dict[tuple[TopicPartition, bytes | None], int],
    to_topic: str | None,
) -> DlqItem:
    headers = header_dict(record.headers)
    origin = _origin(record)
    tp, offset = origin if origin is not None else (None, None)
    action: Action
    if to_topic is not None:
        action, destination = "republished", to_topic
    elif tp is None or offset is None:
        action, destination = "no-origin", None
    elif newest.get((tp, record.key), offset) > offset:
        action, destination = "superseded", None
    else:
        action, destination = "republished", tp.topic
    return DlqItem(
        dlq_partition=record.partition,
        dlq_offset=record.offset,
        key=record.key.decode("utf-8", "replace") if record.key is not None else None,
        error_code=headers.get(H_ERROR_CODE),
        origin=tp,
        origin_offset=offset,
        action=action,
        to_topic=destination,
    )


def _replay_headers(record: ConsumerRecord[bytes, bytes]) -> Headers:
    kept = [(key, value) for key, value in record.headers or () if key not in _DROPPED_HEADERS]
    return [*kept, (H_REPLAYED_FROM, f"{record.topic}/{record.partition}/{record.offset}".encode())]


async def _republish(
    settings: Settings, records: Sequence[ConsumerRecord[bytes, bytes]], items: Sequence[DlqItem]
) -> None:
    """Send in DLQ order and wait for every acknowledgement before the caller commits."""
    producer = make_producer(settings.kafka)
    await start_client(producer, settings.kafka)
    try:
        pending = []
        for record, item in zip(records, items, strict=True):
            if item.action != "republished" or item.to_topic is None:
                continue
            # Back to the origin partition keeps the key's order there; another topic partitions by key.
            partition = item.origin.partition if item.origin and item.origin.topic == item.to_topic else None
            pending.append(
                await producer.send(
                    item.to_topic,
                    record.value,
                    key=record.key,
                    partition=partition,
                    headers=_replay_headers(record),
                )
            )
        for future in pending:
            await future
    finally:
        await producer.stop()
