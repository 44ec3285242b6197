"""Uploader against a real broker and a real store process: a snapshot run becomes one complete harvest."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from services.common.config import Settings
from services.common.content_hash import arc_id
from services.ops.run_report import ReportScope, run_report
from tests.support import until

from .conftest import ArcsTopic, StoreProcess, arc_document, outcomes, running_uploader, upload_settings

N = 200


def test_snapshot_run_is_one_complete_harvest_and_re_runs_submit_every_arc_as_unchanged(
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

        report = await run_report(settings, ReportScope.from_settings(settings, run_id))
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

        # Second and third run, same content (new publishing dates, ignored by the hash): a harvest must
        # contain every ARC of the run, so each is submitted again and reported unchanged.
        for number in (2, 3):
            posts_before = sum(1 for r in store.requests() if r["path"].endswith("/arcs"))
            again, _ = await arcs_topic.snapshot_run([arc_document(f"inv-{i:03d}") for i in range(N)])

            async def finished(number: int = number) -> bool:
                harvests = store.get("/v3/harvests")
                return len(harvests) == number and all(h["status"] != "RUNNING" for h in harvests)

            async with running_uploader(settings):
                await until(finished, what=f"harvest {number} closed")

            outcomes_of_run = [o for o in await outcomes(settings) if o.run_id == again]
            assert Counter(o.status for o in outcomes_of_run) == {"unchanged": N}
            assert all(o.attempts == 1 and o.http_status == 200 and o.harvest_id for o in outcomes_of_run)
            assert sum(1 for r in store.requests() if r["path"].endswith("/arcs")) == posts_before + N
            latest = max(store.get("/v3/harvests"), key=lambda h: h["started_at"])
            assert latest["status"] == "COMPLETED"
            assert latest["statistics"]["arcs_submitted"] == N
            entry = (await run_report(settings, ReportScope.from_settings(settings, again)))["schema:result"][0]
            assert (entry["fairagro:unchangedDatasets"], entry["fairagro:harvestedDatasets"]) == (N, N)

    asyncio.run(scenario())
