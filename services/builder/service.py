"""The builder service: ``arc.investigations`` -> worker processes -> ``arc.arcs``.

The consumer-group loop (poll, in-flight bound, contiguous commits, rebalances,
recovery, SIGTERM) is :class:`services.common.kafka.stage.StageLoop`; this module
is the build step only:

- a payload is built in the process pool (:mod:`services.builder.pool`); its ARC
  goes to the *same partition number* of ``arc.arcs`` with metadata headers, then
  its ``built`` outcome to ``arc.report`` (in that order, each acknowledged, so an
  outcome found after a crash proves its ARC is there); a failure (malformed JSON,
  schema violation, key that differs from the payload's identifier, mapping error,
  timeout, ARC too large) goes to ``arc.dlq`` and gets a ``failed`` outcome;
- a tombstone passes through as a tombstone;
- a run marker passes through after every earlier message of its partition is
  handled; an unreadable one is a failed input (dead letter and outcome).

Per key the newest version wins (:class:`LatestPerKey`, builds never wait for an
older version of their identifier): a version still waiting for a worker when a
newer one arrives is reported ``superseded`` without being built, and a build whose
identifier got a newer version meanwhile is discarded (``superseded``), so an older
ARC is never produced after a newer one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import RecordMetadata
from pydantic import ValidationError

from services.builder import metrics as builder_metrics
from services.builder import sizing
from services.builder.engines import engine_path
from services.builder.engines.fallback import FALLBACK_ENGINE
from services.builder.pool import BuildPool
from services.builder.worker import BuildResult
from services.common import tracing
from services.common.config import Settings
from services.common.errors import ErrorCode, PayloadError
from services.common.kafka.latest import LatestPerKey
from services.common.kafka.member import stage_member
from services.common.kafka.stage import KeyedStep, Message, StageLoop, run_until_signalled
from services.common.metrics_server import Readiness, serve_metrics
from services.common.outcomes import OutcomeWriter, latency_ms
from services.common.payload import PAYLOAD_SCHEMA_VERSION
from services.common.records import (
    H_CONTENT_HASH,
    H_ENGINE,
    H_KIND,
    H_RUN_ID,
    H_SCHEMA_VERSION,
    H_SOURCE_TS,
    MARKER_KINDS,
    RunMarker,
    loads,
    make_headers,
)
from services.common.report import OutcomeRecord, Status

log = logging.getLogger(__name__)


class BuildStep(KeyedStep):
    """What the builder does with each message of ``arc.investigations``."""

    def __init__(
        self,
        settings: Settings,
        engine: str,
        pool: BuildPool,
        loop: StageLoop,
        producer: AIOKafkaProducer,
        outcomes: OutcomeWriter,
    ) -> None:
        self._arcs_topic = settings.topics.arcs
        self._engine = engine
        self._pool = pool
        self._loop = loop
        self._producer = producer
        self._outcomes = outcomes
        self._group = loop.settings.group_id
        build = tracing.traced_job(self._build, self._group)
        self.latest = LatestPerKey(build, self._superseded, loop.spawn, one_at_a_time=False)

    async def take(self, message: Message) -> None:
        if message.recovered is not None:
            # Its outcome was written after its ARC was acknowledged: nothing is missing.
            self._loop.done(message)
        elif message.kind in MARKER_KINDS:
            self._loop.spawn(self._marker(message), message)
        elif message.key is None:
            self._loop.spawn(self._fail(message, "missing-key", "payload message has no key", None), message)
        else:
            self.latest.submit(message.identifier, message)

    # -- jobs ------------------------------------------------------------------------------------

    async def _marker(self, message: Message) -> None:
        await self._loop.wait_prior(message)
        try:
            RunMarker.model_validate(loads(message.value or b"null"))
        except (PayloadError, ValidationError) as exc:
            await self._fail(message, "unreadable-marker", f"unreadable run marker: {exc}", None)
            return
        async with self._loop.finishing(message):
            await self._send(message, message.value, message.raw_headers)

    async def _build(self, message: Message) -> None:
        if message.value is None:
            async with self._loop.finishing(message):
                if not self.latest.is_superseded(message.identifier, message):
                    with tracing.publish(self._arcs_topic, message.identifier) as publish:
                        await self._send(message, None, publish.headers(message.raw_headers))
            return
        started = time.monotonic()
        with tracing.span("build", {"arcstream.engine": self._engine}):
            queued_ns = tracing.now_ns()
            result = await self._pool.build(
                message.value,
                message.identifier,
                wanted=lambda: not self.latest.is_superseded(message.identifier, message),
            )
            if result is not None:
                engine, fallback = f"engine {self._engine_used(result)}", {"arcstream.fallback": result.fallback}
                tracing.record_work(queued_ns, result.build_s, "queue wait", engine, fallback)
        # The worker's own build time (a batch shares one wait); a timeout counts its wall time.
        build_s = result.build_s if result is not None and result.build_s is not None else time.monotonic() - started
        if result is not None and result.fallback is not None:
            builder_metrics.engine_fallback(result.fallback)
        if result is None or self.latest.is_superseded(message.identifier, message):
            async with self._loop.finishing(message):
                await self._outcomes.report(self._outcome(message, "superseded"), message.origin)
        elif result.ok:
            await self._produce_arc(message, result, build_s * 1000)
        else:
            code: ErrorCode = result.error_code or "mapping-failed"
            await self._fail(message, code, result.error_message or "", build_s * 1000, self._engine_used(result))

    async def _superseded(self, older: Message, newer: Message) -> None:
        with tracing.consuming(older, self._group):
            async with self._loop.finishing(older):
                await self._outcomes.report(self._outcome(older, "superseded"), older.origin)

    async def _produce_arc(self, message: Message, result: BuildResult, duration_ms: float) -> None:
        assert result.arc_json is not None
        engine = self._engine_used(result)
        publish = tracing.publish(self._arcs_topic, message.identifier)
        headers = make_headers(
            {
                H_KIND: "arc",
                H_SCHEMA_VERSION: message.headers.get(H_SCHEMA_VERSION, str(PAYLOAD_SCHEMA_VERSION)),
                H_RUN_ID: message.headers.get(H_RUN_ID),
                H_SOURCE_TS: message.headers.get(H_SOURCE_TS),
                H_CONTENT_HASH: result.content_hash,
                H_ENGINE: engine,
            }
        )
        headers = publish.headers(headers, message.headers)
        too_large = f"ARC of {len(result.arc_json)} bytes is too large for the producer/topic limits"
        try:
            async with self._loop.finishing(message):
                with publish:
                    sent = await self._send(message, result.arc_json, headers)
                    publish.acknowledged(sent.partition, sent.offset)
                outcome = self._outcome(
                    message,
                    "built",
                    duration_ms=duration_ms,
                    content_hash=result.content_hash,
                    engine=engine,
                    warnings=list(result.warnings) or None,
                )
                await self._outcomes.report(outcome, message.origin)
        except MessageSizeTooLargeError as exc:  # this ARC's failure, not the service's
            await self._fail(message, "arc-too-large", f"{too_large}: {exc}", duration_ms, engine)

    async def _fail(
        self, message: Message, code: ErrorCode, text: str, duration_ms: float | None, engine: str | None = None
    ) -> None:
        outcome = self._outcome(
            message, "failed", duration_ms=duration_ms, error_code=code, error_message=text, engine=engine
        )
        async with self._loop.finishing(message):
            await self._outcomes.fail(
                outcome, key=message.key, value=message.value, headers=message.raw_headers, origin=message.origin
            )

    # -- helpers ---------------------------------------------------------------------------------

    async def _send(self, message: Message, value: bytes | None, headers: list[tuple[str, bytes]]) -> RecordMetadata:
        """Produce to the same partition number of ``arc.arcs`` and wait for the acknowledgement."""
        ack = await self._producer.send(
            self._arcs_topic, key=message.key, value=value, headers=headers, partition=message.tp.partition
        )
        return await ack

    def _engine_used(self, result: BuildResult) -> str:
        """The configured engine, or ``arctrl-fallback`` when it handed this payload to arctrl."""
        return self._engine if result.fallback is None else FALLBACK_ENGINE

    def _outcome(self, message: Message, status: Status, **fields: Any) -> OutcomeRecord:
        source_ts = message.headers.get(H_SOURCE_TS)
        tracing.outcome(status, fields.get("error_code"))
        return OutcomeRecord(
            identifier=message.identifier,
            stage="build",
            status=status,
            run_id=message.headers.get(H_RUN_ID),
            latency_ms=latency_ms(source_ts) if status == "built" else None,
            **fields,
        )


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
        self.stage_settings = (
            settings.builder.model_copy(update={"group_id": group_id}) if group_id else settings.builder
        )
        self.readiness = Readiness("broker", "assigned")
        self._loop: StageLoop | None = None

    # -- observable state (tests, operators) ------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return self._loop.in_flight if self._loop is not None else 0

    @property
    def rebalances(self) -> int:
        return self._loop.rebalances if self._loop is not None else 0

    def paused(self) -> frozenset[TopicPartition]:
        return self._loop.paused() if self._loop is not None else frozenset()

    def assignment(self) -> frozenset[TopicPartition]:
        return self._loop.assignment() if self._loop is not None else frozenset()

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then drain, commit and close; re-raise what stopped it."""
        pool = BuildPool(
            self.workers,
            engine_path(self.engine),
            self.settings.arc_generation_timeout_minutes * 60,
            sizing.max_builds_per_worker(self.settings, self.engine),
            batch_size=sizing.sizing(self.engine).batch_size,
            max_worker_rss_mb=self.settings.builder.max_worker_rss_mb,
        )
        try:
            await pool.check()
            async with stage_member(
                self.settings,
                "build",
                self.stage_settings,
                max_in_flight=self.limit,
                readiness=self.readiness,
                topics=[self.settings.topics.investigations],
            ) as member:
                self._loop = member.loop
                step = BuildStep(self.settings, self.engine, pool, member.loop, member.producer, member.outcomes)
                log.info(
                    "builder started: engine=%s workers=%d in-flight limit=%d group=%s",
                    self.engine,
                    self.workers,
                    self.limit,
                    self.stage_settings.group_id,
                )
                await member.loop.run(step, stop)
        finally:
            await pool.close()


async def run_builder(settings: Settings, *, engine: str | None = None, workers: int | None = None) -> None:
    """Run one builder until SIGTERM/SIGINT, serving metrics if configured."""
    service = BuilderService(settings, engine=engine, workers=workers)

    async def main(stop: asyncio.Event) -> None:
        async with serve_metrics(settings.metrics, service.readiness):
            await service.run(stop)

    await run_until_signalled(main)
    log.info("builder stopped")
