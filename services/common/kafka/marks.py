"""Commit marks: with each offset commit, where on ``arc.report`` the outcomes of later messages start.

At-least-once means a restarted (or newly assigned) member re-reads every message
after the last committed offset, including some whose outcome is already on the
report topic. To write no second outcome it scans the report for outcomes of its
group from a known position on (:mod:`services.common.kafka.recovery`). That
position travels with the commit: the report's end offsets at the moment the
earliest uncommitted message was taken in — no outcome of a message at or after
the committed offset can be before them.

Kafka keeps it as the commit's metadata string (``OffsetAndMetadata``), the
standard place. A broker that drops commit metadata (the dev broker, Tansu 0.6,
returns it empty, and its OffsetFetch answer cannot be decoded by the admin client)
is detected on the first commit by reading the commit back; from then on the marks
are kept in the compacted state topic instead (``mark|<group>|<topic>|<partition>``).
Both are read when a partition is assigned (the newer mark wins), so a member finds
the marks of the previous one wherever the broker made it keep them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata
from pydantic import BaseModel, ConfigDict, ValidationError

from services.common.config import KafkaSettings
from services.common.kafka.clients import make_admin, quiet_aiokafka, start_client
from services.common.kafka.reading import iter_topic
from services.common.records import dumps, loads

log = logging.getLogger(__name__)


class CommitMark(BaseModel):
    """Where the outcomes of messages at or after ``offset`` may start on the report topic."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    #: The committed offset this mark belongs to.
    offset: int
    #: Report partition (as a string: JSON keys) -> first offset that may hold such outcomes.
    report_from: dict[str, int]

    def start_offsets(self) -> dict[int, int]:
        return {int(partition): offset for partition, offset in self.report_from.items()}


def _decode(text: str | None) -> CommitMark | None:
    if not text:
        return None
    try:
        return CommitMark.model_validate(loads(text))
    except (ValueError, ValidationError):
        return None


class MarkStore:
    """Commit marks of one consumer group: in commit metadata where the broker keeps it, else the state topic."""

    def __init__(self, kafka: KafkaSettings, state_topic: str, group: str, producer: AIOKafkaProducer) -> None:
        self._kafka = kafka
        self._state_topic = state_topic
        self._group = group
        self._producer = producer
        self._admin: AIOKafkaAdminClient | None = None
        #: ``None`` until the first commit was read back.
        self.metadata_kept: bool | None = None
        self._topic_marks: dict[TopicPartition, CommitMark] = {}

    async def open(self) -> None:
        self._admin = make_admin(self._kafka)
        await start_client(self._admin, self._kafka)

    async def _load_topic_marks(self) -> None:
        """The newest marks of this group in the state topic, including those other members wrote
        since this one started (a partition taken over from a killed member has its marks there)."""
        prefix = f"mark|{self._group}|"
        async for record in iter_topic(self._kafka, self._state_topic):
            key = (record.key or b"").decode("utf-8", "replace")
            if not key.startswith(prefix):
                continue
            topic, _, partition = key[len(prefix) :].rpartition("|")
            if not partition.isdigit():
                continue
            tp = TopicPartition(topic, int(partition))
            mark = _decode(record.value.decode("utf-8", "replace")) if record.value is not None else None
            if mark is None:
                self._topic_marks.pop(tp, None)
            else:
                self._topic_marks[tp] = mark

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    async def _read_metadata(self, partitions: list[TopicPartition]) -> dict[TopicPartition, str] | None:
        """Committed metadata per partition, or ``None`` when the broker's answer cannot be read.

        Always for named partitions: the dev broker's answer for a whole group cannot be decoded.
        """
        assert self._admin is not None
        try:
            with quiet_aiokafka():
                committed = await self._admin.list_consumer_group_offsets(self._group, partitions=partitions)
        except (KafkaError, OSError, ValueError) as exc:
            log.debug("cannot read commit metadata of %s: %s", self._group, exc)
            return None
        return {tp: meta.metadata or "" for tp, meta in committed.items()}

    async def marks(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, CommitMark]:
        """The newest known mark of each partition (commit metadata wins over the state topic)."""
        wanted = list(partitions)
        if self.metadata_kept is not True:
            await self._load_topic_marks()
        found = {tp: self._topic_marks[tp] for tp in wanted if tp in self._topic_marks}
        if self.metadata_kept is not False and wanted:
            for tp, text in (await self._read_metadata(wanted) or {}).items():
                mark = _decode(text)
                if mark is not None and (tp not in found or mark.offset >= found[tp].offset):
                    found[tp] = mark
        return found

    async def commit(self, consumer: AIOKafkaConsumer, points: Mapping[TopicPartition, CommitMark]) -> None:
        """Commit each partition's offset with its mark (raises aiokafka's errors for the caller to handle)."""
        if not points:
            return
        await consumer.commit(
            {tp: OffsetAndMetadata(mark.offset, dumps(mark.model_dump()).decode()) for tp, mark in points.items()}
        )
        if self.metadata_kept is None:
            await self._probe(points)
        if self.metadata_kept is False:
            for tp, mark in points.items():
                await self._put(tp, mark)

    async def _probe(self, points: Mapping[TopicPartition, CommitMark]) -> None:
        """Read the first commit back: does the broker keep commit metadata?"""
        read = await self._read_metadata(list(points)) or {}
        self.metadata_kept = any(_decode(read.get(tp)) == mark for tp, mark in points.items())
        if self.metadata_kept:
            log.info("broker keeps commit metadata: commit marks of %s travel with its offset commits", self._group)
        else:
            log.info(
                "broker drops commit metadata (e.g. the dev broker): commit marks of %s are kept in %s",
                self._group,
                self._state_topic,
            )

    async def _put(self, tp: TopicPartition, mark: CommitMark) -> None:
        if self._topic_marks.get(tp) == mark:
            return
        key = f"mark|{self._group}|{tp.topic}|{tp.partition}".encode()
        await (await self._producer.send(self._state_topic, key=key, value=dumps(mark.model_dump())))
        self._topic_marks[tp] = mark
