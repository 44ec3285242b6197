"""``arcstream extract snapshot``: one consistent full export of the source database.

The whole run is one read-only REPEATABLE READ transaction, so every payload
reflects the same instant. Investigations stream through a server-side cursor
``db_batch_size`` rows at a time; each batch's children come from one query
per relation. The run is framed by run markers on every partition (see
:mod:`services.common.records`) so downstream stages know exactly when it is
complete and how many payloads it holds.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import secrets
import sys
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import aclosing, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer
from psycopg import sql
from psycopg.rows import dict_row
from tqdm import tqdm

from services.common import metrics, tracing
from services.common.config import Settings
from services.common.kafka.capabilities import broker_capabilities
from services.common.kafka.clients import make_producer, start_client
from services.common.kafka.topics import ensure_topics
from services.common.records import H_KIND, H_RUN_ID, RunMarker, dumps, make_headers
from services.common.report import utc_now_iso
from services.extractor.publisher import PayloadPublisher
from services.extractor.source.loader import Children, PayloadLoader, investigation_query
from services.extractor.source.schema import (
    check_source_contract,
    connect,
    optional_columns_found,
    relation_columns,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotSummary:
    """What one snapshot run did (printed as JSON at the end)."""

    run_id: str
    expected: int
    published: int
    failed: int
    duration_s: float
    rate_per_s: float
    partitions: dict[int, int]
    #: Extraction processes used (one per shard of the snapshot).
    processes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def new_run_id() -> str:
    """Sortable, unique: ``snapshot-20261122T081500Z-1a2b``."""
    return f"snapshot-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class InProcessShard:
    """What the coordinator lends the shard it extracts itself."""

    producer: AIOKafkaProducer
    #: Resolves once the run-start markers are acknowledged.
    run_started: asyncio.Future[list[int]]
    #: The coordinator's connection, already inside the exported snapshot.
    conn: psycopg.AsyncConnection
    #: Columns of the source relations, as the coordinator's contract check found them.
    columns: dict[str, set[str]]


@dataclass
class ShardResult:
    """What one shard published (per partition) and how many investigations failed."""

    published_per_partition: dict[int, int]
    failed: int


ProgressCallback = Callable[[int], None]


async def run_snapshot(
    settings: Settings,
    *,
    run_id: str | None = None,
    progress: bool | None = None,
    workers: int = 1,
    connect_kwargs: dict[str, Any] | None = None,
) -> SnapshotSummary:
    """Export every investigation to ``arc.investigations``; return the run summary.

    With ``workers`` > 1 the investigations are split into that many shards by a
    hash of the identifier, each extracted by its own process reading the *same*
    snapshot (``pg_export_snapshot``): the work is CPU-bound Python, so processes
    are what use more cores. ``connect_kwargs`` go to the database connections
    (tests pass cursor factories that count statements).
    """
    run_id = run_id or new_run_id()
    started = time.monotonic()
    started_at = utc_now_iso()
    connect_kwargs = connect_kwargs or {}
    conn = await connect(settings.database_url.get_secret_value(), **connect_kwargs)
    try:
        columns = await check_source_contract(conn)
        log.debug("source contract v2 columns found: %s", optional_columns_found(columns) or "none (contract v1)")
        await conn.rollback()
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        await conn.set_read_only(True)
        cursor = await conn.execute('SELECT count(*), pg_export_snapshot() FROM "vInvestigation"')
        expected, snapshot_id = await cursor.fetchone() or (0, "")
        idempotent = (await broker_capabilities(settings.kafka)).idempotent_producer
        producer = make_producer(settings.kafka, idempotent=idempotent)

        async def start_run() -> list[int]:
            await ensure_topics(settings)
            await start_client(producer, settings.kafka)
            partitions = sorted(await producer.partitions_for(settings.topics.investigations))
            await _send_markers(producer, settings, partitions, "run-start", run_id, expected, started_at)
            return partitions

        # Topics, producer and run-start markers are set up while the first batch is read.
        run_started = asyncio.ensure_future(start_run())
        try:
            show = sys.stderr.isatty() if progress is None else progress
            with tqdm(total=expected, unit="inv", desc="snapshot", disable=not show) as bar:

                def advance(count: int) -> None:
                    bar.update(count)
                    metrics.message_in("extract", count)
                    metrics.mark_progress("extract")

                shards = shard_count(workers, expected)
                if shards == 1:
                    shard = InProcessShard(producer, run_started, conn, columns)
                    results = [await extract_shard(settings, snapshot_id, 0, 1, run_id, connect_kwargs, advance, shard)]
                else:
                    await run_started
                    results = await _run_shards(settings, snapshot_id, shards, run_id, advance)
            partitions = await run_started
            per_partition: Counter[int] = Counter()
            for result in results:
                per_partition.update(result.published_per_partition)
            failed = sum(result.failed for result in results)
            metrics.message_out("extract", sum(per_partition.values()))
            if failed:
                metrics.message_failed("extract", "assembly-failed", failed)
            await _send_markers(
                producer,
                settings,
                partitions,
                "run-end",
                run_id,
                expected,
                started_at,
                per_partition=dict(per_partition),
                failed=failed,
            )
        finally:
            if not run_started.done():
                run_started.cancel()
            await asyncio.gather(run_started, return_exceptions=True)
            await producer.stop()
    finally:
        await conn.close()
    duration = time.monotonic() - started
    return SnapshotSummary(
        run_id=run_id,
        expected=expected,
        published=sum(per_partition.values()),
        failed=failed,
        duration_s=round(duration, 3),
        rate_per_s=round(expected / duration, 1) if duration > 0 else 0.0,
        partitions=dict(sorted(per_partition.items())),
        processes=shards,
    )


async def extract_shard(
    settings: Settings,
    snapshot_id: str,
    shard: int,
    shards: int,
    run_id: str,
    connect_kwargs: dict[str, Any],
    on_progress: ProgressCallback,
    in_process: InProcessShard | None = None,
) -> ShardResult:
    """Extract one shard of the investigations from the exported snapshot.

    A shard process opens its own connections and producer; the coordinator's
    own shard (``in_process``) uses the coordinator's, and publishes nothing
    before its run-start markers are acknowledged.
    """
    conn = in_process.conn if in_process else await _join_snapshot(settings, snapshot_id, connect_kwargs)
    children_conn = await _join_snapshot(settings, snapshot_id, connect_kwargs)
    if in_process is not None:
        producer = in_process.producer
    else:
        producer = make_producer(
            settings.kafka, idempotent=(await broker_capabilities(settings.kafka)).idempotent_producer
        )
    try:
        loader = PayloadLoader(in_process.columns if in_process else await relation_columns(conn))
        if in_process is None:
            await start_client(producer, settings.kafka)
        publisher = PayloadPublisher(producer, settings, run_id)
        batches = _batches(conn, children_conn, loader, settings.db_batch_size, shard, shards)
        with collection_between_batches() as collect:
            async with aclosing(batches):
                async for batch, children in batches:
                    if in_process is not None:
                        await in_process.run_started
                    extracted_at = utc_now_iso()
                    batch_attributes = {"arcstream.run.id": run_id, "arcstream.batch.size": len(batch)}
                    with tracing.span("snapshot batch", batch_attributes):
                        for result in loader.assemble_batch(batch, children):
                            if result.payload_json is not None:
                                await publisher.publish(
                                    result.identifier, result.payload_json, extracted_at=extracted_at
                                )
                            else:
                                log.warning(
                                    "investigation not extracted: %s",
                                    result.error,
                                    extra={"identifier": result.identifier, "run_id": run_id},
                                )
                                publisher.fail(result.identifier, "assembly-failed", result.error or "invalid rows")
                    collect()
                    on_progress(len(batch))
        await publisher.flush()
        return ShardResult(dict(publisher.published_per_partition), publisher.failed)
    finally:
        await children_conn.close()
        if in_process is None:
            await producer.stop()
            await conn.close()


_progress_queue: Any = None


def _init_shard_process(queue: Any) -> None:
    """Pool initializer: keep the progress queue (queues cannot travel as task arguments); tracing as configured."""
    global _progress_queue
    _progress_queue = queue
    tracing.setup(tracing.EXTRACTOR)


def _shard_process(settings: Settings, snapshot_id: str, shard: int, shards: int, run_id: str) -> ShardResult:
    """Entry point of a shard worker process (its spans are exported before it returns: workers skip ``atexit``)."""
    try:
        return asyncio.run(extract_shard(settings, snapshot_id, shard, shards, run_id, {}, _progress_queue.put))
    finally:
        tracing.flush()


async def _run_shards(
    settings: Settings, snapshot_id: str, workers: int, run_id: str, on_progress: ProgressCallback
) -> list[ShardResult]:
    """Run every shard in its own process; relay their progress while waiting."""
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_shard_process, initargs=(queue,)) as pool:
        futures = [
            loop.run_in_executor(pool, _shard_process, settings, snapshot_id, shard, workers, run_id)
            for shard in range(workers)
        ]
        done = asyncio.gather(*futures)
        while not done.done():
            await asyncio.wait([done], timeout=0.2)
            while not queue.empty():
                on_progress(queue.get_nowait())
        return list(done.result())


#: Below this many investigations per extra process, starting it (imports, connections) costs more than it saves.
MIN_INVESTIGATIONS_PER_SHARD = 5_000


def shard_count(workers: int, expected: int) -> int:
    """How many processes to use: ``workers`` at most, one per ``MIN_INVESTIGATIONS_PER_SHARD``."""
    return max(1, min(workers, expected // MIN_INVESTIGATIONS_PER_SHARD))


#: Objects allocated and not freed since the last collection above which a batch boundary collects.
UNCOLLECTED_OBJECTS_LIMIT = 200_000


@contextmanager
def collection_between_batches() -> Iterator[Callable[[], None]]:
    """Garbage collection only between batches, and only when garbage has piled up.

    A batch allocates hundreds of thousands of short-lived dicts and tuples. They are
    freed by reference counting (a payload holds no cycles), but the automatic
    collector walks the live ones again and again: it took a third of a snapshot's
    time. Instead the caller offers a collection at each batch boundary, which runs
    only when more objects were allocated than freed since the last one
    (:data:`UNCOLLECTED_OBJECTS_LIMIT`), so cycles (exceptions, futures) stay bounded.
    Start-up objects are frozen out of every pass.
    """
    was_enabled = gc.isenabled()
    gc.freeze()
    gc.disable()

    def collect_if_garbage_piled_up() -> None:
        if gc.get_count()[0] > UNCOLLECTED_OBJECTS_LIMIT:
            gc.collect()

    try:
        yield collect_if_garbage_piled_up
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()


async def _join_snapshot(
    settings: Settings, snapshot_id: str, connect_kwargs: dict[str, Any]
) -> psycopg.AsyncConnection:
    """A connection that sees exactly the coordinator's snapshot (``SET TRANSACTION SNAPSHOT``)."""
    conn = await connect(settings.database_url.get_secret_value(), **connect_kwargs)
    await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
    await conn.set_read_only(True)
    await conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_id)))
    return conn


