"""Harvests as the real API needs them: one per run even with two uploaders, closed even when the
extractor died, a report per target that nothing else changes, and a misconfigured uploader that
stops instead of dead-lettering the topic."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from services.common import metrics
from services.common.config import Settings
from services.common.kafka.reading import read_topic
from services.common.records import H_ORIGIN_OFFSET, H_ORIGIN_PARTITION, header_dict, loads
from services.common.report import OutcomeRecord
from services.ops.run_report import ReportScope, decide, run_report
from tests.support import until

from .conftest import (
    ArcsTopic,
    StoreProcess,
    arc_document,
    outcomes,
    running_uploader,
    spawn_uploader,
    upload_settings,
)


def harvests_closed(store: StoreProcess, count: int) -> Callable[[], Awaitable[bool]]:
    async def closed() -> bool:
        harvests = store.get("/v3/harvests")
        return len(harvests) == count and all(h["status"] != "RUNNING" for h in harvests)

    return closed


def test_two_uploaders_one_killed_mid_run_make_exactly_one_harvest_with_every_arc(
    make_settings: Callable[..., Settings],
    make_store: Callable[..., StoreProcess],
    arcs_topic: ArcsTopic,
    tmp_path: Path,
) -> None:
    store = make_store("--latency-ms", "30")
    settings = upload_settings(make_settings, store)
    documents = [arc_document(f"scale-{i:03d}") for i in range(150)]

    async def scenario() -> None:
        run_id, _ = await arcs_topic.snapshot_run(documents)
        first = spawn_uploader(settings, tmp_path / "first.log")
        second = spawn_uploader(settings, tmp_path / "second.log")
        try:

            async def some_delivered() -> bool:
                return len(await outcomes(settings)) >= 30

            await until(some_delivered, what="the first ARCs delivered by the pair")
            first.send_signal(signal.SIGKILL)
            first.wait()
            await until(harvests_closed(store, 1), what="the harvest closed by the survivor", limit_s=180)
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=60) == 0
        finally:
            for process in (first, second):
                if process.poll() is None:
                    process.kill()

        [harvest] = store.get("/v3/harvests")
        assert harvest["status"] == "COMPLETED"
        assert harvest["statistics"]["arcs_submitted"] == len(documents)
        records = await read_topic(settings.kafka, settings.topics.report)
        mine = [(OutcomeRecord.model_validate(loads(r.value)), header_dict(r.headers)) for r in records if r.value]
        uploads = [(o, h) for o, h in mine if o.run_id == run_id and o.stage == "upload"]
        per_version = Counter((o.identifier, h[H_ORIGIN_PARTITION], h[H_ORIGIN_OFFSET]) for o, h in uploads)
        assert set(per_version.values()) == {1}, "one outcome per ARC message, also across the kill"
        decided = decide([o for o, _ in uploads])
        assert Counter(o.status for o in decided.values()) == {"created": len(documents)}
        assert {o.harvest_id for o in decided.values()} == {harvest["harvest_id"]}

    asyncio.run(scenario())


def test_a_run_whose_end_never_comes_is_cancelled_after_the_idle_timeout(
    make_settings: Callable[..., Settings], make_store: Callable[..., StoreProcess], arcs_topic: ArcsTopic
) -> None:
    store = make_store()
    settings = upload_settings(make_settings, store, run_idle_timeout_s=2.0)

    async def scenario() -> None:
        # The extractor dies after the run-start markers and three payloads: no run-end ever comes.
        await arcs_topic.markers("run-start", "run-dead", 10)
        await arcs_topic.arcs([arc_document(f"dead-{i}") for i in range(3)], run_id="run-dead")
        async with running_uploader(settings):
            await until(harvests_closed(store, 1), what="the abandoned harvest closed")
        [harvest] = store.get("/v3/harvests")
        assert harvest["status"] == "CANCELLED"
        report = await run_report(settings, ReportScope.from_settings(settings, "run-dead"))
        [entry] = report["schema:result"]
        assert entry["fairagro:harvestStatus"] == "CANCELLED"
        assert "run_idle_timeout_s" in entry["fairagro:harvestError"]
        assert entry["fairagro:createdDatasets"] == 3
        assert report["schema:actionStatus"] == "schema:FailedActionStatus"

    asyncio.run(scenario())


def test_the_report_of_a_run_is_not_changed_by_another_uploaders_failures(
    make_settings: Callable[..., Settings], make_store: Callable[..., StoreProcess], arcs_topic: ArcsTopic
) -> None:
    good_store = make_store()
    refusing_store = make_store("--max-body-bytes", "100")  # every ARC is 413 there
    settings = upload_settings(make_settings, good_store)
    other = upload_settings(make_settings, refusing_store, group_id=f"{settings.uploader.group_id}-other")
    documents = [arc_document(f"rep-{i}") for i in range(6)]

    async def scenario() -> None:
        run_id, _ = await arcs_topic.snapshot_run(documents)
        async with running_uploader(settings):
            await until(harvests_closed(good_store, 1), what="run A delivered")
        before = await run_report(settings, ReportScope.from_settings(settings, run_id))
        assert before["schema:actionStatus"] == "schema:CompletedActionStatus"

        async with running_uploader(other):
            await until(harvests_closed(refusing_store, 1), what="the other uploader's harvest closed")
        after = await run_report(settings, ReportScope.from_settings(settings, run_id))
        assert after == before
        theirs = await run_report(other, ReportScope.from_settings(other, run_id))
        assert theirs["schema:result"][0]["fairagro:failedDatasets"] == len(documents)

    asyncio.run(scenario())


def test_a_wrong_rdi_stops_delivery_with_one_line_and_everything_flows_once_it_is_fixed(
    make_settings: Callable[..., Settings],
    make_store: Callable[..., StoreProcess],
    arcs_topic: ArcsTopic,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = make_store()  # knows only test-rdi
    right = upload_settings(make_settings, store)
    wrong = right.model_copy(
        update={"rdi": "wrong-rdi", "uploader": right.uploader.model_copy(update={"misconfigured_recheck_s": 0.3})}
    )
    documents = [arc_document(f"rdi-{i}") for i in range(5)]

    async def scenario() -> None:
        await arcs_topic.arcs(documents)

        async def stopped_and_rechecked() -> bool:
            return sum(r["status"] == 400 for r in store.requests()) >= 3

        with caplog.at_level(logging.ERROR, logger="services.uploader.health"):
            async with running_uploader(wrong) as uploader:
                await until(stopped_and_rechecked, what="delivery stopped and re-checked")
                assert uploader.readiness()["target"] is False
                refused = metrics.REGISTRY.get_sample_value("arcstream_target_misconfigured", {"reason": "unknown-rdi"})
                assert refused == 1
        refused = [(r["method"], r["path"]) for r in store.requests() if r["status"] == 400]
        # The first refusals came for the ARCs already on the wire (at most one per connection);
        # after them the re-checks only ask (GET), no ARC is sent again.
        posts = [index for index, (method, _) in enumerate(refused) if method == "POST"]
        assert 1 <= len(posts) <= wrong.uploader.max_concurrent_uploads and posts == list(range(len(posts)))
        assert set(refused[len(posts) :]) == {("GET", "/v3/harvests")}
        lines = [r.getMessage() for r in caplog.records if r.name == "services.uploader.health"]
        assert len(lines) == 1 and "unknown-rdi" in lines[0] and "wrong-rdi" in lines[0]
        assert await outcomes(wrong) == []
        assert await read_topic(wrong.kafka, wrong.topics.dlq) == []

        # Fixed (the right RDI): the same group picks up where the wrong one stopped; nothing was lost.
        async def all_created() -> bool:
            return Counter(o.status for o in await outcomes(right)) == {"created": len(documents)}

        async with running_uploader(right):
            await until(all_created, what="every ARC delivered once the RDI is right")
        assert metrics.REGISTRY.get_sample_value("arcstream_target_misconfigured", {"reason": "unknown-rdi"}) == 0
        assert await read_topic(right.kafka, right.topics.dlq) == []

    asyncio.run(scenario())
