"""Read a whole topic, from the beginning to its current end, without a consumer group.

Used where a service rebuilds state from a topic (the uploader's delivered
hashes, the run report) and by tests that inspect what a stage produced.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from services.common.config import KafkaSettings
from services.common.kafka.clients import make_consumer, start_client


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic``, refreshing metadata once if the client has not seen it yet."""
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer.topics()  # refreshes the cluster metadata
        partitions = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(partitions)]


def true_end(consumer: AIOKafkaConsumer, tp: TopicPartition, listed_end: int) -> int:
    """The end offset of ``tp``, corrected by the highwater of the last fetch.

    The dev broker (Tansu 0.6) answers ListOffsets(latest) with the last batch's
    base offset + 1, so after a multi-record batch ``end_offsets`` is too small;
    the highwater in fetch responses is right. Taking the larger never stops early.
    """
    highwater = consumer.highwater(tp)
    return max(listed_end, highwater) if highwater is not None else listed_end


async def iter_topic(
    kafka: KafkaSettings, topic: str, start: Mapping[int, int] | None = None
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every record now in ``topic`` in offset order per partition, then stop.

    ``start`` gives, per partition, the first offset to read (missing: from the beginning).
    """
    consumer = make_consumer(kafka, [], group_id=None)
    await start_client(consumer, kafka)
    try:
        tps = await topic_partitions(consumer, topic)
        if not tps:
            return
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        beginnings = await consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max((start or {}).get(tp.partition, 0), beginnings[tp]))
        remaining = {tp for tp in tps if ends[tp] > await consumer.position(tp)}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batches.items():
                ends[tp] = true_end(consumer, tp, ends[tp])
                for record in records:
                    if record.offset < ends[tp]:
                        yield record
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()


async def read_topic(kafka: KafkaSettings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """All records now in ``topic`` (see :func:`iter_topic`)."""
    return [record async for record in iter_topic(kafka, topic)]
