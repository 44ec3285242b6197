"""Uploader against a real broker and a real store process: a snapshot run becomes one complete harvest."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from services.common.config import Settings
from services.common.content_hash import arc_id
from services.ops.run_report import run_report
from tests.support import until

from .conftest import ArcsTopic, StoreProcess, arc_document, outcomes, running_uploader, upload_settings

N = 200


def test_snapshot_run_is_one_complete_harvest_and_second_run_is_unchanged(
    make_settings: Callable[..., Settings], make_store: Callable[..., StoreProcess], arcs_topic: ArcsTopic
) -> None:
    store = make_store()
    settings = upload_settings(make_settings, store)
    documents = [arc_document(f"inv-{i:03d}") for i in range(N)]

    async def scenario() -> None:
        run_id, produced = await arcs_topic.snapshot_run(documents)

        async def run_finished() -> bool:
            harvests = store.get("/v3/harvests")
            return bool(harvests) and all(h["status"] != "RUNNING" for h in harvests)

        async with running_uploader(settings):
            await until(run_finished, what="harvest closed")

        # The store holds every ARC byte for byte as it was on arc.arcs.
        for item in produced:
            assert store.arc_file(arc_id(item.identifier, "test-rdi")) == item.value
        [harvest] = store.get("/v3/harvests")
        assert harvest["status"] == "COMPLETED"
        assert harvest["statistics"]["expected_datasets"] == N
        assert harvest["statistics"]["arcs_submitted"] == N
        assert harvest["statistics"]["arcs_new"] == N

        first = [o for o in await outcomes(settings) if o.run_id == run_id]
        assert Counter(o.status for o in first) == {"created": N}
        assert all(o.stage == "upload" and o.attempts == 1 and o.http_status == 200 for o in first)
        assert all(o.arc_id == arc_id(o.identifier, "test-rdi") and o.content_hash for o in first)
        assert all(o.latency_ms is not None and o.duration_ms is not None for o in first)

        report = await run_report(settings, run_id)
        assert report["@type"] == "schema:Action"
        assert report["schema:actionStatus"] == "schema:CompletedActionStatus"
        assert report["schema:startTime"] and report["schema:endTime"]
        [entry] = report["schema:result"]
        assert entry["identifier"] == "test-rdi"
        assert entry["fairagro:harvestId"] == harvest["harvest_id"]
        assert entry["fairagro:harvestStatus"] == "COMPLETED"
        assert entry["fairagro:expectedDatasets"] == N
        assert entry["fairagro:harvestedDatasets"] == N
        assert entry["fairagro:failedDatasets"] == 0
        assert entry["fairagro:failedRecords"] == []

        # Second run, same content (new publishing dates, ignored by the hash): nothing is sent again.
        posts_before = sum(1 for r in store.requests() if r["path"].endswith("/arcs"))
        second_run, _ = await arcs_topic.snapshot_run([arc_document(f"inv-{i:03d}") for i in range(N)])

        async def second_finished() -> bool:
            harvests = store.get("/v3/harvests")
            return len(harvests) == 2 and all(h["status"] != "RUNNING" for h in harvests)

        async with running_uploader(settings):
            await until(second_finished, what="second harvest closed")

        second = [o for o in await outcomes(settings) if o.run_id == second_run]
        assert Counter(o.status for o in second) == {"unchanged": N}
        assert all(o.attempts == 0 and o.http_status is None for o in second)
        assert sum(1 for r in store.requests() if r["path"].endswith("/arcs")) == posts_before
        second_harvest = next(h for h in store.get("/v3/harvests") if h["harvest_id"] != harvest["harvest_id"])
        assert second_harvest["status"] == "COMPLETED"
        report = await run_report(settings, second_run)
        assert report["schema:result"][0]["fairagro:harvestedDatasets"] == N
        assert report["schema:result"][0]["fairagro:unchangedDatasets"] == N

    asyncio.run(scenario())
