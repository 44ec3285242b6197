"""The uploader's durable state in the compacted state topic, shared by every member of its group.

Keys are scoped by target (``<rdi>@<target url without credentials>``), so several
targets, RDIs and groups share the topic:

- ``hash|<target>|<identifier>`` -> the last delivered content hash and ARC id (a
  tombstone after a delete): what ``unchanged`` is decided from, since the target
  answers ``updated`` for identical content too;
- ``run|<target>|<run id>`` -> a snapshot run as a harvest (id, status, why it
  closed), written only by the run's leader (:mod:`services.uploader.runs`);
- ``runpart|<target>|<run id>|<partition>`` -> the run on one partition (run-start
  and run-end handled, counts, last activity), written by that partition's owner.

Members follow the topic (a consumer without group reads it from the beginning, then
keeps reading), so what one member writes the others see within a poll: a member that
takes over a partition, or the run's leader waiting for every partition's run-end,
works from the same state. Writes wait for the broker's acknowledgement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import BaseModel, ConfigDict, Field

from services.common.config import KafkaSettings
from services.common.kafka.clients import make_consumer, start_client
from services.common.kafka.reading import topic_partitions, true_end
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

    model_config = ConfigDict(extra="ignore", frozen=True)

    run_id: str
    harvest_id: str | None = None
    status: RunStatus = "RUNNING"
    expected: int
    partitions: int
    started_at: str
    finished_at: str | None = None
    error: str | None = None


class RunPartition(BaseModel):
    """A run on one partition of ``arc.arcs``, as its owner saw it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    run_id: str
    partition: int
    partitions: int
    expected: int
    #: The run's start (from the run-start marker; orders runs on a partition).
    started_at: str
    ended: bool = False
    published: int = 0
    extract_failed: int = 0
    #: Wall-clock seconds of the last ARC or marker of the run handled on this partition.
    last_activity: float = Field(default_factory=time.time)


def target_key(rdi: str, target_url: str) -> str:
    return f"{rdi}@{mask_url(target_url)}"


class UploaderState:
    """In-memory view of the state topic, kept current by following it; writes wait for the ack."""

    def __init__(self, kafka: KafkaSettings, topic: str, target: str) -> None:
        self.kafka = kafka
        self.topic = topic
        self.target = target
        self.hashes: dict[str, DeliveredHash] = {}
        self.runs: dict[str, RunRecord] = {}
        self.parts: dict[str, dict[int, RunPartition]] = {}
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._follow: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        #: key -> offset of the value applied (a key always lands on the same partition).
        self._offsets: dict[str, int] = {}
        self._listeners: list[Callable[[], None]] = []

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self, producer: AIOKafkaProducer) -> None:
        """Read the topic to its end, then keep following it in the background."""
        self._producer = producer
        consumer = make_consumer(self.kafka, [], group_id=None)
        await start_client(consumer, self.kafka)
        self._consumer = consumer
        tps = await topic_partitions(consumer, self.topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > await consumer.position(tp)}
        while remaining:
            await self._poll(1000)
            for tp in list(remaining):
                ends[tp] = true_end(consumer, tp, ends[tp])
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        log.info(
            "state of %s: %d delivered hashes, %d runs (%s)", self.target, len(self.hashes), len(self.runs), self.topic
        )
        self._follow = asyncio.create_task(self._follow_topic())

    async def close(self) -> None:
        if self._follow is not None:
            self._follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follow
        if self._consumer is not None:
            await self._consumer.stop()

    async def _follow_topic(self) -> None:
        while True:
            try:
                await self._poll(500)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker hiccuped: keep following, say so once per failure
                log.warning("following %s failed (%s); retrying", self.topic, exc)
                await asyncio.sleep(1)

    async def _poll(self, timeout_ms: int) -> None:
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=timeout_ms)
        for records in batches.values():
            for record in records:
                if record.key is not None:
                    self._apply(record.key.decode("utf-8", "replace"), record.value, record.offset)

    # -- reading -----------------------------------------------------------------------------------

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every change (from this member or another)."""
        self._listeners.append(listener)

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds (re-checked on every change, from this member or another)."""
        while not condition():
            self._changed.clear()
            await self._changed.wait()

    def _apply(self, key: str, value: bytes | None, offset: int) -> None:
        """Apply one record; an older one than what is applied already (our own write, read back late) is skipped."""
        if self._offsets.get(key, -1) >= offset:
            return
        self._offsets[key] = offset
        kind, _, rest = key.partition("|")
        target, _, name = rest.partition("|")
        if target != self.target:
            return
        data: Any = loads(value) if value is not None else None
        if kind == "hash":
            if data is None:
                self.hashes.pop(name, None)
            else:
                self.hashes[name] = DeliveredHash.model_validate(data)
        elif kind == "run" and data is not None:
            self.runs[name] = RunRecord.model_validate(data)
        elif kind == "runpart" and data is not None:
            part = RunPartition.model_validate(data)
            self.parts.setdefault(part.run_id, {})[part.partition] = part
        else:
            return
        self._changed.set()
        for listener in self._listeners:
            listener()

    # -- writing -----------------------------------------------------------------------------------

    async def _put(self, key: str, value: dict[str, Any] | None) -> None:
        assert self._producer is not None, "start() first"
        payload = None if value is None else dumps(value)
        sent = await (await self._producer.send(self.topic, key=key.encode(), value=payload))
        self._apply(key, payload, sent.offset)

    async def put_hash(self, identifier: str, delivered: DeliveredHash) -> None:
        await self._put(f"hash|{self.target}|{identifier}", delivered.model_dump())

    async def forget_hash(self, identifier: str) -> None:
        if identifier in self.hashes:
            await self._put(f"hash|{self.target}|{identifier}", None)

    async def put_run(self, run: RunRecord) -> None:
        await self._put(f"run|{self.target}|{run.run_id}", run.model_dump())

    async def put_part(self, part: RunPartition) -> None:
        await self._put(f"runpart|{self.target}|{part.run_id}|{part.partition}", part.model_dump())
