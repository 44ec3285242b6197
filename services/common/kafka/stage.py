"""The consumer-group loop every consuming stage runs; each stage adds only its own step.

The builder (build), the uploader (upload) and the CDC extractor (assemble) all
read a topic in a consumer group and must keep the same delivery rules. They are
implemented once, here:

- **Poll** with ``getmany`` and hand every record, in partition order, to the
  stage's :class:`Step` as a :class:`Message`.
- **In-flight bound**: at ``max_in_flight`` messages taken in and not fully handled,
  every assigned partition is paused while polling continues (the member stays in
  the group); they resume below the bound; pauses are re-applied after a rebalance
  (aiokafka resets them).
- **Contiguous commits**: an offset is committed only when every message before it
  in its partition is fully handled (:class:`OffsetTracker`), at most every
  ``commit_interval_ms`` and always on revocation and shutdown. Each commit carries
  its mark (:mod:`services.common.kafka.marks`).
- **Exactly one outcome per message**, also across crashes and rebalances: before
  the first record of a newly assigned partition is taken in, outcomes this group
  already wrote for it are looked up (:mod:`services.common.kafka.recovery`) and
  handed to the step on the message (``Message.recovered``).
- **Rebalance**: aiokafka rebalances eagerly (every partition is revoked, most come
  back). On revocation the loop lets output that is being written finish, commits
  what is done, and holds further output; work keeps running meanwhile. When the
  assignment is known, work of partitions that moved away is cancelled
  (:class:`Abandoned`: their new owner redoes it), kept partitions go on, and
  records re-fetched from the committed offset that are already in flight are
  skipped.
- **Failures**: a step turns each message's failure into an outcome itself; an
  unexpected exception escaping a message's job becomes that message's
  ``internal-error`` outcome and dead letter; an error writing to the broker stops
  the loop and is re-raised from :meth:`StageLoop.run` (nothing is committed past it).
- **SIGTERM**: :func:`run_until_signalled` sets the stop event; the loop stops
  taking work, gives in-flight messages ``shutdown_grace_ms``, commits, leaves the
  group (so partitions move on at once), and returns.

Newest-version-per-key is the step's choice of policy (:class:`KeyedStep` over
:class:`services.common.kafka.latest.LatestPerKey`), because what "superseded"
means differs per stage. Clients are injected (a consumer, an
:class:`OutcomeWriter`, an optional :class:`Recovery`), so the loop and each
step have unit tests without a broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from services.common import metrics
from services.common.config import StageSettings
from services.common.errors import BrokerUnavailableError, FatalError
from services.common.kafka.latest import LatestPerKey
from services.common.kafka.offsets import OffsetTracker
from services.common.metrics_server import Readiness
from services.common.outcomes import Origin, OutcomeWriter
from services.common.records import H_KIND, H_RUN_ID, header_dict
from services.common.report import OutcomeRecord

log = logging.getLogger(__name__)

#: Longest wait in one poll, so stop requests, due flushes and commits are noticed promptly.
POLL_TIMEOUT_S = 0.2
#: Pause/resume lines at INFO level at most this often (the gauge shows every change).
FLOW_LOG_INTERVAL_S = 10.0


class Abandoned(Exception):
    """The message's partition moved to another member during a rebalance; that member redoes it."""


@dataclass
class Message:
    """One consumed record as a stage sees it."""

    tp: TopicPartition
    offset: int
    key: bytes | None
    value: bytes | None
    raw_headers: list[tuple[str, bytes]]
    headers: dict[str, str]
    #: The outcome this group already wrote for this message before a restart or rebalance.
    recovered: OutcomeRecord | None = None
    taken_at: float = field(default_factory=time.monotonic)

    @classmethod
    def from_record(cls, record: ConsumerRecord[bytes, bytes]) -> Message:
        raw = list(record.headers or ())
        return cls(
            tp=TopicPartition(record.topic, record.partition),
            offset=record.offset,
            key=record.key,
            value=record.value,
            raw_headers=raw,
            headers=header_dict(raw),
        )

    @property
    def origin(self) -> Origin:
        return Origin(self.tp.topic, self.tp.partition, self.offset)

    @property
    def identifier(self) -> str:
        """The key as text (the investigation identifier); empty when the message has none."""
        return self.key.decode("utf-8", "replace") if self.key is not None else ""

    @property
    def kind(self) -> str | None:
        return self.headers.get(H_KIND)

    @property
    def log_extra(self) -> dict[str, object]:
        return {"identifier": self.identifier, "partition": self.tp.partition, "offset": self.offset}


