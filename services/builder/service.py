"""The builder service: ``arc.investigations`` -> worker processes -> ``arc.arcs``.

One asyncio loop polls a consumer group and hands each message to a task:

- payloads are built in the process pool (:mod:`services.builder.pool`) and the
  ARC goes to the *same partition number* of ``arc.arcs`` with metadata headers;
  failures (malformed JSON, schema violation, mapping error, timeout) go to
  ``arc.dlq`` with the error in headers, and every payload gets an outcome on
  ``arc.report``;
- tombstones pass through as tombstones;
- run markers pass through after every earlier message of their partition is handled.

Per key the newest version wins: the highest offset seen per key is tracked,
and a build whose key has a newer version is skipped before it starts or
discarded after it ends (reported ``superseded``), so an older ARC is never
produced after a newer one. In-flight messages are bounded: at the limit all
assigned partitions are paused while polling continues (group membership),
resumed below it, and re-paused after a rebalance. Offsets are committed per
partition only up to the highest contiguous handled offset (:class:`OffsetTracker`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Coroutine
from datetime import datetime
from typing import Any

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from services.builder import metrics as builder_metrics
from services.builder import sizing
from services.builder.engines import engine_path
from services.builder.engines.fallback import FALLBACK_ENGINE
from services.builder.pool import BuildPool
from services.builder.worker import BuildResult
from services.common import metrics
from services.common.config import Settings
from services.common.errors import BrokerUnavailableError
from services.common.kafka.clients import make_consumer, make_producer, start_client
from services.common.kafka.groups import stop_consumer
from services.common.kafka.offsets import OffsetTracker
from services.common.kafka.topics import ensure_topics
from services.common.metrics_server import Readiness, serve_metrics
from services.common.payload import PAYLOAD_SCHEMA_VERSION
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
    H_SCHEMA_VERSION,
    H_SOURCE_TS,
    MARKER_KINDS,
    Headers,
    dumps,
    header_dict,
    make_headers,
)
from services.common.report import OutcomeRecord, Status

log = logging.getLogger(__name__)

STAGE: metrics.StageName = "build"
#: Pause/resume log lines at INFO level at most this often (the gauge shows every change).
FLOW_LOG_INTERVAL_S = 10.0
#: Error messages in DLQ headers are cut to this many characters (the report keeps them whole).
MAX_HEADER_MESSAGE = 1000

type Record = ConsumerRecord[bytes, bytes]


class _Abandoned(Exception):
    """The message's partition moved to another member during a rebalance; that member redoes it."""


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, service: BuilderService) -> None:
        self._service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._service.partitions_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._service.partitions_assigned(set(assigned))


