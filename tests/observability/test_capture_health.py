"""``arcstream cdc capture`` serves its slot's health and the age of its last event, live.

The real embedded Debezium connector on the test stack's PostgreSQL (one JVM
for the module, see :mod:`tests.extractor.cdc_support`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from services.dev.stack.state import StackState
from tests.extractor.cdc_support import CdcStack, TopicWatcher, cdc_stack
from tests.observability.scrape import scrape, value
from tests.support import until

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def capture(dev_stack: StackState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CdcStack]:
    with cdc_stack(dev_stack, tmp_path_factory) as stack:
        yield stack


def since_last_event(stack: CdcStack) -> float:
    found = value(scrape(stack.metrics_urls["capture"]), "arcstream_cdc_seconds_since_last_event")
    assert found is not None, "capture serves arcstream_cdc_seconds_since_last_event"
    return found


def test_capture_serves_its_slot_as_active(capture: CdcStack) -> None:
    slot = capture.settings.cdc.slot_name
    samples = scrape(capture.metrics_urls["capture"])
    assert value(samples, "arcstream_cdc_slot_up", slot=slot) == 1
    assert value(samples, "arcstream_cdc_slot_active", slot=slot) == 1
    for name in ("arcstream_cdc_slot_retained_wal_bytes", "arcstream_cdc_slot_lag_bytes"):
        found = value(samples, name, slot=slot)
        assert found is not None and found >= 0, name


def test_last_event_age_counts_from_the_newest_record(capture: CdcStack) -> None:
    topic = f"{capture.settings.cdc.topic_prefix}.public.vInvestigation"

    async def change_captured() -> float:
        async with TopicWatcher(capture.settings.kafka, topic) as watcher:
            with capture.conn() as conn:
                written = time.monotonic()
                conn.execute("""INSERT INTO "vInvestigation" (identifier, title) VALUES ('AGE-1', 'age')""")
            await watcher.wait_for("the captured insert", lambda: "AGE-1" in str(watcher.keys_seen()))
        return written

    written = asyncio.run(change_captured())
    # The capture process started long before the insert: an age not reset by records would exceed this.
    assert since_last_event(capture) <= time.monotonic() - written


def test_heartbeats_keep_the_age_low_while_tables_are_quiet(capture: CdcStack) -> None:
    """No change is written here: only the connector's heartbeats (every second in this stack) reset it."""
    previous = since_last_event(capture)

    async def reset() -> bool:
        nonlocal previous
        current = await asyncio.to_thread(since_last_event, capture)
        went_down, previous = current < previous, current
        return went_down

    asyncio.run(until(reset, "a heartbeat to reset the last-event age", limit_s=60))