class Step:
    """A stage's own work on its messages. The loop calls these; override what applies.

    :meth:`take` must lead, for every message, to exactly one of: ``loop.done(message)``
    (directly, or by leaving ``loop.finishing(message)``), or a job started with
    ``loop.spawn(job, message)`` that finishes it.
    """

    async def take(self, message: Message) -> None:
        raise NotImplementedError

    def poll_timeout_s(self) -> float | None:
        """Seconds until the step has something due (:meth:`tick`); ``None``: nothing."""
        return None

    async def tick(self) -> None:
        """Called every loop turn (e.g. to flush what became due)."""

    async def partitions_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        """Before the loop commits revoked partitions (e.g. flush what they hold)."""

    def partitions_lost(self, partitions: frozenset[TopicPartition]) -> None:
        """Partitions moved to another member: forget their state (their jobs are being cancelled)."""

    async def stopping(self) -> None:
        """Graceful stop, before in-flight work is drained (e.g. flush, start nothing new)."""


class KeyedStep(Step):
    """A step whose messages of one key run by a :class:`LatestPerKey` policy (newest version wins).

    Subclasses create ``self.latest`` and submit their messages to it; its waiting versions
    of partitions that moved away are dropped, and on stop it starts nothing more.
    """

    latest: LatestPerKey[Message]

    def partitions_lost(self, partitions: frozenset[TopicPartition]) -> None:
        self.latest.forget(lambda message: message.tp not in partitions)

    async def stopping(self) -> None:
        self.latest.close()


class Recovery(Protocol):
    """Outcomes already written, and commits that carry marks (see :mod:`services.common.kafka.marks`)."""

    async def prepare(
        self, partitions: frozenset[TopicPartition]
    ) -> tuple[dict[tuple[str, int, int], OutcomeRecord], dict[int, int]]:
        """Outcomes this group wrote for messages of ``partitions`` at or after their committed offsets,
        and the report topic's end offsets now (a lower bound for outcomes written from now on)."""
        ...

    async def commit(self, points: dict[TopicPartition, tuple[int, dict[int, int]]]) -> None:
        """Commit ``{tp: (offset, report_from)}``."""
        ...


class ConsumerLike(Protocol):
    """What the loop uses of :class:`aiokafka.AIOKafkaConsumer` (a unit test injects its own)."""

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]: ...

    def assignment(self) -> set[TopicPartition]: ...

    def paused(self) -> set[TopicPartition]: ...

    def pause(self, *partitions: TopicPartition) -> None: ...

    def resume(self, *partitions: TopicPartition) -> None: ...

    async def commit(self, offsets: Any = None) -> None: ...

    def highwater(self, partition: TopicPartition) -> int | None: ...

    async def position(self, partition: TopicPartition) -> int: ...


@dataclass
class _PartitionWork:
    """Per assigned partition: what is in flight and where to resume after a rebalance."""

    #: offset -> the job running for it (``None`` when the step finishes it without a job).
    pending: dict[int, asyncio.Task[None] | None] = field(default_factory=dict)
    #: One past the highest offset taken in.
    fetched: int = 0
    #: After a rebalance that kept the partition, records below this were taken already.
    resume_from: int | None = None
    #: (offset taken, report positions then): the mark of a commit at that offset.
    snapshots: deque[tuple[int, dict[int, int]]] = field(default_factory=deque)
    #: Output being written (``finishing``), waited for before a revocation commits.
    finishing: int = 0


