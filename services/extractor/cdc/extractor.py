"""``arcstream extract cdc``: turn captured row changes into whole investigation payloads.

Consumes every change topic under ``cdc.topic_prefix`` (by pattern, so tables
added to the publication later are picked up) and the transaction topic,
whichever capture produced them (Kafka Connect or ``arcstream cdc capture``).
Each change is mapped to the investigations it touches
(:mod:`services.extractor.cdc.mapping`), grouped per source transaction and
debounced (:mod:`services.extractor.cdc.grouping`); each touched investigation
is then re-read once with the snapshot's loader and published whole, or as a
tombstone when it no longer exists. Headers carry the source commit time of
the oldest change a payload includes, so later stages measure end-to-end
latency honestly.

The consumer-group loop (poll, in-flight bound, contiguous commits, rebalances,
recovery, SIGTERM) is :class:`services.common.kafka.stage.StageLoop`; this module
is the assemble step. At-least-once: a record's offset is committed only after the
payloads it caused are acknowledged. A record that cannot be understood or mapped
is a failed input (dead letter and ``failed`` outcome), never fatal. On revocation
and on stop, everything held is flushed first, so the next owner re-reads nothing
that was already published.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from aiokafka import TopicPartition

from services.common import metrics, tracing
from services.common.config import Settings
from services.common.errors import ConfigError, RecordError, SourceUnavailableError
from services.common.kafka.member import stage_member
from services.common.kafka.stage import Message, StageLoop, Step
from services.common.kafka.topics import topic_specs
from services.common.metrics_server import Readiness, serve_metrics
from services.common.outcomes import OutcomeWriter
from services.common.report import OutcomeRecord
from services.extractor.cdc.capture.sink import transaction_topic
from services.extractor.cdc.events import (
    SIGNAL_TABLE,
    ChangeRecordError,
    is_heartbeat,
    iso_from_ms,
    parse_change,
    parse_transaction,
)
from services.extractor.cdc.grouping import ChangeGrouper, Group, Position
from services.extractor.cdc.mapping import InvestigationMapper, UnmappableChangeError
from services.extractor.publisher import PayloadPublisher
from services.extractor.source.loader import PayloadLoader
from services.extractor.source.schema import check_source_contract, connect

log = logging.getLogger(__name__)

STAGE: metrics.StageName = "extract"


def change_topic_pattern(settings: Settings) -> str:
    """Every topic ``<topic_prefix>.<...>`` (change topics and the transaction topic).

    Refuses a prefix that would also match arcstream's own topics (``cdc.topic_prefix`` equal to
    ``topics.prefix``): the extractor would read its own payloads as changes.
    """
    pattern = rf"^{re.escape(settings.cdc.topic_prefix)}\..+"
    own = [spec.name for spec in topic_specs(settings) if re.match(pattern, spec.name)]
    if own:
        raise ConfigError(
            f"cdc.topic_prefix {settings.cdc.topic_prefix!r} also matches arcstream's topics ({', '.join(own)}): "
            "choose a prefix different from topics.prefix"
        )
    return pattern


class ChangeStep(Step):
    """Maps change records to investigations, groups them, and publishes each touched investigation whole."""

    def __init__(
        self,
        settings: Settings,
        loop: StageLoop,
        conn: psycopg.AsyncConnection[Any],
        loader: PayloadLoader,
        publisher: PayloadPublisher,
        outcomes: OutcomeWriter,
    ) -> None:
        self._settings = settings
        self._loop = loop
        self._conn = conn
        self._loader = loader
        self._publisher = publisher
        self._outcomes = outcomes
        self._mapper = InvestigationMapper(settings.cdc.table_mappings)
        self._tx_topic = transaction_topic(settings)
        self._group = loop.settings.group_id
        self._grouper = ChangeGrouper(settings.cdc.debounce_ms / 1000, settings.cdc.transaction_timeout_ms / 1000)
        #: Records held by the grouper, by position: done when their group is published.
        self._held: dict[Position, Message] = {}
        #: One flush at a time (the loop's turn and a revocation may both flush).
        self._flushing = asyncio.Lock()

    async def take(self, message: Message) -> None:
        """Route one record into the grouper (a bad one is its own failure first)."""
        if message.recovered is not None:  # its failure outcome was written before a restart
            self._loop.done(message)
            return
        position = (message.tp, message.offset)
        self._held[position] = message
        now = time.monotonic()
        if message.value is None or is_heartbeat(message.value):
            self._grouper.other(position, now)
            return
        if message.tp.topic == self._tx_topic:
            try:
                marker = parse_transaction(message.value)
            except ChangeRecordError as exc:
                await self._fail(message, exc)
                self._grouper.other(position, now)
                return
            if marker.status == "END":
                self._grouper.end(position, marker.tx_id, marker.event_count, now)
            else:
                self._grouper.other(position, now)
            return
        tx_id: str | None = None
        try:
            change = parse_change(message.value)
            tx_id = change.tx_id
            roots = await self._roots(change.schema, change.table, change.rows)
        except RecordError as exc:
            await self._fail(message, exc)
            self._grouper.change(position, tx_id, set(), None, now)  # still counts for its transaction
            return
        self._grouper.change(position, tx_id, roots, change.commit_ts_ms, now)

    def poll_timeout_s(self) -> float | None:
        return self._grouper.seconds_to_next(time.monotonic())

    async def tick(self) -> None:
        group = self._grouper.due(time.monotonic())
        if group:
            await self.flush(group)

    async def partitions_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        await self.flush(self._grouper.drain())

    def partitions_lost(self, partitions: frozenset[TopicPartition]) -> None:
        self._grouper.clear()
        self._held.clear()

    async def stopping(self) -> None:
        await self.flush(self._grouper.drain())

    async def _roots(self, schema: str, table: str, rows: Sequence[dict[str, Any]]) -> set[str]:
        if table == SIGNAL_TABLE:
            return set()
        mapping = self._mapper.mapping_for(schema, table)
        if mapping is None:
            raise ChangeRecordError(
                f"no mapping for captured table {schema}.{table} (cdc.table_mappings)", code="unmapped-table"
            )
        roots: set[str] = set()
        for row in rows:
            roots |= await self._mapper.investigations(self._conn, mapping, row)
        if not roots and mapping.query is not None:
            raise UnmappableChangeError(
                f"{schema}.{table}: the mapping query found no investigation for this row (cdc.table_mappings)"
            )
        if not roots:
            raise UnmappableChangeError(
                f"{schema}.{table}: column {mapping.column!r} is empty in this row (if it changed by an UPDATE "
                "or DELETE, the old row is missing: the table needs REPLICA IDENTITY FULL, see 'arcstream cdc setup')"
            )
        return roots

    async def _fail(self, message: Message, exc: RecordError) -> None:
        """A change record that cannot be used: its dead letter and ``failed`` outcome, right away."""
        where = f"{message.tp.topic}/{message.tp.partition}/{message.offset}"
        outcome = OutcomeRecord(
            identifier=where, stage="extract", status="failed", error_code=exc.code, error_message=str(exc)
        )
        async with self._loop.finishing(message):
            await self._outcomes.fail(
                outcome, key=message.key, value=message.value, headers=message.raw_headers, origin=message.origin
            )

    async def flush(self, group: Group) -> None:
        """Re-read each touched investigation once, publish it whole, then mark its records done."""
        async with self._flushing:
            attributes = {"arcstream.investigations": len(group.roots)}
            with tracing.consuming_batch("process cdc transaction", self._group, len(group.positions), attributes):
                await self._publish(group)

    async def _publish(self, group: Group) -> None:
        identifiers = sorted(group.roots)
        published: list[str] = []
        batch = self._settings.db_batch_size
        for start in range(0, len(identifiers), batch):
            chunk = identifiers[start : start + batch]
            try:
                results = await self._loader.load_payloads(self._conn, chunk)
            except psycopg.OperationalError as exc:
                # Fatal: nothing of this group is committed, so a restart re-reads it.
                raise SourceUnavailableError(f"the database went away while re-reading investigations: {exc}") from exc
            for identifier in chunk:
                ts_ms = group.roots[identifier]
                source_ts = iso_from_ms(ts_ms) if ts_ms is not None else None
                result = results.get(identifier)
                if result is not None and result.payload_json is None:
                    self._publisher.fail(identifier, "assembly-failed", result.error or "cannot assemble")
                    metrics.message_failed(STAGE, "assembly-failed")
                    continue
                await self._publisher.publish(identifier, result.payload_json if result else None, source_ts=source_ts)
                published.append(identifier)
        await self._publisher.flush()
        now_ms = time.time() * 1000
        for identifier in published:
            ts_ms = group.roots[identifier]
            if ts_ms is not None:
                metrics.observe_latency(STAGE, max(0.0, now_ms - ts_ms) / 1000)
        metrics.message_out(STAGE, len(published))
        log.debug("published %d investigation(s) from %d change record(s)", len(published), len(group.positions))
        for position in group.positions:
            message = self._held.pop(position, None)
            if message is not None:
                self._loop.done(message)


async def run_cdc_extractor(settings: Settings, stop: asyncio.Event) -> None:
    """Run incremental extraction until ``stop`` is set."""
    pattern = change_topic_pattern(settings)
    conn = await connect(settings.database_url.get_secret_value(), autocommit=True)
    try:
        loader = PayloadLoader(await check_source_contract(conn))
        readiness = Readiness("broker", "assigned")
        async with (
            serve_metrics(settings.metrics, readiness),
            stage_member(
                settings,
                STAGE,
                settings.cdc,
                max_in_flight=settings.cdc.max_in_flight,
                readiness=readiness,
                pattern=pattern,
                # Short fetch waits: a change should not sit at the broker for the default 500 ms long poll.
                metadata_max_age_ms=3000,
                fetch_max_wait_ms=50,
            ) as member,
        ):
            publisher = PayloadPublisher(member.producer, settings)
            step = ChangeStep(settings, member.loop, conn, loader, publisher, member.outcomes)
            log.info("extracting changes from %s.* as group %s", settings.cdc.topic_prefix, settings.cdc.group_id)
            await member.loop.run(step, stop)
    finally:
        await conn.close()