async def _batches(
    conn: psycopg.AsyncConnection,
    children_conn: psycopg.AsyncConnection,
    loader: PayloadLoader,
    size: int,
    shard: int,
    shards: int,
) -> AsyncGenerator[tuple[list[dict[str, Any]], Children]]:
    """Batches of investigation rows with their children; the next batch's children are
    read on the second connection while the caller works on the current batch.

    The caller's work is CPU-bound and rarely yields to the event loop, so the
    prefetch is given one turn of the loop to send its queries before the batch
    is handed over: the database then answers them while the caller assembles.
    """

    def prefetch(rows: list[dict[str, Any]]) -> asyncio.Future[Children]:
        return asyncio.ensure_future(loader.fetch_children(children_conn, [row["identifier"] for row in rows]))

    async with conn.cursor(name="arcstream_snapshot", row_factory=dict_row) as investigations:
        investigations.itersize = size
        await investigations.execute(investigation_query(shard, shards, loader.investigation_columns))
        batch = await investigations.fetchmany(size)
        pending = prefetch(batch)
        try:
            while batch:
                following = await investigations.fetchmany(size)
                children = await pending
                if following:
                    pending = prefetch(following)
                    await asyncio.sleep(0)
                yield batch, children
                batch = following
        finally:
            # The caller gave up (an error): no prefetch left running on a connection about to close.
            pending.cancel()


async def _send_markers(
    producer: Any,
    settings: Settings,
    partitions: list[int],
    kind: str,
    run_id: str,
    expected: int,
    started_at: str,
    *,
    per_partition: dict[int, int] | None = None,
    failed: int = 0,
) -> None:
    """One marker per partition, all sent at once, all acknowledged before returning."""
    acknowledgements = []
    for partition in partitions:
        marker = RunMarker(
            kind=kind,  # type: ignore[arg-type]
            run_id=run_id,
            partition=partition,
            partitions=len(partitions),
            expected=expected,
            published=(per_partition or {}).get(partition, 0),
            failed=failed,
            started_at=started_at,
            finished_at=utc_now_iso() if kind == "run-end" else None,
        )
        acknowledgements.append(
            await producer.send(
                settings.topics.investigations,
                value=dumps(marker.model_dump(mode="json")),
                key=marker.key,
                partition=partition,
                headers=make_headers({H_KIND: kind, H_RUN_ID: run_id}),
            )
        )
    await asyncio.gather(*acknowledgements)
