"""``arcstream cdc capture``: run the embedded connector until asked to stop.

Serves ``/metrics``, ``/healthz`` and ``/readyz`` (ready once the first batch
reached the broker) when ``metrics.port`` is set; ``/metrics`` includes the
replication slot's health and the age of the last event (:mod:`.health`).

The captured tables are the publication's (``arcstream cdc setup`` decides
them), so capture and setup cannot disagree. Topics for those tables and the
transaction topic are created up front, so a consumer subscribed by pattern
sees them before the first change arrives.
"""

from __future__ import annotations

import asyncio
import logging

from services.common.config import Settings
from services.common.errors import SourceContractError
from services.common.metrics_server import serve_metrics
from services.extractor.cdc.capture.engine import CaptureEngine, CaptureFailedError
from services.extractor.cdc.capture.health import LastEvent, capture_health
from services.extractor.cdc.capture.position import StaleCdcPositionError, check_position, stale_from_failure
from services.extractor.cdc.capture.properties import connector_properties, offsets_file
from services.extractor.cdc.capture.setup import publication_tables
from services.extractor.cdc.capture.sink import TopicSink, change_topic, transaction_topic
from services.extractor.source.schema import connect

log = logging.getLogger(__name__)


async def captured_tables(settings: Settings) -> list[str]:
    """``schema.table`` of the tables in the configured publication; fail if there are none.

    Also fails (one line naming the recovery) when the stored position cannot be resumed,
    so a stale position is reported before the JVM starts rather than as Debezium's exception.
    """
    conn = await connect(settings.database_url.get_secret_value(), autocommit=True)
    try:
        tables = await publication_tables(conn, settings.cdc.publication_name)
        position = await check_position(conn, settings)
    finally:
        await conn.close()
    if not tables:
        raise SourceContractError(
            f"publication {settings.cdc.publication_name!r} is missing or empty: run 'arcstream cdc setup' first"
        )
    if not position.resumable:
        raise StaleCdcPositionError(position.message)
    log.info("%s", position.message)
    return tables


async def run_capture(settings: Settings, tables: list[str], stop: asyncio.Event) -> int:
    """Capture ``tables`` (from :func:`captured_tables`) until ``stop`` is set; return records published.

    The JVM must already be running (:func:`services.extractor.cdc.capture.jvm.start_jvm`).
    """
    offsets = offsets_file(settings)
    await asyncio.to_thread(offsets.parent.mkdir, parents=True, exist_ok=True)
    sink = TopicSink(settings)

    def readiness() -> dict[str, bool]:
        # Streaming once the first batch (at the latest a heartbeat) reached the broker.
        return {"broker": True, "streaming": sink.published > 0}

    try:
        await sink.start()
        await sink.ensure_topics([transaction_topic(settings), *(change_topic(settings, t) for t in tables)])
        last_event = LastEvent()
        engine = CaptureEngine(connector_properties(settings, tables), last_event.tracking(sink.publish))
        log.info("capturing %s from slot %s (offsets in %s)", ", ".join(tables), settings.cdc.slot_name, offsets)
        async with serve_metrics(settings.metrics, readiness), capture_health(settings, last_event):
            running = asyncio.create_task(engine.run())
            stopping = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not running.done():
                    await engine.stop()
                await running
            except CaptureFailedError as exc:
                stale = stale_from_failure(settings, str(exc))
                if stale is None:
                    raise
                raise stale from exc
            finally:
                stopping.cancel()
        if not stop.is_set():
            raise CaptureFailedError("the connector stopped on its own; see the log above")
        log.info("capture stopped after %d records", sink.published)
        return sink.published
    finally:
        await sink.stop()
