"""The uploader's durable state, kept in the compacted ``delivered`` topic so it survives restarts.

Three kinds of keys, all scoped so several targets, RDIs and groups can share the topic:

- ``hash|<target>|<identifier>`` -> last successfully delivered content hash and ARC id
  (a tombstone after a delete), for skip-unchanged;
- ``run|<target>|<run id>`` -> the harvest of a snapshot run and which partitions'
  run-end markers were handled, so a restarted uploader continues the same harvest;
- ``mark|<group>|<topic>|<partition>`` -> where on the report topic the outcomes of
  not-yet-committed messages can start, so a restart finds outcomes it already wrote
  instead of writing a second one (see :mod:`services.uploader.recovery`).

``<target>`` is ``<rdi>@<target url without credentials>``. Compaction keeps the
latest value per key, so loading reads little more than the live state.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel, ConfigDict, Field

from services.common.config import KafkaSettings
from services.common.kafka.reading import iter_topic
from services.common.logs import mask_url
from services.common.records import dumps, loads

log = logging.getLogger(__name__)

RunStatus = Literal["RUNNING", "COMPLETED", "FAILED", "CANCELLED"]


class DeliveredHash(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    content_hash: str
    arc_id: str | None = None
    at: str


class RunRecord(BaseModel):
    """One snapshot run as a harvest at one target."""

    model_config = ConfigDict(extra="ignore")

    run_id: str
    harvest_id: str | None = None
    status: RunStatus = "RUNNING"
    expected: int
    partitions: int
    #: Partitions whose run-start marker was handled.
    started: list[int] = Field(default_factory=list)
    #: Partitions whose run-end marker was handled (everything before it had an outcome).
    ended: list[int] = Field(default_factory=list)
    published: dict[str, int] = Field(default_factory=dict)
    extract_failed: int = 0
    started_at: str
    finished_at: str | None = None
    error: str | None = None


class CommitMark(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    #: The committed offset this mark belongs to (``-1``: none yet).
    offset: int
    #: Report partition -> first offset that may hold outcomes of messages at or after ``offset``.
    report_from: dict[str, int]


def target_key(rdi: str, target_url: str) -> str:
    return f"{rdi}@{mask_url(target_url)}"


class DeliveredState:
    """In-memory view of the ``delivered`` topic plus writes that wait for the broker's ack."""

    def __init__(self, topic: str, target: str, group: str) -> None:
        self.topic = topic
        self.target = target
        self.group = group
        self.hashes: dict[str, DeliveredHash] = {}
        self.runs: dict[str, RunRecord] = {}
        self.marks: dict[tuple[str, int], CommitMark] = {}
        self._producer: AIOKafkaProducer | None = None

    async def load(self, kafka: KafkaSettings) -> None:
        """Read the whole (compacted) topic; later records win."""
        async for record in iter_topic(kafka, self.topic):
            if record.key is None:
                continue
            self._apply(record.key.decode("utf-8", "replace"), record.value)
        log.info(
            "delivered state: %d hashes, %d runs, %d commit marks for %s",
            len(self.hashes),
            len(self.runs),
            len(self.marks),
            self.target,
        )

    def _apply(self, key: str, value: bytes | None) -> None:
        kind, _, rest = key.partition("|")
        if kind == "mark":
            group, _, topic_partition = rest.partition("|")
            topic, _, partition = topic_partition.rpartition("|")
            if group == self.group and partition.isdigit():
                if value is None:
                    self.marks.pop((topic, int(partition)), None)
                else:
                    self.marks[(topic, int(partition))] = CommitMark.model_validate(loads(value))
            return
        target, _, name = rest.partition("|")
        if target != self.target:
            return
        if kind == "hash":
            if value is None:
                self.hashes.pop(name, None)
            else:
                self.hashes[name] = DeliveredHash.model_validate(loads(value))
        elif kind == "run" and value is not None:
            self.runs[name] = RunRecord.model_validate(loads(value))

    def attach(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def _put(self, key: str, value: dict[str, Any] | None) -> None:
        assert self._producer is not None, "attach() a producer first"
        payload = None if value is None else dumps(value)
        future = await self._producer.send(self.topic, key=key.encode(), value=payload)
        await future
        self._apply(key, payload)

    async def put_hash(self, identifier: str, delivered: DeliveredHash) -> None:
        await self._put(f"hash|{self.target}|{identifier}", delivered.model_dump())

    async def forget_hash(self, identifier: str) -> None:
        if identifier in self.hashes:
            await self._put(f"hash|{self.target}|{identifier}", None)

    async def put_run(self, run: RunRecord) -> None:
        await self._put(f"run|{self.target}|{run.run_id}", run.model_dump())

    async def put_mark(self, topic: str, partition: int, mark: CommitMark) -> None:
        await self._put(f"mark|{self.group}|{topic}|{partition}", mark.model_dump())