class StageLoop:
    """One member of a stage's consumer group; :meth:`run` until the stop event is set."""

    def __init__(
        self,
        stage: metrics.StageName,
        settings: StageSettings,
        consumer: ConsumerLike,
        outcomes: OutcomeWriter,
        *,
        max_in_flight: int,
        recovery: Recovery | None = None,
        readiness: Readiness | None = None,
    ) -> None:
        self.stage = stage
        self.settings = settings
        self.consumer = consumer
        self.outcomes = outcomes
        self.max_in_flight = max_in_flight
        self.readiness = readiness or Readiness("broker", "assigned")
        self._recovery = recovery
        self._step: Step | None = None
        self._tracker = OffsetTracker()
        self._work: dict[TopicPartition, _PartitionWork] = {}
        self._to_recover: set[TopicPartition] = set()
        self._recovered: dict[tuple[str, int, int], OutcomeRecord] = {}
        self._report_start: dict[int, int] = {}
        self._changed = asyncio.Event()
        self._room = asyncio.Event()
        self._settled = asyncio.Event()
        self._settled.set()
        self._limbo: set[TopicPartition] = set()
        self._paused = False
        self._held: str | None = None
        #: Set when the grace period is over: no output starts being written any more.
        self._closing = False
        self._stop = asyncio.Event()
        self._failure: BaseException | None = None
        self._last_commit = time.monotonic()
        self._last_flow_log = -FLOW_LOG_INTERVAL_S
        #: Assignments received so far (observable: a test or an operator sees rebalances happen).
        self.rebalances = 0

    # -- observable state --------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Messages taken in and not yet fully handled."""
        return self._tracker.pending()

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self.consumer.assignment())

    def paused(self) -> frozenset[TopicPartition]:
        return frozenset(self.consumer.paused())

    def listener(self) -> ConsumerRebalanceListener:
        """The rebalance listener to pass to ``consumer.subscribe``."""
        return _Listener(self)

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self, step: Step, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then drain, commit and return; re-raise what stopped it."""
        self._step = step
        self._stop = stop
        self.readiness.set("broker", True)
        try:
            while not stop.is_set():
                await self._turn(step)
            await step.stopping()
            await self._drain()
            await self._commit(force=True)
        finally:
            metrics.set_in_flight(self.stage, 0)
            metrics.set_paused_partitions(self.stage, 0)
        self._raise_failure()

    async def _turn(self, step: Step) -> None:
        self._apply_pause()
        room = 0 if self._held is not None else self.max_in_flight - self.in_flight
        due = step.poll_timeout_s()
        timeout = POLL_TIMEOUT_S if due is None else max(0.0, min(POLL_TIMEOUT_S, due))
        if room <= 0:
            # Paused: wake as soon as a message finishes; the empty poll keeps the member alive.
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), timeout=timeout)
            batches = await self.consumer.getmany(timeout_ms=0, max_records=1)
        else:
            batches = await self.consumer.getmany(timeout_ms=int(timeout * 1000), max_records=room)
        fresh = self._to_recover & set(batches)
        if fresh:
            await self._recover(frozenset(fresh))
        for tp, records in batches.items():
            for record in records:
                await self._take(step, tp, record)
        await step.tick()
        await self._commit()
        metrics.set_in_flight(self.stage, self.in_flight)
        await metrics.update_consumer_lag(self.stage, self.consumer)

    async def _take(self, step: Step, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        work = self._work.setdefault(tp, _PartitionWork())
        if work.resume_from is not None:
            if record.offset < work.resume_from:
                return  # re-fetched after a rebalance that kept the partition: in flight or done already
            work.resume_from = None
        if record.offset in work.pending:
            return
        work.fetched = max(work.fetched, record.offset + 1)
        work.pending[record.offset] = None
        work.snapshots.append((record.offset, self._report_positions()))
        self._tracker.start(tp, record.offset)
        metrics.message_in(self.stage)
        message = Message.from_record(record)
        message.recovered = self._recovered.pop((tp.topic, tp.partition, record.offset), None)
        await step.take(message)

    def _raise_failure(self) -> None:
        failure = self._failure
        if failure is None:
            return
        if isinstance(failure, FatalError):
            raise failure
        raise BrokerUnavailableError(f"{self.stage} stopped: cannot write to Kafka: {failure}") from failure

    # -- what steps call -------------------------------------------------------------------------

    def spawn(self, job: Awaitable[None], message: Message) -> asyncio.Task[None]:
        """Run ``job`` for ``message``; when it returns, the message is done (unless it was finished already)."""
        task = asyncio.ensure_future(self._guard(job, message))
        work = self._work.get(message.tp)
        if work is not None and message.offset in work.pending:
            work.pending[message.offset] = task
        return task

    async def _guard(self, job: Awaitable[None], message: Message) -> None:
        try:
            await job
        except asyncio.CancelledError:
            raise
        except Abandoned:
            log.debug("partition moved to another member; abandoned", extra=message.log_extra)
            return
        except (KafkaError, OSError, FatalError) as exc:
            self._fail_loop(exc, message)
            return
        except Exception as exc:  # a bug in the step must fail this message, not the stage
            log.exception("unexpected error handling this message", extra=message.log_extra)
            await self._internal_error(message, exc)
        self.done(message)

    async def _internal_error(self, message: Message, exc: Exception) -> None:
        outcome = OutcomeRecord(
            identifier=message.identifier,
            stage=self.outcomes.stage,
            status="failed",
            run_id=message.headers.get(H_RUN_ID),
            error_code="internal-error",
            error_message=f"{type(exc).__name__}: {exc}",
        )
        try:
            async with self.finishing(message):
                await self.outcomes.fail(
                    outcome, key=message.key, value=message.value, headers=message.raw_headers, origin=message.origin
                )
        except Abandoned:
            return
        except (KafkaError, OSError) as write_error:
            self._fail_loop(write_error, message)

    def _fail_loop(self, exc: BaseException, message: Message) -> None:
        log.error("cannot record the outcome of a message; stopping: %s", exc, extra=message.log_extra)
        if self._failure is None:
            self._failure = exc
        self._stop.set()

    def done(self, message: Message) -> None:
        """``message`` is fully handled (its output acknowledged or its outcome recorded)."""
        work = self._work.get(message.tp)
        if work is None or message.offset not in work.pending:
            return
        del work.pending[message.offset]
        self._tracker.done(message.tp, message.offset)
        self._room.set()
        metrics.mark_progress(self.stage)
        self._notify()

    def _notify(self) -> None:
        """Wake whoever waits for progress (:meth:`_wait_for`)."""
        self._changed.set()

    async def _wait_for(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds; it is re-checked whenever a message finishes."""
        while not condition():
            self._changed.clear()
            await self._changed.wait()

    @contextlib.asynccontextmanager
    async def finishing(self, message: Message) -> AsyncIterator[None]:
        """Write ``message``'s output (or outcome) inside this block; leaving it marks the message done.

        Waits out a rebalance first and raises :class:`Abandoned` when the partition moved
        away; a revocation waits for blocks in progress before it commits, so an outcome
        is never written after the partition's next owner looked for it.
        """
        await self._settled.wait()
        if self._closing or message.tp not in self.consumer.assignment():
            raise Abandoned(message.tp)
        work = self._work.get(message.tp)
        if work is None or message.offset not in work.pending:
            raise Abandoned(message.tp)
        work.finishing += 1
        try:
            yield
        finally:
            work.finishing -= 1
            self._notify()
        self.done(message)

    async def wait_prior(self, message: Message) -> None:
        """Wait until every message before ``message`` in its partition is fully handled."""

        def prior_done() -> bool:
            work = self._work.get(message.tp)
            return work is None or not any(offset < message.offset for offset in work.pending)

        await self._wait_for(prior_done)

    # -- flow control --------------------------------------------------------------------------

    def hold(self, reason: str | None) -> None:
        """Pause every partition while ``reason`` is set (e.g. the target is down); ``None`` resumes."""
        if reason != self._held:
            log.info("%s: %s", self.stage, f"holding all partitions: {reason}" if reason else "hold released")
        self._held = reason
        self._room.set()

    def _apply_pause(self) -> None:
        assigned = self.consumer.assignment()
        at_limit = self.in_flight >= self.max_in_flight or self._held is not None
        if at_limit:
            missing = assigned - self.consumer.paused()
            if missing:
                self.consumer.pause(*missing)
            if not self._paused and self._held is None:
                self._log_flow("in-flight limit %d reached: paused %d partition(s)", self.max_in_flight, len(assigned))
        elif self._paused or self.consumer.paused():
            self.consumer.resume(*self.consumer.paused())
            if self._paused:
                self._log_flow("below the in-flight limit (%d/%d): resumed", self.in_flight, self.max_in_flight)
        self._paused = at_limit
        metrics.set_paused_partitions(self.stage, len(self.consumer.paused()))

    def _log_flow(self, message: str, *args: object) -> None:
        """Pause/resume lines at INFO, at most one per interval: under load they alternate per message."""
        now = time.monotonic()
        level = logging.INFO if now - self._last_flow_log >= FLOW_LOG_INTERVAL_S else logging.DEBUG
        if level == logging.INFO:
            self._last_flow_log = now
        log.log(level, message, *args)

    # -- commits and recovery -------------------------------------------------------------------

    def _report_positions(self) -> dict[int, int]:
        positions = dict(self._report_start)
        for partition, offset in self.outcomes.high_water.items():
            positions[partition] = max(positions.get(partition, 0), offset)
        return positions

    def _mark_for(self, tp: TopicPartition, point: int) -> dict[int, int]:
        """Report positions before which no outcome of a message at or after ``point`` can be."""
        work = self._work.get(tp)
        snapshots = work.snapshots if work is not None else deque()
        while snapshots and snapshots[0][0] < point:
            snapshots.popleft()
        return dict(snapshots[0][1]) if snapshots else self._report_positions()

    async def _commit(self, *, force: bool = False, only: frozenset[TopicPartition] | None = None) -> None:
        now = time.monotonic()
        if not force and (now - self._last_commit) * 1000 < self.settings.commit_interval_ms:
            return
        self._last_commit = now
        points = self._tracker.commit_points()
        if only is not None:
            points = {tp: offset for tp, offset in points.items() if tp in only}
        if not points:
            return
        try:
            if self._recovery is not None:
                await self._recovery.commit({tp: (offset, self._mark_for(tp, offset)) for tp, offset in points.items()})
            else:
                await self.consumer.commit(points)
        except KafkaError as exc:  # e.g. a rebalance in progress: the next commit catches up
            log.warning("offset commit failed (%s); will retry", exc)
            return
        self._tracker.committed(points)

    async def _recover(self, partitions: frozenset[TopicPartition]) -> None:
        self._to_recover -= partitions
        if self._recovery is None:
            return
        found, report_end = await self._recovery.prepare(partitions)
        self._recovered.update(found)
        for partition, offset in report_end.items():
            self._report_start[partition] = max(self._report_start.get(partition, 0), offset)
        if found:
            log.info(
                "assigned %s: %d outcome(s) already written will not be repeated",
                sorted(f"{tp.topic}/{tp.partition}" for tp in partitions),
                len(found),
            )

    # -- rebalance ---------------------------------------------------------------------------------

    async def partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        """Let output being written finish, commit what is done, hold further output."""
        self._settled.clear()
        self._limbo |= revoked
        if self._step is not None:
            await self._step.partitions_revoked(revoked)

        def quiet() -> bool:
            return not any(self._work[tp].finishing for tp in revoked if tp in self._work)

        try:
            await asyncio.wait_for(self._wait_for(quiet), timeout=self.settings.shutdown_grace_ms / 1000)
        except TimeoutError:
            log.warning("revoked partitions still writing output after the grace period; committing what is done")
        await self._commit(force=True, only=revoked)

    async def partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        """Abandon work of partitions that moved away, keep the rest, re-apply pauses."""
        self.rebalances += 1
        lost = frozenset(self._limbo - assigned)
        kept = self._limbo & assigned
        self._limbo = set()
        tasks = [task for tp in lost for task in self._work.get(tp, _PartitionWork()).pending.values() if task]
        if lost and self._step is not None:
            self._step.partitions_lost(lost)
        for task in tasks:
            task.cancel()
        self._settled.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tracker.forget(lost)
        for tp in lost:
            self._work.pop(tp, None)
        for tp in kept:
            work = self._work.get(tp)
            if work is not None and work.fetched:
                work.resume_from = work.fetched  # the consumer restarts at the committed offset
        self._to_recover |= assigned - kept
        self.readiness.set("assigned", bool(assigned))
        if (self.in_flight >= self.max_in_flight or self._held is not None) and assigned:
            self.consumer.pause(*assigned)
            self._paused = True
            self._log_flow("re-applied the pause to %d partition(s) after a rebalance", len(assigned))
        metrics.set_paused_partitions(self.stage, len(self.consumer.paused()))
        self._notify()

    # -- stopping ----------------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Give in-flight jobs the grace period; cancel the rest (they are read again after a restart)."""
        tasks = [task for work in self._work.values() for task in work.pending.values() if task]
        if not tasks:
            return
        grace = self.settings.shutdown_grace_ms / 1000
        log.info("stopping: waiting up to %gs for %d in-flight message(s)", grace, len(tasks))
        _, unfinished = await asyncio.wait(tasks, timeout=grace)
        # Output already being written finishes (it is quick: the broker's acknowledgement), so what
        # is on the report is also committed; nothing starts writing any more.
        self._closing = True
        quiet = self._wait_for(lambda: not any(work.finishing for work in self._work.values()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(quiet, timeout=max(grace, 5.0))
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        if unfinished:
            log.info("abandoned %d in-flight message(s); they are read again after a restart", len(unfinished))


class _Listener(ConsumerRebalanceListener):
    def __init__(self, loop: StageLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._loop.partitions_revoked(frozenset(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._loop.partitions_assigned(frozenset(assigned))


async def run_until_signalled[T](main: Callable[[asyncio.Event], Coroutine[Any, Any, T]]) -> T:
    """Run ``main(stop)`` with SIGTERM and SIGINT setting ``stop`` (graceful shutdown)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return await main(stop)
