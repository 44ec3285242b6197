"""Find outcomes a consumer group already wrote for messages it is about to read again.

A member that takes over a partition (after a restart, a crash or a rebalance)
re-reads every message after the committed offset. Some of them may already have
their outcome on ``arc.report``: the process died after the outcome was
acknowledged but before the offset was committed. Writing a second outcome would
break "one outcome per identifier, stage and version", so before the first
record of such a partition is taken in, the report topic is scanned from the
partition's commit mark (:mod:`services.common.kafka.marks`) for outcomes whose
origin headers name this group, the input topic and partition, and an offset at
or after the committed one. Those messages are then acknowledged without a new
outcome (each stage decides what else to restore).
"""

from __future__ import annotations

from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common.config import KafkaSettings
from services.common.kafka.marks import CommitMark, MarkStore
from services.common.kafka.reading import iter_topic, topic_partitions
from services.common.records import (
    H_ORIGIN_GROUP,
    H_ORIGIN_OFFSET,
    H_ORIGIN_PARTITION,
    H_ORIGIN_TOPIC,
    header_dict,
    loads,
)
from services.common.report import OutcomeRecord

#: (input topic, partition, offset) of a message whose outcome was found.
Position = tuple[str, int, int]


async def written_outcomes(
    kafka: KafkaSettings,
    report_topic: str,
    start: Mapping[int, int],
    group: str,
    committed: Mapping[TopicPartition, int],
) -> dict[Position, OutcomeRecord]:
    """Outcomes of ``group`` for input messages at or after ``committed[tp]``.

    ``start`` gives, per report partition, the first offset to read (missing: from the beginning).
    """
    found: dict[Position, OutcomeRecord] = {}
    async for record in iter_topic(kafka, report_topic, start):
        headers = header_dict(record.headers)
        if headers.get(H_ORIGIN_GROUP) != group or record.value is None:
            continue
        topic = headers.get(H_ORIGIN_TOPIC, "")
        partition = int(headers.get(H_ORIGIN_PARTITION, "-1"))
        offset = int(headers.get(H_ORIGIN_OFFSET, "-1"))
        floor = committed.get(TopicPartition(topic, partition))
        if floor is not None and offset >= floor:
            found[(topic, partition, offset)] = OutcomeRecord.model_validate(loads(record.value))
    return found


class OutcomeRecovery:
    """The loop's :class:`services.common.kafka.stage.Recovery` on a real consumer: marks plus a report scan."""

    def __init__(
        self, kafka: KafkaSettings, report_topic: str, group: str, consumer: AIOKafkaConsumer, marks: MarkStore
    ) -> None:
        self._kafka = kafka
        self._report_topic = report_topic
        self._group = group
        self._consumer = consumer
        self._marks = marks

    async def prepare(
        self, partitions: frozenset[TopicPartition]
    ) -> tuple[dict[Position, OutcomeRecord], dict[int, int]]:
        """Outcomes already written for ``partitions``, and the report's end offsets now.

        A partition without a mark (its group never committed one) gets one now, before
        anything of it is handled: outcomes written from now on come after today's end.
        """
        report_end = await self._report_end()
        committed: dict[TopicPartition, int] = {}
        for tp in partitions:
            offset = await self._consumer.committed(tp)
            if offset is None or offset < 0:
                offset = (await self._consumer.beginning_offsets([tp]))[tp]
            committed[tp] = offset
        marks = await self._marks.marks(partitions)
        fresh = {tp: CommitMark(offset=committed[tp], report_from=_keys(report_end)) for tp in partitions - set(marks)}
        if fresh:
            await self._marks.commit(self._consumer, fresh)
        if not marks:
            return {}, report_end
        start: dict[int, int] = {}
        for mark in marks.values():
            for partition, offset in mark.start_offsets().items():
                start[partition] = min(start.get(partition, offset), offset)
        found = await written_outcomes(self._kafka, self._report_topic, start, self._group, committed)
        return found, report_end

    async def commit(self, points: dict[TopicPartition, tuple[int, dict[int, int]]]) -> None:
        await self._marks.commit(
            self._consumer,
            {
                tp: CommitMark(offset=offset, report_from=_keys(report_from))
                for tp, (offset, report_from) in points.items()
            },
        )

    async def _report_end(self) -> dict[int, int]:
        """End offsets of the report topic as the broker lists them.

        On the dev broker this may be below the true end (see ``reading.true_end``); it is
        only used as a lower bound, where too low means scanning a little more, never less.
        """
        tps = await topic_partitions(self._consumer, self._report_topic)
        ends = await self._consumer.end_offsets(tps) if tps else {}
        return {tp.partition: offset for tp, offset in ends.items()}


def _keys(positions: Mapping[int, int]) -> dict[str, int]:
    return {str(partition): offset for partition, offset in positions.items()}
