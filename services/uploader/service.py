"""``arcstream uploader``: deliver every ARC of ``arc.arcs`` to the ARC store and report one outcome each.

Flow per message (same partition order as the topic, parallel across identifiers):

- ARC with a run id: ``POST /v3/harvests/{harvest}/arcs`` of that run's harvest;
  ARC without: ``POST /v3/arcs {rdi, arc}``. The ARC bytes are spliced into the
  body unchanged (no re-serialisation of multi-MB JSON, byte-equal at the store).
- Unchanged content (hash equals the last delivered hash for this target, from the
  compacted ``delivered`` topic) is reported ``unchanged`` without a request, unless ``--force``.
- Tombstone: ``DELETE /v3/arcs/{arc_id}`` where the target has it, outcome ``deleted``.
- Run markers: the first ``run-start`` creates the harvest; when the ``run-end``
  markers of all partitions were handled — each only after every earlier message of
  its partition has its outcome — the harvest is PATCHed ``COMPLETED``. A run whose
  ``run-end`` never came on a partition before the next run started there was aborted:
  its harvest is ``CANCELLED``. A run whose harvest cannot be created is ``FAILED``.
  ARCs of a run without an open harvest are delivered one by one, never dropped.

Outcome records go to ``arc.report`` (failures also to ``arc.dlq``) and are acked
before the offset counts as done; offsets are committed contiguously per partition.
After a crash, outcomes already written for re-read messages are found on the report
topic (:mod:`services.uploader.recovery`) and not written again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import KafkaError

from services.common import metrics
from services.common.config import Settings
from services.common.content_hash import arc_id as make_arc_id
from services.common.content_hash import content_hash
from services.common.errors import ArcstreamError, BrokerUnavailableError, PayloadError
from services.common.kafka.clients import make_consumer, make_producer, start_client
from services.common.kafka.groups import stop_consumer
from services.common.kafka.offsets import OffsetTracker
from services.common.kafka.topics import ensure_topics
from services.common.metrics_server import Readiness, serve_metrics
from services.common.records import (
    H_CONTENT_HASH,
    H_ENGINE,
    H_ERROR_CLASS,
    H_ERROR_MESSAGE,
    H_ERROR_STAGE,
    H_KIND,
    H_ORIGIN_OFFSET,
    H_ORIGIN_PARTITION,
    H_ORIGIN_TOPIC,
    H_RUN_ID,
    H_SOURCE_TS,
    MARKER_KINDS,
    RunMarker,
    dumps,
    header_dict,
    loads,
    make_headers,
    replace_headers,
)
from services.common.report import OutcomeRecord, Status, utc_now_iso
from services.uploader.keyed import KeyedScheduler
from services.uploader.recovery import H_ORIGIN_GROUP, end_offsets, written_outcomes
from services.uploader.state import (
    CommitMark,
    DeliveredHash,
    DeliveredState,
    RunRecord,
    RunStatus,
    target_key,
)
from services.uploader.target import AttemptError, Reply, TargetClient

log = logging.getLogger(__name__)

STAGE: Final = "upload"
DELIVERED: frozenset[str] = frozenset({"created", "updated", "unchanged"})


@dataclass
class Message:
    """One ``arc.arcs`` record as the uploader handles it."""

    tp: TopicPartition
    offset: int
    identifier: str
    value: bytes | None
    raw_headers: list[tuple[str, bytes]]
    run_id: str | None
    content_hash: str | None
    source_ts: str | None
    engine: str | None = None
    recovered: OutcomeRecord | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def log_extra(self) -> dict[str, object]:
        return {"identifier": self.identifier, "partition": self.tp.partition, "offset": self.offset}


@dataclass
class Run:
    """A snapshot run in progress: its durable record plus what only this process needs."""

    record: RunRecord
    #: Set once the harvest exists (or creating it failed for good).
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Partitions whose run-start / run-end marker was taken in (handled or still waiting).
    starts_taken: set[int] = field(default_factory=set)
    ends_taken: set[int] = field(default_factory=set)


@dataclass
class Result:
    """What handling one message produced: its outcome, and whether the input goes to the DLQ."""

    outcome: OutcomeRecord
    dlq: bool = False
    delivered_hash: DeliveredHash | None = None
    forget_hash: bool = False


def _hash_of(value: bytes) -> str:
    """The target's content hash of serialised ARC JSON (:class:`PayloadError` if it is not JSON)."""
    return content_hash(loads(value))


