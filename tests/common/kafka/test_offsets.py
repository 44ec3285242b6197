"""OffsetTracker: the commit point is the first unfinished offset, per partition, never moving back."""

from __future__ import annotations

from aiokafka import TopicPartition

from services.common.kafka.offsets import OffsetTracker

P0 = TopicPartition("t", 0)
P1 = TopicPartition("t", 1)


def test_commit_point_waits_for_the_first_unfinished_offset() -> None:
    tracker = OffsetTracker()
    for offset in range(10, 15):
        tracker.start(P0, offset)
    assert tracker.commit_point(P0) == 10
    for offset in (11, 13, 14):
        tracker.done(P0, offset)
    assert tracker.commit_point(P0) == 10
    tracker.done(P0, 10)
    assert tracker.commit_point(P0) == 12
    tracker.done(P0, 12)
    assert tracker.commit_point(P0) == 15  # one past the highest taken when nothing is pending
    assert tracker.pending() == 0


def test_partitions_are_independent_and_committed_points_are_not_offered_again() -> None:
    tracker = OffsetTracker()
    tracker.start(P0, 0)
    tracker.start(P1, 7)
    tracker.done(P1, 7)
    assert tracker.commit_points() == {P0: 0, P1: 8}
    tracker.committed({P0: 0, P1: 8})
    assert tracker.commit_points() == {}
    tracker.done(P0, 0)
    assert tracker.commit_points() == {P0: 1}
    assert (tracker.pending(P0), tracker.pending(P1), tracker.pending()) == (0, 0, 0)


def test_a_commit_point_never_moves_back_below_what_was_committed() -> None:
    tracker = OffsetTracker()
    tracker.start(P0, 5)
    tracker.done(P0, 5)
    tracker.committed({P0: 6})
    tracker.start(P0, 3)  # a re-read after a rebalance, below the commit
    assert tracker.commit_point(P0) is None


def test_forgotten_partitions_drop_their_pending_work() -> None:
    tracker = OffsetTracker()
    tracker.start(P0, 1)
    tracker.start(P1, 1)
    tracker.forget({P0})
    assert tracker.pending() == 1 and tracker.commit_point(P0) is None
    tracker.done(P0, 1)  # a late finish of abandoned work changes nothing
    assert tracker.commit_points() == {P1: 1}
