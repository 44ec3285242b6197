"""The one writer of report and dead-letter records, and their headers.

Every stage ends each input version in exactly one outcome on ``arc.report``
(``OutcomeRecord``), and a failed input also as a dead letter on ``arc.dlq``
(the input unchanged, the reason in headers). Both are written here and only
here, so every stage writes them the same way: one JSON shape (``exclude_none``),
one header set, one cut of long messages in headers, one latency rule, and the
origin headers (topic, partition, offset, consumer group) that let a restarted
member find outcomes it already wrote (:mod:`services.common.kafka.recovery`).

Writes are acknowledged before they return: an input counts as handled only
when its outcome is durable. The dead letter goes first, so an outcome never
names a dead letter that is not there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from services.common import metrics
from services.common.config import TopicSettings
from services.common.errors import ErrorCode
from services.common.records import (
    ERROR_HEADERS,
    H_CONTENT_HASH,
    H_ERROR_CODE,
    H_ERROR_MESSAGE,
    H_ERROR_STAGE,
    H_KIND,
    H_ORIGIN_GROUP,
    H_ORIGIN_OFFSET,
    H_ORIGIN_PARTITION,
    H_ORIGIN_TOPIC,
    H_RUN_ID,
    Headers,
    dumps,
    make_headers,
)
from services.common.report import NO_OUTPUT, OutcomeRecord, parse_utc

log = logging.getLogger(__name__)

#: Error messages in dead-letter headers are cut to this many characters (the report keeps them whole).
MAX_HEADER_MESSAGE = 1000


@dataclass(frozen=True)
class Origin:
    """Where an input was read: what a dead letter is replayed to, and what recovery matches."""

    topic: str
    partition: int
    offset: int


def latency_ms(source_ts: str | None, now: datetime | None = None) -> float | None:
    """Milliseconds from a source time (ISO 8601) to ``now``; the one rule every stage uses.

    A timestamp without offset is UTC (Debezium and our headers write UTC); a clock
    skew that would make it negative counts as 0; an unreadable one is unknown (``None``).
    """
    then = parse_utc(source_ts) if source_ts else None
    if then is None:
        return None
    return max(0.0, ((now or datetime.now(UTC)) - then).total_seconds() * 1000)


class OutcomeWriter:
    """Writes one stage's outcomes and dead letters through a shared producer."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topics: TopicSettings,
        stage: metrics.StageName,
        group: str | None = None,
        *,
        metered: bool = True,
    ) -> None:
        """``metered=False``: another process counts these outcomes (the snapshot coordinator counts its shards')."""
        self._producer = producer
        self._metered = metered
        self._topics = topics
        self.stage = stage
        self.group = group
        #: Report partition -> one past the highest offset this writer had acknowledged.
        self.high_water: dict[int, int] = {}

    async def report(self, outcome: OutcomeRecord, origin: Origin | None = None) -> None:
        """Write ``outcome`` to the report topic and wait for the acknowledgement."""
        headers = make_headers(
            {
                H_KIND: "outcome",
                H_RUN_ID: outcome.run_id,
                H_CONTENT_HASH: outcome.content_hash,
                H_ORIGIN_TOPIC: origin.topic if origin else None,
                H_ORIGIN_PARTITION: origin.partition if origin else None,
                H_ORIGIN_OFFSET: origin.offset if origin else None,
                H_ORIGIN_GROUP: self.group if origin else None,
            }
        )
        value = dumps(outcome.model_dump(mode="json", exclude_none=True))
        ack = await self._producer.send(
            self._topics.report, key=outcome.identifier.encode(), value=value, headers=headers
        )
        sent = await ack
        self.high_water[sent.partition] = max(self.high_water.get(sent.partition, 0), sent.offset + 1)
        if not self._metered:
            return
        metrics.record_outcome(outcome)
        if outcome.status == "failed":
            metrics.message_failed(self.stage, outcome.error_code or "internal-error")
        elif outcome.status not in NO_OUTPUT:
            metrics.message_out(self.stage)

    async def dead_letter(
        self,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
        origin: Origin,
        code: ErrorCode,
        message: str,
    ) -> None:
        """Write the failed input unchanged to the DLQ, the reason and origin in headers; wait for the ack."""
        dlq_headers: Headers = [(k, v) for k, v in headers if k not in ERROR_HEADERS] + make_headers(
            {
                H_ERROR_CODE: code,
                H_ERROR_MESSAGE: message[:MAX_HEADER_MESSAGE],
                H_ERROR_STAGE: self.stage,
                H_ORIGIN_TOPIC: origin.topic,
                H_ORIGIN_PARTITION: origin.partition,
                H_ORIGIN_OFFSET: origin.offset,
                H_ORIGIN_GROUP: self.group,
            }
        )
        ack = await self._producer.send(self._topics.dlq, key=key, value=value, headers=dlq_headers)
        await ack
        metrics.dead_letter(self.stage, code)

    async def fail(
        self,
        outcome: OutcomeRecord,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
        origin: Origin,
    ) -> None:
        """A failed input: its dead letter, then its ``failed`` outcome (each acknowledged)."""
        code: ErrorCode = outcome.error_code or "internal-error"
        log.warning(
            "%s failed: %s: %s",
            self.stage,
            code,
            outcome.error_message,
            extra={"identifier": outcome.identifier, "partition": origin.partition, "offset": origin.offset},
        )
        await self.dead_letter(
            key=key, value=value, headers=headers, origin=origin, code=code, message=outcome.error_message or ""
        )
        await self.report(outcome, origin)
