"""Publish investigation payloads (or tombstones) and extract outcomes to Kafka.

Shared by the snapshot and the CDC extractor. Sends are pipelined but bounded
(``kafka.max_in_flight_sends``) so memory stays flat however large the
database is; a send that fails (e.g. a payload over the broker's limit)
becomes a failed outcome on ``arc.report``, never a lost investigation.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from services.common import tracing
from services.common.config import Settings
from services.common.errors import ErrorCode
from services.common.outcomes import OutcomeWriter
from services.common.payload import PAYLOAD_SCHEMA_VERSION
from services.common.records import (
    H_EXTRACTED_AT,
    H_KIND,
    H_RUN_ID,
    H_SCHEMA_VERSION,
    H_SOURCE_TS,
    Headers,
    make_headers,
)
from services.common.report import OutcomeRecord, utc_now_iso

log = logging.getLogger(__name__)


class PayloadPublisher:
    """Keyed, bounded, acknowledged publishing of payloads and outcome records."""

    def __init__(self, producer: AIOKafkaProducer, settings: Settings, run_id: str | None = None) -> None:
        self._producer = producer
        self._topics = settings.topics
        self._run_id = run_id
        self._slots = asyncio.Semaphore(settings.kafka.max_in_flight_sends)
        self._pending: set[asyncio.Future[RecordMetadata]] = set()
        self._failures: list[OutcomeRecord] = []
        self._outcomes = OutcomeWriter(producer, settings.topics, "extract", metered=False)
        self._last_headers: tuple[tuple[str | None, str] | None, Headers] = (None, [])
        self._span_attributes = {"arcstream.run.id": run_id} if run_id else None
        #: Payloads and tombstones acknowledged, per partition of ``arc.investigations``.
        self.published_per_partition: Counter[int] = Counter()
        self.failed = 0

    async def publish(
        self,
        identifier: str,
        payload_json: bytes | None,
        *,
        source_ts: str | None = None,
        extracted_at: str | None = None,
    ) -> None:
        """Queue a validated payload (``None``: a tombstone) keyed by ``identifier``; waits only for a free slot.

        ``extracted_at`` (default: now) is when the rows were read; a snapshot passes
        one per batch, whose payloads then share one header list. With tracing on, each
        payload starts its own trace, linked to the current span (batch or transaction).
        """
        topic = self._topics.investigations
        publish = tracing.publish(topic, identifier, new_trace=True, attributes=self._span_attributes)
        headers = publish.headers(self._headers(source_ts, extracted_at or utc_now_iso()))
        await self._slots.acquire()
        try:
            future = await self._producer.send(topic, value=payload_json, key=identifier.encode(), headers=headers)
        except Exception as exc:
            self._slots.release()
            publish.failed(exc)
            self._record_send_failure(identifier, exc)
            return
        self._pending.add(future)
        future.add_done_callback(lambda done: self._on_done(identifier, done, publish))

    def _headers(self, source_ts: str | None, extracted_at: str) -> Headers:
        """Payload headers; the previous list is reused while the timestamps stay the same (never mutated)."""
        cached_for, headers = self._last_headers
        if cached_for != (source_ts, extracted_at):
            headers = make_headers(
                {
                    H_KIND: "payload",
                    H_SCHEMA_VERSION: PAYLOAD_SCHEMA_VERSION,
                    H_RUN_ID: self._run_id,
                    H_EXTRACTED_AT: extracted_at,
                    H_SOURCE_TS: source_ts,
                }
            )
            self._last_headers = ((source_ts, extracted_at), headers)
        return headers

    def _on_done(self, identifier: str, future: asyncio.Future[RecordMetadata], publish: tracing.Publish) -> None:
        self._pending.discard(future)
        self._slots.release()
        exc = future.exception()
        if exc is None:
            sent = future.result()
            self.published_per_partition[sent.partition] += 1
            publish.acknowledged(sent.partition, sent.offset)
        else:
            publish.failed(exc)
            self._record_send_failure(identifier, exc)

    def _record_send_failure(self, identifier: str, exc: BaseException) -> None:
        log.error("could not publish %s: %s", identifier, exc, extra={"identifier": identifier})
        self.fail(identifier, "publish-failed", f"publishing the payload failed: {type(exc).__name__}: {exc}")

    def fail(self, identifier: str, code: ErrorCode, message: str) -> None:
        """Record that ``identifier`` could not be extracted (reported at :meth:`flush`)."""
        self.failed += 1
        self._failures.append(
            OutcomeRecord(
                identifier=identifier,
                stage="extract",
                status="failed",
                run_id=self._run_id,
                error_code=code,
                error_message=message,
            )
        )

    async def flush(self) -> None:
        """Wait until every queued payload is acknowledged, then write and acknowledge failure records."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        failures, self._failures = self._failures, []
        if failures:
            await asyncio.gather(*(self._outcomes.report(record) for record in failures))

    @property
    def published(self) -> int:
        return sum(self.published_per_partition.values())
