"""Fakes of the Kafka clients (named as such) for unit tests of the stage core without a broker.

They reproduce the broker-side behaviour the loop depends on — fetching only from
assigned, unpaused partitions; an eager rebalance that revokes everything, forgets
pauses and restarts each kept partition at its committed offset; acknowledged sends —
so delivery rules can be tested in milliseconds. The same rules are tested end to end
against the real broker in tests/builder, tests/uploader and tests/extractor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError


def record(
    tp: TopicPartition, offset: int, key: str | None, value: bytes | None = b"{}"
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=tp.topic,
        partition=tp.partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key.encode() if key is not None else None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=(),
    )


class FakeConsumer:
    """A fake consumer: partitions hold records; ``getmany`` returns those of assigned, unpaused ones."""

    def __init__(self, records: Iterable[ConsumerRecord[bytes, bytes]]) -> None:
        self.log: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        for item in records:
            self.log.setdefault(TopicPartition(item.topic, item.partition), []).append(item)
        self._assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._position: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}
        self.commits: list[dict[TopicPartition, int]] = []
        self.listener: ConsumerRebalanceListener | None = None
        self.fetched: list[tuple[TopicPartition, int]] = []

    async def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """An eager rebalance: revoke everything, then assign ``partitions`` (positions from the commits)."""
        assert self.listener is not None
        if self._assigned:
            await self.listener.on_partitions_revoked(set(self._assigned))
        self._assigned = set(partitions)
        self._paused = set()
        self._position = {tp: self.committed.get(tp, 0) for tp in self._assigned}
        await self.listener.on_partitions_assigned(set(self._assigned))

    def add(self, item: ConsumerRecord[bytes, bytes]) -> None:
        self.log.setdefault(TopicPartition(item.topic, item.partition), []).append(item)

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        out: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        budget = max_records or 1_000_000
        for tp in sorted(self._assigned - self._paused):
            position = self._position[tp]
            batch = [r for r in self.log.get(tp, []) if r.offset >= position][:budget]
            if batch:
                out[tp] = batch
                budget -= len(batch)
                self._position[tp] = batch[-1].offset + 1
                self.fetched += [(tp, r.offset) for r in batch]
        if not out:
            await asyncio.sleep(min(timeout_ms, 5) / 1000)
        return out

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused |= set(partitions) & self._assigned

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused -= set(partitions)

    async def commit(self, offsets: Any = None) -> None:
        points = {tp: (o if isinstance(o, int) else o.offset) for tp, o in dict(offsets or {}).items()}
        self.committed.update(points)
        self.commits.append(points)

    def highwater(self, partition: TopicPartition) -> int | None:
        items = self.log.get(partition)
        return items[-1].offset + 1 if items else None

    async def position(self, partition: TopicPartition) -> int:
        return self._position.get(partition, 0)


@dataclass
class _Sent:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    partition: int


@dataclass
class _Metadata:
    topic: str
    partition: int
    offset: int


@dataclass
class FakeProducer:
    """A fake producer: every send is acknowledged at once (or fails, once ``broken`` is set)."""

    sent: list[_Sent] = field(default_factory=list)
    broken: bool = False

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        **_: Any,
    ) -> asyncio.Future[_Metadata]:
        future: asyncio.Future[_Metadata] = asyncio.get_running_loop().create_future()
        if self.broken:
            future.set_exception(KafkaConnectionError("fake broker gone"))
            return future
        offset = sum(1 for s in self.sent if s.topic == topic)
        self.sent.append(_Sent(topic, key, value, list(headers or []), partition or 0))
        future.set_result(_Metadata(topic, partition or 0, offset))
        return future

    def on(self, topic: str) -> list[_Sent]:
        return [s for s in self.sent if s.topic == topic]