class BuilderService:
    """One builder instance in the consumer group; :meth:`run` until ``stop`` is set."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: str | None = None,
        workers: int | None = None,
        group_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine or settings.builder.engine
        self.workers = workers or settings.max_concurrent_arc_builds
        self.limit = sizing.in_flight_limit(settings, self.engine, self.workers)
        self.group_id = group_id or settings.builder.group_id
        self.readiness = Readiness("broker", "assigned")
        self._engine_path = engine_path(self.engine)
        self._tracker = OffsetTracker()
        self._pending: dict[TopicPartition, dict[int, asyncio.Task[None]]] = {}
        #: Per partition and key: [highest offset seen, messages of that key in flight].
        self._keys: dict[TopicPartition, dict[bytes, list[int]]] = {}
        self._room = asyncio.Event()
        self._paused = False
        self._failure: BaseException | None = None
        self._stop = asyncio.Event()
        self._last_commit = 0.0
        self._last_flow_log = -FLOW_LOG_INTERVAL_S
        #: Cleared from revocation until the new assignment is known; output waits for it.
        self._settled = asyncio.Event()
        self._settled.set()
        self._limbo: set[TopicPartition] = set()
        #: Per partition: one past the highest offset taken in, and where to resume after a rebalance.
        self._fetched: dict[TopicPartition, int] = {}
        self._resume_from: dict[TopicPartition, int] = {}
        #: Assignments received so far (observable: a test or an operator sees rebalances happen).
        self.rebalances = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._pool: BuildPool | None = None

    # -- observable state -------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Messages taken in and not yet fully handled."""
        return sum(len(tasks) for tasks in self._pending.values())

    def paused(self) -> frozenset[TopicPartition]:
        """Partitions currently paused because the in-flight limit is reached."""
        return frozenset(self._consumer.paused()) if self._consumer is not None else frozenset()

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._consumer.assignment()) if self._consumer is not None else frozenset()

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then drain, commit and close; re-raise a delivery failure."""
        self._stop = stop
        await ensure_topics(self.settings)
        kafka = self.settings.kafka
        self._pool = BuildPool(
            self.workers,
            self._engine_path,
            self.settings.arc_generation_timeout_minutes * 60,
            sizing.max_builds_per_worker(self.settings, self.engine),
            batch_size=sizing.sizing(self.engine).batch_size,
            max_worker_rss_mb=self.settings.builder.max_worker_rss_mb,
        )
        try:
            await self._pool.check()
            self._producer = make_producer(kafka)
            await start_client(self._producer, kafka)
            self._consumer = make_consumer(kafka, [], self.group_id)
            self._consumer.subscribe([self.settings.topics.investigations], listener=_Rebalance(self))
            await start_client(self._consumer, kafka)
            self.readiness.set("broker", True)
            log.info(
                "builder started: engine=%s workers=%d in-flight limit=%d group=%s",
                self.engine,
                self.workers,
                self.limit,
                self.group_id,
            )
            await self._poll(self._consumer)
            await self._drain()
            await self._commit(force=True)
        finally:
            await self._close()
        if self._failure is not None:
            raise BrokerUnavailableError(f"builder stopped: {self._failure}") from self._failure

    async def _close(self) -> None:
        for task in [t for tasks in self._pending.values() for t in tasks.values()]:
            task.cancel()
        if self._consumer is not None:
            await stop_consumer(self._consumer)  # leaves the group, so partitions move on at once
        if self._producer is not None:
            await self._producer.stop()
        if self._pool is not None:
            await self._pool.close()
        metrics.set_in_flight(STAGE, 0)
        metrics.set_paused_partitions(STAGE, 0)

    async def _poll(self, consumer: AIOKafkaConsumer) -> None:
        while not self._stop.is_set():
            self._apply_pause(consumer)
            room = self.limit - self.in_flight
            self._room.clear()
            # Paused partitions return nothing, but polling keeps this member in the group.
            batches = await consumer.getmany(timeout_ms=0 if room <= 0 else 200, max_records=max(1, room))
            for tp, records in batches.items():
                for record in records:
                    self._dispatch(tp, record)
            if room <= 0 and not batches:
                await self._wait_for_room()
            await self._commit()
            metrics.set_in_flight(STAGE, self.in_flight)
            await metrics.update_consumer_lag(STAGE, consumer)

    async def _wait_for_room(self) -> None:
        """At the limit: sleep until a message finishes or stop is asked (at most half a second)."""
        waiters = [asyncio.ensure_future(self._stop.wait()), asyncio.ensure_future(self._room.wait())]
        try:
            await asyncio.wait(waiters, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _drain(self) -> None:
        """Graceful stop: give in-flight work the grace period, abandon the rest (it will be re-read)."""
        tasks = [t for tasks in self._pending.values() for t in tasks.values()]
        if not tasks:
            return
        grace = self.settings.builder.shutdown_grace_s
        log.info("stopping: waiting up to %gs for %d in-flight message(s)", grace, len(tasks))
        _, unfinished = await asyncio.wait(tasks, timeout=grace)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        if unfinished:
            log.info("abandoned %d in-flight message(s); they are re-read after restart", len(unfinished))

    # -- flow control and rebalance ---------------------------------------------------------------

    def _apply_pause(self, consumer: AIOKafkaConsumer) -> None:
        assigned = consumer.assignment()
        at_limit = self.in_flight >= self.limit
        if at_limit:
            missing = assigned - consumer.paused()
            if missing:
                consumer.pause(*missing)
            if not self._paused:
                self._log_flow("in-flight limit %d reached: paused %d partition(s)", self.limit, len(assigned))
        elif self._paused:
            consumer.resume(*consumer.paused())
            self._log_flow("below in-flight limit (%d/%d): resumed partitions", self.in_flight, self.limit)
        self._paused = at_limit
        metrics.set_paused_partitions(STAGE, len(consumer.paused()))

    def _log_flow(self, message: str, *args: object) -> None:
        """Pause/resume lines at INFO, but at most one per interval: under load they alternate per build."""
        now = time.monotonic()
        level = logging.INFO if now - self._last_flow_log >= FLOW_LOG_INTERVAL_S else logging.DEBUG
        if level == logging.INFO:
            self._last_flow_log = now
        log.log(level, message, *args)

    async def partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Commit what is done and hold output until the new assignment is known.

        aiokafka rebalances eagerly: every partition is revoked, and most come
        back. In-flight builds keep running meanwhile ("limbo"); nothing is
        produced until :meth:`partitions_assigned` says which partitions stay.
        """
        self._settled.clear()
        await self._commit(force=True, only=revoked)
        self._limbo |= revoked

    async def partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Abandon work of partitions that moved away, keep the rest, re-apply pauses (aiokafka resets them)."""
        self.rebalances += 1
        lost = self._limbo - assigned
        tasks = [task for tp in lost for task in self._pending.get(tp, {}).values()]
        for task in tasks:
            task.cancel()
        self._settled.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tracker.forget(lost)
        for tp in lost:
            self._pending.pop(tp, None)
            self._keys.pop(tp, None)
            self._fetched.pop(tp, None)
        for tp in self._limbo & assigned:
            # The consumer restarts a kept partition at its committed offset: skip what is in flight or done.
            if tp in self._fetched:
                self._resume_from[tp] = self._fetched[tp]
        self._limbo = set()
        self.readiness.set("assigned", bool(assigned))
        if self.in_flight >= self.limit and self._consumer is not None and assigned:
            self._consumer.pause(*assigned)
            self._paused = True
            self._log_flow("re-applied pause to %d assigned partition(s) after a rebalance", len(assigned))
        metrics.set_paused_partitions(STAGE, len(self.paused()))

    async def _owned(self, tp: TopicPartition) -> None:
        """Wait out a rebalance; raise :class:`_Abandoned` if ``tp`` now belongs to another member."""
        await self._settled.wait()
        if self._consumer is None or tp not in self._consumer.assignment():
            raise _Abandoned(tp)

    async def _commit(self, *, force: bool = False, only: set[TopicPartition] | None = None) -> None:
        now = time.monotonic()
        if not force and (now - self._last_commit) * 1000 < self.settings.builder.commit_interval_ms:
            return
        self._last_commit = now
        points = self._tracker.commit_points()
        if only is not None:
            points = {tp: offset for tp, offset in points.items() if tp in only}
        if not points or self._consumer is None:
            return
        try:
            await self._consumer.commit(points)
        except KafkaError as exc:  # e.g. a rebalance in progress: the next commit catches up
            log.warning("offset commit failed (%s); will retry", exc)
            return
        self._tracker.committed(points)

    # -- per message ------------------------------------------------------------------------------

    def _dispatch(self, tp: TopicPartition, record: Record) -> None:
        floor = self._resume_from.get(tp)
        if floor is not None:
            if record.offset < floor:
                return  # re-read after a rebalance that kept this partition: in flight or handled already
            del self._resume_from[tp]
        self._fetched[tp] = max(self._fetched.get(tp, 0), record.offset + 1)
        metrics.message_in(STAGE)
        self._tracker.start(tp, record.offset)
        pending = self._pending.setdefault(tp, {})
        kind = header_dict(record.headers).get(H_KIND, "")
        handler: Coroutine[Any, Any, None]
        if kind in MARKER_KINDS:
            handler = self._pass_marker(tp, record, list(pending.values()))
        else:
            if record.key is not None:
                entry = self._keys.setdefault(tp, {}).setdefault(record.key, [record.offset, 0])
                entry[0] = record.offset
                entry[1] += 1
            handler = self._tombstone(tp, record) if record.value is None else self._payload(tp, record)
        pending[record.offset] = asyncio.create_task(self._handle(tp, record, handler))

    async def _handle(self, tp: TopicPartition, record: Record, handler: Coroutine[Any, Any, None]) -> None:
        try:
            await handler
            self._tracker.done(tp, record.offset)
        except asyncio.CancelledError:
            raise
        except _Abandoned:
            log.debug("partition moved to another member; abandoned", extra={"offset": record.offset})
        except Exception as exc:  # the message could not be handled (e.g. broker gone): stop, re-read later
            log.exception("cannot handle message; stopping", extra={"partition": tp.partition, "offset": record.offset})
            if self._failure is None:
                self._failure = exc
            self._stop.set()
        finally:
            self._pending.get(tp, {}).pop(record.offset, None)
            self._release_key(tp, record)
            self._room.set()

    def _release_key(self, tp: TopicPartition, record: Record) -> None:
        """Forget a key once none of its versions is in flight (keeps memory flat)."""
        keys = self._keys.get(tp, {})
        entry = keys.get(record.key) if record.key is not None else None
        if entry is None or header_dict(record.headers).get(H_KIND, "") in MARKER_KINDS:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            keys.pop(record.key or b"", None)

    def _superseded(self, tp: TopicPartition, record: Record) -> bool:
        """True if a newer version of this record's key has been taken in."""
        entry = self._keys.get(tp, {}).get(record.key) if record.key is not None else None
        return entry is not None and entry[0] > record.offset

    async def _enqueue(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers, partition: int | None
    ) -> asyncio.Future[Any]:
        """Hand a message to the producer (in order); the returned future resolves when the broker acks it."""
        assert self._producer is not None
        ack: asyncio.Future[Any] = await self._producer.send(
            topic, value=value, key=key, partition=partition, headers=headers
        )
        return ack

    async def _send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers, partition: int | None
    ) -> None:
        await (await self._enqueue(topic, key, value, headers, partition))

    async def _pass_marker(self, tp: TopicPartition, record: Record, earlier: list[asyncio.Task[None]]) -> None:
        if earlier:
            await asyncio.wait(earlier)
        if self._failure is not None:
            raise RuntimeError("an earlier message of this partition was not handled")
        await self._owned(tp)
        await self._send(self.settings.topics.arcs, record.key, record.value, list(record.headers), record.partition)
        metrics.message_out(STAGE)

    async def _tombstone(self, tp: TopicPartition, record: Record) -> None:
        await self._owned(tp)
        if self._superseded(tp, record):
            return
        await self._send(self.settings.topics.arcs, record.key, None, list(record.headers), record.partition)
        metrics.message_out(STAGE)

    async def _payload(self, tp: TopicPartition, record: Record) -> None:
        assert self._pool is not None and record.value is not None
        identifier = record.key.decode("utf-8", "replace") if record.key is not None else ""
        headers = header_dict(record.headers)
        if record.key is None:
            await self._owned(tp)
            await self._fail(record, identifier, headers, "PayloadError", "payload message has no key", 0.0)
            return
        started = time.monotonic()
        result = await self._pool.build(record.value, wanted=lambda: not self._superseded(tp, record))
        # The worker's own build time (a batch shares one wait); a timeout counts its wall time.
        duration_ms = (result.build_s if result and result.build_s is not None else time.monotonic() - started) * 1000
        await self._owned(tp)  # during a rebalance, output waits until this partition is known to stay
        if result is not None and result.fallback is not None:
            builder_metrics.engine_fallback(result.fallback)
        if result is None or self._superseded(tp, record):
            await self._report(identifier, headers, "superseded", duration_ms=None)
        elif result.ok:
            await self._produce_arc(record, identifier, headers, result, duration_ms)
        else:
            await self._fail(
                record,
                identifier,
                headers,
                result.error_class or "Error",
                result.error_message or "",
                duration_ms,
                engine=self._engine_used(result),
            )

    def _engine_used(self, result: BuildResult) -> str:
        """The configured engine, or ``arctrl-fallback`` when it handed this payload to arctrl."""
        return self.engine if result.fallback is None else FALLBACK_ENGINE

    async def _produce_arc(
        self,
        record: Record,
        identifier: str,
        headers: dict[str, str],
        result: BuildResult,
        duration_ms: float,
    ) -> None:
        arc_headers = make_headers(
            {
                H_KIND: "arc",
                H_SCHEMA_VERSION: headers.get(H_SCHEMA_VERSION, str(PAYLOAD_SCHEMA_VERSION)),
                H_RUN_ID: headers.get(H_RUN_ID),
                H_SOURCE_TS: headers.get(H_SOURCE_TS),
                H_CONTENT_HASH: result.content_hash,
                H_ENGINE: self._engine_used(result),
            }
        )
        assert result.arc_json is not None
        too_large = f"ARC of {len(result.arc_json)} bytes is too large for the producer/topic limits"
        try:
            arc_ack = await self._enqueue(
                self.settings.topics.arcs, record.key, result.arc_json, arc_headers, record.partition
            )
        except MessageSizeTooLargeError as exc:  # this ARC's failure, not the service's
            await self._fail(record, identifier, headers, "ArcTooLargeError", f"{too_large}: {exc}", duration_ms)
            return
        report = self._report(
            identifier,
            headers,
            "built",
            duration_ms=duration_ms,
            content_hash=result.content_hash,
            engine=self._engine_used(result),
            warnings=list(result.warnings) or None,
        )
        try:  # ARC and outcome travel together: one broker round trip, not two
            await asyncio.gather(arc_ack, report)
        except MessageSizeTooLargeError as exc:  # the broker's own limit (the outcome 'built' is then followed)
            await self._fail(record, identifier, headers, "ArcTooLargeError", f"{too_large}: {exc}", duration_ms)
            return
        metrics.message_out(STAGE)

    async def _fail(
        self,
        record: Record,
        identifier: str,
        headers: dict[str, str],
        error_class: str,
        message: str,
        duration_ms: float,
        engine: str | None = None,
    ) -> None:
        log.warning(
            "build failed: %s: %s",
            error_class,
            message,
            extra={"identifier": identifier, "partition": record.partition, "offset": record.offset},
        )
        dlq_headers = [(k, v) for k, v in record.headers if k not in _ERROR_HEADERS] + make_headers(
            {
                H_ERROR_CLASS: error_class,
                H_ERROR_MESSAGE: message[:MAX_HEADER_MESSAGE],
                H_ERROR_STAGE: STAGE,
                H_ORIGIN_TOPIC: record.topic,
                H_ORIGIN_PARTITION: record.partition,
                H_ORIGIN_OFFSET: record.offset,
            }
        )
        await asyncio.gather(
            self._send(self.settings.topics.dlq, record.key, record.value, dlq_headers, record.partition),
            self._report(
                identifier,
                headers,
                "failed",
                duration_ms=duration_ms,
                error_class=error_class,
                error_message=message,
                engine=engine or self.engine,
            ),
        )
        metrics.message_failed(STAGE, error_class)

    async def _report(
        self,
        identifier: str,
        headers: dict[str, str],
        status: Status,
        duration_ms: float | None,
        **fields: Any,
    ) -> None:
        outcome = OutcomeRecord(
            identifier=identifier,
            stage=STAGE,
            status=status,
            run_id=headers.get(H_RUN_ID),
            duration_ms=duration_ms,
            latency_ms=_latency_ms(headers.get(H_SOURCE_TS)),
            **({"engine": self.engine if status != "superseded" else None} | fields),
        )
        await self._send(
            self.settings.topics.report,
            identifier.encode(),
            dumps(outcome.model_dump(mode="json")),
            make_headers({H_KIND: "outcome", H_RUN_ID: outcome.run_id}),
            None,
        )
        metrics.record_outcome(outcome)


_ERROR_HEADERS = frozenset(
    {H_ERROR_CLASS, H_ERROR_MESSAGE, H_ERROR_STAGE, H_ORIGIN_TOPIC, H_ORIGIN_PARTITION, H_ORIGIN_OFFSET}
)


def _latency_ms(source_ts: str | None) -> float | None:
    """Milliseconds from the source commit time (ISO 8601 header) until now; ``None`` if unknown."""
    if not source_ts:
        return None
    try:
        then = datetime.fromisoformat(source_ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    if then.tzinfo is None:
        return None
    return (datetime.now(then.tzinfo) - then).total_seconds() * 1000


async def run_builder(settings: Settings, *, engine: str | None = None, workers: int | None = None) -> None:
    """Run one builder until SIGTERM/SIGINT, serving metrics if configured."""
    service = BuilderService(settings, engine=engine, workers=workers)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serve_metrics(settings.metrics, service.readiness):
        await service.run(stop)
    log.info("builder stopped")