def _latency_ms(source_ts: str | None) -> float | None:
    if not source_ts:
        return None
    try:
        then = datetime.fromisoformat(source_ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - then).total_seconds() * 1000)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, uploader: Uploader) -> None:
        self.uploader = uploader

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.uploader.partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.uploader.partitions_assigned(assigned)


class Uploader:
    """The uploader service; :meth:`run` until the stop event is set."""

    def __init__(
        self,
        settings: Settings,
        *,
        group_id: str | None = None,
        force: bool | None = None,
    ) -> None:
        self.settings = settings
        self.up = settings.uploader
        self.topics = settings.topics
        self.group_id = group_id or self.up.group_id
        self.force = self.up.force if force is None else force
        self.rdi = settings.rdi
        self.state = DeliveredState(self.topics.delivered, target_key(self.rdi, self.up.target_url), self.group_id)
        self.tracker = OffsetTracker()
        self.readiness = Readiness("broker", "assignment")
        self._pending: dict[TopicPartition, set[int]] = {}
        self._progress = asyncio.Condition()
        #: Set whenever a message finishes, so a paused poll loop resumes at once.
        self._room = asyncio.Event()
        self._snapshots: dict[TopicPartition, deque[tuple[int, dict[int, int]]]] = {}
        self._report_hw: dict[int, int] = {}
        self._recovered: dict[tuple[int, int], OutcomeRecord] = {}
        self._recovered_partitions: set[TopicPartition] = set()
        self._runs: dict[str, Run] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._keyed: KeyedScheduler[Message] = KeyedScheduler(self._deliver, self._supersede, self._spawn)
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._client: TargetClient | None = None
        #: Set when an outcome or state record could not be written: the service stops (exit 1).
        self._fatal: BaseException | None = None
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        kafka = self.settings.kafka
        async with serve_metrics(self.settings.metrics, self.readiness):
            await ensure_topics(self.settings)
            await self.state.load(kafka)
            for run_id, record in self.state.runs.items():
                if record.status == "RUNNING":  # open runs take part in abort detection from the start
                    self._run(run_id)
            self._report_hw = await end_offsets(kafka, self.topics.report)
            self._producer = make_producer(kafka)
            await start_client(self._producer, kafka)
            self.state.attach(self._producer)
            self._client = TargetClient(self.up)
            consumer = make_consumer(kafka, [], self.group_id)
            consumer.subscribe([self.topics.arcs], listener=_Rebalance(self))
            self._consumer = consumer
            try:
                await start_client(consumer, kafka)
                self.readiness.set("broker", True)
                log.info(
                    "uploader: %s -> %s (rdi %s, group %s%s)",
                    self.topics.arcs,
                    self.up.target_url,
                    self.rdi,
                    self.group_id,
                    ", force" if self.force else "",
                )
                await self._consume(consumer, stop)
            finally:
                await self._shutdown(consumer)

    async def _consume(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        last_commit = time.monotonic()
        while not stop.is_set():
            if self._fatal is not None:
                raise BrokerUnavailableError(f"cannot record outcomes: {self._fatal}") from self._fatal
            self._backpressure(consumer)
            room = self.up.max_in_flight - self.tracker.pending()
            if room <= 0:
                # Paused: wake as soon as a message finishes instead of idling in a fetch.
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), timeout=0.2)
                batches = {}
            else:
                batches = await consumer.getmany(timeout_ms=200, max_records=room)
            unrecovered = set(batches) - self._recovered_partitions
            if unrecovered:
                await self._recover(unrecovered)
            for tp, records in batches.items():
                for record in records:
                    self._take(tp, record)
            if time.monotonic() - last_commit >= self.up.commit_interval_s:
                await self._commit(consumer)
                await metrics.update_consumer_lag(STAGE, consumer)
                last_commit = time.monotonic()

    async def _shutdown(self, consumer: AIOKafkaConsumer) -> None:
        """Stop taking work, let in-flight uploads finish within the grace period, commit, close."""
        self._stopping = True
        self._keyed.close()
        if self._tasks:
            _, unfinished = await asyncio.wait(set(self._tasks), timeout=self.up.shutdown_grace_s)
            for task in unfinished:
                task.cancel()
            if unfinished:
                await asyncio.gather(*unfinished, return_exceptions=True)
                log.warning("shutdown: %d unfinished messages will be read again after a restart", len(unfinished))
        try:
            await self._commit(consumer)
        except KafkaError as exc:  # pragma: no cover - broker gone while stopping
            log.warning("final commit failed: %s", exc)
        await stop_consumer(consumer)
        if self._producer is not None:
            await self._producer.stop()
        if self._client is not None:
            await self._client.aclose()
        log.info("uploader stopped")

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("cannot record an outcome; stopping", exc_info=task.exception())
            self._fatal = task.exception()

    # -- partitions, offsets, back-pressure ------------------------------------------------------

    async def partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.readiness.set("assignment", bool(assigned))

    async def _recover(self, assigned: set[TopicPartition]) -> None:
        """Find outcomes already written for messages about to be read again (see recovery).

        Runs from the poll loop before the first record of a newly assigned partition is
        taken in (aiokafka may already fetch while the rebalance listener still runs).
        """
        assert self._consumer is not None
        committed: dict[int, int] = {}
        for tp in assigned:
            offset = await self._consumer.committed(tp)
            committed[tp.partition] = offset if offset is not None and offset >= 0 else 0
            if (tp.topic, tp.partition) not in self.state.marks:
                # Before anything is read: outcomes of this session can only come after today's end.
                report_from = {str(p): o for p, o in self._report_hw.items()}
                await self.state.put_mark(tp.topic, tp.partition, CommitMark(offset=-1, report_from=report_from))
        start: dict[int, int] = {}
        for tp in assigned:
            for partition, offset in self.state.marks[(tp.topic, tp.partition)].report_from.items():
                start[int(partition)] = min(start.get(int(partition), offset), offset)
        found = await written_outcomes(
            self.settings.kafka, self.topics.report, start, self.group_id, self.topics.arcs, committed
        )
        self._recovered.update(found)
        self._recovered_partitions |= assigned
        log.info("assigned %s; %d outcomes already written will not be repeated", sorted(committed), len(found))

    async def partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Let in-flight messages of revoked partitions finish (bounded), commit them, forget them.

        Whoever gets the partition next re-reads from the commit; an outcome written after
        that member scanned the report would be a second one, so the work is drained first.
        """
        if not revoked:
            return
        if self._stopping:  # shutdown already drained what it could
            self.tracker.forget(revoked)
            return

        def drained() -> bool:
            return not any(self._pending.get(tp) for tp in revoked)

        try:
            async with self._progress:
                await asyncio.wait_for(self._progress.wait_for(drained), timeout=self.up.shutdown_grace_s)
        except TimeoutError:
            log.warning("partitions revoked with unfinished messages; they will be read again")
        if self._consumer is not None:
            await self._commit(self._consumer, only=revoked)
        self.tracker.forget(revoked)
        self._recovered_partitions -= revoked
        for tp in revoked:
            self._pending.pop(tp, None)
            self._snapshots.pop(tp, None)
        async with self._progress:
            self._progress.notify_all()

    def _backpressure(self, consumer: AIOKafkaConsumer) -> None:
        in_flight = self.tracker.pending()
        metrics.set_in_flight(STAGE, in_flight)
        assigned = consumer.assignment()
        if in_flight >= self.up.max_in_flight:
            consumer.pause(*assigned)
        elif consumer.paused():
            consumer.resume(*consumer.paused())
        metrics.set_paused_partitions(STAGE, len(consumer.paused()))

    async def _commit(self, consumer: AIOKafkaConsumer, only: set[TopicPartition] | None = None) -> None:
        assigned = only if only is not None else consumer.assignment()
        points = {tp: point for tp, point in self.tracker.commit_points().items() if tp in assigned}
        if not points:
            return
        try:
            await consumer.commit(points)
        except KafkaError as exc:
            log.warning("offset commit failed (will retry): %s", exc)
            return
        self.tracker.committed(points)
        for tp, point in points.items():
            report_from = self._report_position_for(tp, point)
            mark = CommitMark(offset=point, report_from={str(p): o for p, o in report_from.items()})
            await self.state.put_mark(tp.topic, tp.partition, mark)

    def _report_position_for(self, tp: TopicPartition, point: int) -> dict[int, int]:
        """Report offsets before which no outcome of a message at or after ``point`` can be."""
        snapshots = self._snapshots.get(tp)
        while snapshots and snapshots[0][0] < point:
            snapshots.popleft()
        return dict(snapshots[0][1]) if snapshots else dict(self._report_hw)

    async def _finish(self, message_tp: TopicPartition, offset: int) -> None:
        self.tracker.done(message_tp, offset)
        pending = self._pending.get(message_tp)
        if pending is not None:
            pending.discard(offset)
        self._room.set()
        async with self._progress:
            self._progress.notify_all()

    async def _wait_prior(self, tp: TopicPartition, offset: int) -> None:
        """Wait until every message before ``offset`` in its partition is fully handled."""

        def prior_done() -> bool:
            pending = self._pending.get(tp)
            return not pending or min(pending) >= offset

        async with self._progress:
            await self._progress.wait_for(prior_done)

    # -- taking a record in ----------------------------------------------------------------------

    def _take(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        self.tracker.start(tp, record.offset)
        self._pending.setdefault(tp, set()).add(record.offset)
        self._snapshots.setdefault(tp, deque()).append((record.offset, dict(self._report_hw)))
        metrics.message_in(STAGE)
        headers = header_dict(record.headers)
        kind = headers.get(H_KIND, "arc")
        if kind in MARKER_KINDS:
            self._take_marker(tp, record)
            return
        message = Message(
            tp=tp,
            offset=record.offset,
            identifier=(record.key or b"").decode("utf-8", "replace"),
            value=record.value,
            raw_headers=list(record.headers or ()),
            run_id=headers.get(H_RUN_ID) or None,
            content_hash=headers.get(H_CONTENT_HASH) or None,
            source_ts=headers.get(H_SOURCE_TS) or None,
            engine=headers.get(H_ENGINE) or None,
            recovered=self._recovered.pop((tp.partition, record.offset), None),
        )
        self._keyed.submit(message.identifier, message)

    def _take_marker(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        self._recovered.pop((tp.partition, record.offset), None)
        try:
            marker = RunMarker.model_validate(loads(record.value or b"null"))
        except (PayloadError, ValueError) as exc:
            log.error(
                "unreadable run marker skipped: %s",
                exc,
                extra={"partition": tp.partition, "offset": record.offset},
            )
            self._spawn(self._finish(tp, record.offset))
            return
        run = self._run(marker.run_id)
        if marker.kind == "run-start":
            # On this partition another run started and never ended: its extraction was aborted.
            aborted = [
                other
                for other in self._runs.values()
                if other is not run
                and other.record.status == "RUNNING"
                and tp.partition in other.starts_taken
                and tp.partition not in other.ends_taken
            ]
            if run is None:
                run = self._new_run(marker)
            run.starts_taken.add(tp.partition)
            self._spawn(self._run_start(tp, record.offset, run, aborted))
        else:
            if run is not None:
                run.ends_taken.add(tp.partition)
            self._spawn(self._run_end(tp, record.offset, marker, run))

    # -- runs and harvests -----------------------------------------------------------------------

    def _run(self, run_id: str) -> Run | None:
        """The run from this session, or from the durable state of an earlier one."""
        run = self._runs.get(run_id)
        if run is None and run_id in self.state.runs:
            record = self.state.runs[run_id].model_copy(deep=True)
            run = Run(record, starts_taken=set(record.started), ends_taken=set(record.ended))
            if record.harvest_id is not None or record.status != "RUNNING":
                run.ready.set()
            self._runs[run_id] = run
        return run

    def _new_run(self, marker: RunMarker) -> Run:
        record = RunRecord(
            run_id=marker.run_id,
            expected=marker.expected,
            partitions=marker.partitions,
            started_at=marker.started_at,
        )
        run = Run(record)
        self._runs[marker.run_id] = run
        return run

    async def _run_start(self, tp: TopicPartition, offset: int, run: Run, aborted: list[Run]) -> None:
        assert self._client is not None
        for other in aborted:
            await self._close_run(other, "CANCELLED", f"run {run.record.run_id} started before this run ended")
        async with run.lock:
            record = run.record
            changed = tp.partition not in record.started
            if changed:
                record.started.append(tp.partition)
            if record.harvest_id is None and record.status == "RUNNING":
                body = dumps({"rdi": self.rdi, "expected_datasets": record.expected})
                try:
                    reply = await self._client.call("POST", "/v3/harvests", body)
                    record.harvest_id = str(reply.body["harvest_id"])
                    log.info("run %s: harvest %s created", record.run_id, record.harvest_id)
                except (AttemptError, KeyError, TypeError) as exc:
                    record.status = "FAILED"
                    record.error = f"cannot create the harvest: {exc}"
                    log.error("run %s: %s", record.run_id, record.error)
                changed = True
            if changed:
                await self.state.put_run(record)
            run.ready.set()
        await self._finish(tp, offset)

    async def _run_end(self, tp: TopicPartition, offset: int, marker: RunMarker, run: Run | None) -> None:
        await self._wait_prior(tp, offset)
        if run is None:
            log.warning("run-end of unknown run %s ignored", marker.run_id, extra={"partition": tp.partition})
            await self._finish(tp, offset)
            return
        async with run.lock:
            record = run.record
            if tp.partition not in record.ended:
                record.ended.append(tp.partition)
                record.published[str(tp.partition)] = marker.published
                record.extract_failed = max(record.extract_failed, marker.failed)
                if len(record.ended) >= record.partitions and record.status == "RUNNING":
                    await self._patch_harvest(record, "COMPLETED")
                await self.state.put_run(record)
        await self._finish(tp, offset)

    async def _close_run(self, run: Run, status: RunStatus, reason: str) -> None:
        async with run.lock:
            if run.record.status != "RUNNING":
                return
            log.warning("run %s aborted (%s): harvest %s", run.record.run_id, reason, status)
            run.record.error = reason
            await self._patch_harvest(run.record, status)
            await self.state.put_run(run.record)

    async def _patch_harvest(self, record: RunRecord, status: RunStatus) -> None:
        """Close the harvest. The run counts as closed *before* the request, so an ARC answered
        409 by the closed harvest meanwhile knows to go in on its own (see ``_post_arc``)."""
        assert self._client is not None
        record.status = status
        record.finished_at = utc_now_iso()
        if record.harvest_id is not None:
            try:
                await self._client.call("PATCH", f"/v3/harvests/{record.harvest_id}", dumps({"status": status}))
            except AttemptError as exc:
                if exc.status != 409:  # 409: already closed (e.g. before a restart)
                    record.error = f"cannot set harvest {record.harvest_id} to {status}: {exc}"
                    log.error("run %s: %s", record.run_id, record.error)
        log.info("run %s: harvest %s %s", record.run_id, record.harvest_id, status)

    # -- delivering ARCs -------------------------------------------------------------------------

    async def _deliver(self, message: Message) -> None:
        """One ARC or tombstone: its outcome is acked before the offset counts as done.

        Whatever goes wrong with the message itself becomes its failed outcome; a failure
        to write that outcome (the broker) leaves the offset pending and stops the service.
        """
        if message.recovered is not None:
            await self._restore(message, message.recovered)
        else:
            try:
                result = await (self._delete(message) if message.value is None else self._upload(message))
            except ArcstreamError as exc:
                result = Result(self._failed(message, exc, attempts=0), dlq=True)
            except Exception as exc:  # a bug must fail this message, not the partition or the service
                log.exception("unexpected error handling this message", extra=message.log_extra)
                failure = ArcstreamError(f"{type(exc).__name__}: {exc}")
                result = Result(self._failed(message, failure, attempts=0), dlq=True)
            await self._emit(message, result)
        await self._finish(message.tp, message.offset)

    async def _supersede(self, older: Message, newer: Message) -> None:
        if older.recovered is None:
            outcome = self._outcome(
                older,
                "skipped",
                attempts=0,
                error_message=f"superseded by a newer version (offset {newer.offset}) before it was sent",
            )
            await self._emit(older, Result(outcome))
        await self._finish(older.tp, older.offset)

    async def _restore(self, message: Message, outcome: OutcomeRecord) -> None:
        """The outcome exists already; bring the delivered-hash state in line with it."""
        current = self.state.hashes.get(message.identifier)
        if outcome.status in DELIVERED and outcome.content_hash:
            if current is None or current.content_hash != outcome.content_hash:
                await self.state.put_hash(
                    message.identifier,
                    DeliveredHash(content_hash=outcome.content_hash, arc_id=outcome.arc_id, at=outcome.at),
                )
        elif outcome.status == "deleted":
            await self.state.forget_hash(message.identifier)

    async def _upload(self, message: Message) -> Result:
        assert self._client is not None and message.value is not None
        if not message.identifier:
            raise PayloadError("ARC message without a key (identifier)")
        if message.content_hash is None:  # not built by our builder: hash it here, off the loop
            message.content_hash = await asyncio.to_thread(_hash_of, message.value)
        run = self._run(message.run_id) if message.run_id is not None else None
        if run is not None:
            await run.ready.wait()
        last = self.state.hashes.get(message.identifier)
        if not self.force and last is not None and last.content_hash == message.content_hash:
            return Result(self._outcome(message, "unchanged", attempts=0, arc_id=last.arc_id))
        try:
            reply = await self._post_arc(message, message.value, run)
        except AttemptError as exc:
            return Result(self._failed(message, exc, attempts=exc.attempts), dlq=True)
        answer = reply.body if isinstance(reply.body, dict) else {}
        status: Status = "created" if answer.get("status") == "created" else "updated"
        arc_id = answer.get("arc_id") or make_arc_id(message.identifier, self.rdi)
        server_hash = (answer.get("metadata") or {}).get("arc_hash")
        if server_hash and server_hash != message.content_hash:
            log.warning(
                "target hash %s differs from the ARC's content hash %s",
                server_hash,
                message.content_hash,
                extra=message.log_extra,
            )
        outcome = self._outcome(message, status, attempts=reply.attempts, http_status=reply.status, arc_id=arc_id)
        delivered = DeliveredHash(content_hash=message.content_hash, arc_id=arc_id, at=outcome.at)
        return Result(outcome, delivered_hash=delivered)

    async def _post_arc(self, message: Message, value: bytes, run: Run | None) -> Reply:
        """Into the run's harvest while it is open, else (CDC, or a closed run) as a single ARC.

        An ARC of an aborted or failed run is still the newest content of its identifier,
        so it is delivered on its own rather than dropped; the same happens when the
        harvest closed while the request was under way (409 from a closed harvest).
        """
        assert self._client is not None
        harvest_id = run.record.harvest_id if run is not None and run.record.status == "RUNNING" else None
        if harvest_id is not None:
            try:
                return await self._client.call("POST", f"/v3/harvests/{harvest_id}/arcs", b'{"arc":' + value + b"}")
            except AttemptError as exc:
                if exc.status != 409 or run is None or run.record.status == "RUNNING":
                    raise
        body = b'{"rdi":' + dumps(self.rdi) + b',"arc":' + value + b"}"
        return await self._client.call("POST", "/v3/arcs", body)

    async def _delete(self, message: Message) -> Result:
        assert self._client is not None
        arc_id = make_arc_id(message.identifier, self.rdi)
        http_status: int | None = None
        attempts = 0
        if self.up.delete_arcs:
            try:
                reply = await self._client.call("DELETE", f"/v3/arcs/{arc_id}")
                http_status, attempts = reply.status, reply.attempts
            except AttemptError as exc:
                if exc.status not in (404, 405):  # nothing to delete / the target has no delete
                    return Result(self._failed(message, exc, attempts=exc.attempts), dlq=True)
                http_status, attempts = exc.status, exc.attempts
        outcome = self._outcome(message, "deleted", attempts=attempts, http_status=http_status, arc_id=arc_id)
        return Result(outcome, forget_hash=True)

    # -- outcomes --------------------------------------------------------------------------------

    def _outcome(
        self,
        message: Message,
        status: Status,
        *,
        attempts: int,
        http_status: int | None = None,
        arc_id: str | None = None,
        error_class: str | None = None,
        error_message: str | None = None,
    ) -> OutcomeRecord:
        accepted = status in DELIVERED or status == "deleted"
        return OutcomeRecord(
            identifier=message.identifier,
            stage=STAGE,
            status=status,
            run_id=message.run_id,
            arc_id=arc_id,
            content_hash=message.content_hash,
            attempts=attempts,
            http_status=http_status,
            error_class=error_class,
            error_message=error_message,
            duration_ms=round((time.monotonic() - message.started) * 1000, 3),
            latency_ms=_latency_ms(message.source_ts) if accepted else None,
            engine=message.engine,
        )

    def _failed(self, message: Message, error: ArcstreamError, *, attempts: int) -> OutcomeRecord:
        return self._outcome(
            message,
            "failed",
            attempts=attempts,
            http_status=getattr(error, "status", None),
            error_class=error.error_class,
            error_message=str(error),
        )

    async def _emit(self, message: Message, result: Result) -> None:
        """DLQ record (if any), then the outcome, then the delivered-hash state; each acked first."""
        assert self._producer is not None
        outcome = result.outcome
        key = message.identifier.encode()
        if result.dlq:
            dlq_headers = replace_headers(
                message.raw_headers,
                **{
                    H_ERROR_CLASS: outcome.error_class,
                    H_ERROR_MESSAGE: (outcome.error_message or "")[:1000],
                    H_ERROR_STAGE: STAGE,
                    H_ORIGIN_TOPIC: message.tp.topic,
                    H_ORIGIN_PARTITION: message.tp.partition,
                    H_ORIGIN_OFFSET: message.offset,
                },
            )
            await (await self._producer.send(self.topics.dlq, key=key, value=message.value, headers=dlq_headers))
        headers = make_headers(
            {
                H_ORIGIN_TOPIC: message.tp.topic,
                H_ORIGIN_PARTITION: message.tp.partition,
                H_ORIGIN_OFFSET: message.offset,
                H_ORIGIN_GROUP: self.group_id,
                H_RUN_ID: message.run_id,
                H_CONTENT_HASH: message.content_hash,
            }
        )
        value = dumps(outcome.model_dump(exclude_none=True))
        sent = await (await self._producer.send(self.topics.report, key=key, value=value, headers=headers))
        self._report_hw[sent.partition] = max(self._report_hw.get(sent.partition, 0), sent.offset + 1)
        metrics.record_outcome(outcome)
        if outcome.status == "failed":
            metrics.message_failed(STAGE, outcome.error_class or "DeliveryError")
            log.warning("failed: %s", outcome.error_message, extra=message.log_extra)
        else:
            metrics.message_out(STAGE)
        if result.delivered_hash is not None:
            await self.state.put_hash(message.identifier, result.delivered_hash)
        if result.forget_hash:
            await self.state.forget_hash(message.identifier)
