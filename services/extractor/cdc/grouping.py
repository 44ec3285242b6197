"""Collect touched investigations per source transaction, then coalesce briefly before a flush.

Each investigation touched by a transaction should be re-read once, after the
whole transaction arrived: events of one transaction spread over several
topics (one per table, plus BEGIN/END on the transaction topic), so a
transaction is complete when its END arrived *and* as many events as END
counts. Without transaction metadata (or for snapshot reads) a change goes
straight to the pending set.

Complete transactions join a pending set. Flushes are spaced at least
``debounce`` apart: a change after a quiet spell is flushed at once, while a
burst of small transactions on one investigation collapses into one re-read
per window instead of one per transaction; latency stays bounded by the
debounce. A transaction still incomplete after ``transaction_timeout``
(END lost to a committed offset before a restart, events we could not parse)
is flushed anyway: the re-read sees committed data either way, grouping only
saves work.

A transaction that completes after one of its investigations was already
re-read (a flush that happened after the transaction's change to it arrived,
hence after its commit) does not re-read that investigation again: the earlier
read saw the change. This keeps a burst from ending in duplicate payloads.

Every record's position travels with the group it joined, so its offset is
marked done only when the group's payloads are acknowledged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka import TopicPartition

Position = tuple[TopicPartition, int]


@dataclass
class Group:
    """Investigations to re-read (identifier -> earliest source commit ms) and the records behind them."""

    roots: dict[str, int | None] = field(default_factory=dict)
    positions: list[Position] = field(default_factory=list)

    def add(self, roots: set[str], commit_ts_ms: int | None) -> None:
        for root in roots:
            known = self.roots.get(root)
            if root not in self.roots or (commit_ts_ms is not None and (known is None or commit_ts_ms < known)):
                self.roots[root] = commit_ts_ms

    def merge(self, other: Group) -> None:
        for root, ts in other.roots.items():
            self.add({root}, ts)
        self.positions.extend(other.positions)

    def __bool__(self) -> bool:
        return bool(self.roots or self.positions)


@dataclass
class _Transaction:
    opened: float
    group: Group = field(default_factory=Group)
    seen: int = 0
    expected: int | None = None
    #: Root -> when its latest change in this transaction arrived.
    touched: dict[str, float] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.expected is not None and self.seen >= self.expected


class ChangeGrouper:
    """Transaction assembly plus a debounce window; all times are ``time.monotonic()`` seconds."""

    def __init__(self, debounce_s: float, transaction_timeout_s: float) -> None:
        self._debounce = debounce_s
        self._timeout = transaction_timeout_s
        self._open: dict[str, _Transaction] = {}
        self._pending = Group()
        self._pending_since: float | None = None
        self._last_flush = float("-inf")
        #: Root -> when a flush last took it (re-reads start after this time).
        self._flushed: dict[str, float] = {}

    def change(
        self, position: Position, tx_id: str | None, roots: set[str], commit_ts_ms: int | None, now: float
    ) -> None:
        """A change event (``roots`` may be empty for a record that was reported and skipped)."""
        if tx_id is None:
            self._to_pending(now).positions.append(position)
            self._pending.add(roots, commit_ts_ms)
            return
        tx = self._open.setdefault(tx_id, _Transaction(now))
        tx.seen += 1
        tx.group.positions.append(position)
        tx.group.add(roots, commit_ts_ms)
        tx.touched.update(dict.fromkeys(roots, now))
        self._close_if_complete(tx_id, now)

    def end(self, position: Position, tx_id: str, event_count: int, now: float) -> None:
        """A transaction END: ``event_count`` events belong to ``tx_id``."""
        tx = self._open.setdefault(tx_id, _Transaction(now))
        tx.expected = event_count
        tx.group.positions.append(position)
        self._close_if_complete(tx_id, now)

    def other(self, position: Position, now: float) -> None:
        """A record with nothing to re-read (BEGIN, tombstone, heartbeat): done with the next flush."""
        self._to_pending(now).positions.append(position)

    def due(self, now: float) -> Group | None:
        """The group to flush now: something is pending and the last flush is ``debounce`` ago."""
        for tx_id in [t for t, tx in self._open.items() if now - tx.opened >= self._timeout]:
            self._close(tx_id, now)
        if self._pending_since is None or now < self._last_flush + self._debounce:
            return None
        self._last_flush = now
        group = self._take()
        self._flushed.update(dict.fromkeys(group.roots, now))
        horizon = now - 2 * self._timeout - self._debounce  # older transactions were flushed by timeout
        self._flushed = {root: at for root, at in self._flushed.items() if at >= horizon}
        return group

    def drain(self) -> Group:
        """Everything held, complete or not (for shutdown)."""
        for tx in self._open.values():
            self._pending.merge(tx.group)
        self._open.clear()
        return self._take()

    def clear(self) -> None:
        """Forget everything (partitions revoked: their uncommitted records will be read again)."""
        self._open.clear()
        self._flushed.clear()
        self._take()

    def seconds_to_next(self, now: float) -> float | None:
        """Time until :meth:`due` may return something, or ``None`` when nothing is held."""
        deadlines = [tx.opened + self._timeout for tx in self._open.values()]
        if self._pending_since is not None:
            deadlines.append(max(self._pending_since, self._last_flush + self._debounce))
        return max(0.0, min(deadlines) - now) if deadlines else None

    def _close_if_complete(self, tx_id: str, now: float) -> None:
        if self._open[tx_id].complete:
            self._close(tx_id, now)

    def _close(self, tx_id: str, now: float) -> None:
        """Move a transaction to pending, minus roots re-read since its change to them arrived."""
        tx = self._open.pop(tx_id)
        for root, touched in tx.touched.items():
            if self._flushed.get(root, float("-inf")) > touched:
                del tx.group.roots[root]
        self._to_pending(now).merge(tx.group)

    def _to_pending(self, now: float) -> Group:
        if self._pending_since is None:
            self._pending_since = now
        return self._pending

    def _take(self) -> Group:
        group, self._pending, self._pending_since = self._pending, Group(), None
        return group
