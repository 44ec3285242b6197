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

At-least-once: a record's offset is committed only after the payloads it
caused are acknowledged (or its failure is on ``arc.report``). A record that
cannot be understood or mapped is reported and skipped, never fatal.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from services.common import metrics
from services.common.config import Settings
from services.common.errors import ConfigError, RecordError, SourceUnavailableError
from services.common.kafka.clients import make_consumer, make_producer, start_client
from services.common.kafka.offsets import OffsetTracker
from services.common.kafka.topics import ensure_topics, topic_specs
from services.common.metrics_server import Readiness, serve_metrics
from services.extractor.cdc.capture.sink import transaction_topic
from services.extractor.cdc.events import (
    SIGNAL_TABLE,
    ChangeRecordError,
    is_heartbeat,
    iso_from_ms,
    parse_change,
    parse_transaction,
)
from services.extractor.cdc.grouping import ChangeGrouper, Group
from services.extractor.cdc.mapping import InvestigationMapper, UnmappableChangeError
from services.extractor.publisher import PayloadPublisher
from services.extractor.source.loader import PayloadLoader
from services.extractor.source.schema import check_source_contract, connect

log = logging.getLogger(__name__)

#: Longest wait for new records, so stop requests and due flushes are noticed promptly.
_MAX_POLL_S = 0.5
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


class CdcExtractor:
    """Consumes change records and publishes the payloads of the investigations they touch."""

    def __init__(
        self,
        settings: Settings,
        consumer: AIOKafkaConsumer,
        conn: psycopg.AsyncConnection[Any],
        loader: PayloadLoader,
        publisher: PayloadPublisher,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._conn = conn
        self._loader = loader
        self._publisher = publisher
        self._mapper = InvestigationMapper(settings.cdc.table_mappings)
        self._tx_topic = transaction_topic(settings)
        self._grouper = ChangeGrouper(settings.cdc.debounce_ms / 1000, settings.cdc.transaction_timeout_ms / 1000)
        self._tracker = OffsetTracker()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then flush what is held and commit."""
        while not stop.is_set():
            wait = self._grouper.seconds_to_next(time.monotonic())
            timeout = _MAX_POLL_S if wait is None else min(_MAX_POLL_S, wait)
            batches = await self._consumer.getmany(timeout_ms=max(1, int(timeout * 1000)))
            for records in batches.values():
                metrics.message_in(STAGE, len(records))
                for record in records:
                    await self.handle(record)
            await metrics.update_consumer_lag(STAGE, self._consumer)
            group = self._grouper.due(time.monotonic())
            if group:
                await self.flush(group)
        await self.flush(self._grouper.drain())

    def forget(self) -> None:
        """Partitions were revoked: drop in-memory state, uncommitted records are read again."""
        self._grouper.clear()
        self._tracker = OffsetTracker()

    async def handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Route one record into the grouper (reporting it first if it is bad)."""
        tp = TopicPartition(record.topic, record.partition)
        position = (tp, record.offset)
        self._tracker.start(tp, record.offset)
        now = time.monotonic()
        if record.value is None or is_heartbeat(record.value):
            self._grouper.other(position, now)
            return
        if record.topic == self._tx_topic:
            try:
                marker = parse_transaction(record.value)
            except ChangeRecordError as exc:
                self._report(record, exc)
                self._grouper.other(position, now)
                return
            if marker.status == "END":
                self._grouper.end(position, marker.tx_id, marker.event_count, now)
            else:
                self._grouper.other(position, now)
            return
        tx_id: str | None = None
        try:
            change = parse_change(record.value)
            tx_id = change.tx_id
            roots = await self._roots(change.schema, change.table, change.rows)
        except RecordError as exc:
            self._report(record, exc)
            self._grouper.change(position, tx_id, set(), None, now)
            return
        self._grouper.change(position, tx_id, roots, change.commit_ts_ms, now)

    async def _roots(self, schema: str, table: str, rows: Sequence[dict[str, Any]]) -> set[str]:
        if table == SIGNAL_TABLE:
            return set()
        mapping = self._mapper.mapping_for(schema, table)
        if mapping is None:
            raise ChangeRecordError(f"no mapping for captured table {schema}.{table} (cdc.table_mappings)")
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

    def _report(self, record: ConsumerRecord[bytes, bytes], exc: RecordError) -> None:
        where = f"{record.topic}/{record.partition}/{record.offset}"
        log.warning(
            "skipping change record %s: %s",
            where,
            exc,
            extra={"topic": record.topic, "partition": record.partition, "offset": record.offset},
        )
        self._publisher.fail(where, exc.error_class, str(exc))
        metrics.message_failed(STAGE, exc.error_class)

    async def flush(self, group: Group) -> None:
        """Re-read each touched investigation once, publish it whole, then commit what is done."""
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
                    self._publisher.fail(identifier, "AssemblyError", result.error or "cannot assemble")
                    metrics.message_failed(STAGE, "AssemblyError")
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
        for tp, offset in group.positions:
            self._tracker.done(tp, offset)
        await self._commit()

    async def _commit(self) -> None:
        points = self._tracker.commit_points()
        if not points:
            return
        try:
            await self._consumer.commit(points)
        except KafkaError as exc:
            # A rebalance took the partitions: the new owner re-reads from the last commit.
            log.warning("offset commit failed (%s); records will be read again", exc)
            return
        self._tracker.committed(points)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, readiness: Readiness) -> None:
        self.extractor: CdcExtractor | None = None
        self._readiness = readiness

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self._readiness.set("assigned", False)
        if self.extractor is not None:
            self.extractor.forget()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._readiness.set("assigned", True)
        log.info("assigned %d change topic partition(s)", len(assigned))


async def run_cdc_extractor(settings: Settings, stop: asyncio.Event) -> None:
    """Run incremental extraction until ``stop`` is set."""
    pattern = change_topic_pattern(settings)
    conn = await connect(settings.database_url.get_secret_value(), autocommit=True)
    producer = make_producer(settings.kafka)
    # Short fetch waits: a change should not sit at the broker for the default 500 ms long poll.
    consumer = make_consumer(
        settings.kafka, [], group_id=settings.cdc.group_id, metadata_max_age_ms=3000, fetch_max_wait_ms=50
    )
    try:
        loader = PayloadLoader(await check_source_contract(conn))
        await ensure_topics(settings)
        await start_client(producer, settings.kafka)
        readiness = Readiness("broker", "assigned")
        listener = _Rebalance(readiness)
        consumer.subscribe(pattern=pattern, listener=listener)
        async with serve_metrics(settings.metrics, readiness):
            await start_client(consumer, settings.kafka)
            readiness.set("broker", True)
            extractor = CdcExtractor(settings, consumer, conn, loader, PayloadPublisher(producer, settings))
            listener.extractor = extractor
            log.info("extracting changes from %s.* as group %s", settings.cdc.topic_prefix, settings.cdc.group_id)
            await extractor.run(stop)
    finally:
        await consumer.stop()
        await producer.stop()
        await conn.close()
