"""Per-partition contiguous offset tracking for at-least-once delivery.

Messages of one partition may finish out of order (parallel builds, parallel
uploads). An offset may be committed only when *every* message before it is
fully handled, so the tracker keeps, per partition, the offsets still pending
and reports the highest commit point: the lowest pending offset, or one past
the highest offset seen when nothing is pending.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka import TopicPartition


@dataclass
class _PartitionState:
    pending: set[int] = field(default_factory=set)
    #: One past the highest offset registered so far.
    next_offset: int | None = None
    committed: int | None = None


class OffsetTracker:
    """Which offsets are in flight, per partition, and what may be committed."""

    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, _PartitionState] = {}

    def start(self, tp: TopicPartition, offset: int) -> None:
        """Register a fetched message as in flight."""
        state = self._partitions.setdefault(tp, _PartitionState())
        state.pending.add(offset)
        if state.next_offset is None or offset + 1 > state.next_offset:
            state.next_offset = offset + 1

    def done(self, tp: TopicPartition, offset: int) -> None:
        """Mark a message fully handled (output acked or outcome recorded)."""
        state = self._partitions.get(tp)
        if state is not None:
            state.pending.discard(offset)

    def pending(self, tp: TopicPartition | None = None) -> int:
        """Messages still in flight on one partition, or on all."""
        if tp is not None:
            state = self._partitions.get(tp)
            return len(state.pending) if state else 0
        return sum(len(state.pending) for state in self._partitions.values())

    def commit_point(self, tp: TopicPartition) -> int | None:
        """The offset to commit for ``tp`` (next message to read), or ``None`` if nothing new."""
        state = self._partitions.get(tp)
        if state is None or state.next_offset is None:
            return None
        point = min(state.pending) if state.pending else state.next_offset
        if state.committed is not None and point <= state.committed:
            return None
        return point

    def commit_points(self) -> dict[TopicPartition, int]:
        """Commit points of every partition that advanced since the last :meth:`committed`."""
        points = {tp: self.commit_point(tp) for tp in self._partitions}
        return {tp: point for tp, point in points.items() if point is not None}

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        """Record that ``offsets`` were committed."""
        for tp, offset in offsets.items():
            self._partitions.setdefault(tp, _PartitionState()).committed = offset

    def forget(self, partitions: set[TopicPartition] | frozenset[TopicPartition]) -> None:
        """Drop revoked partitions (their in-flight work is abandoned; another member re-reads it)."""
        for tp in partitions:
            self._partitions.pop(tp, None)
