"""Snapshot -> builder -> uploader -> store, with the real builder service (fast engine, one worker).

The uploader's other tests produce ``arc.arcs`` themselves; this one checks the
contract with the builder: markers passed through, content-hash headers equal to
the store's ``arc_hash``, ARC bytes unchanged from topic to file.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from services.builder.service import BuilderService
from services.common.config import Settings
from services.common.content_hash import arc_id
from services.common.kafka.clients import make_producer, start_client
from services.common.kafka.reading import read_topic
from services.common.kafka.topics import ensure_topics
from services.common.records import H_CONTENT_HASH, H_KIND, H_RUN_ID, RunMarker, dumps, header_dict, make_headers
from services.common.report import utc_now_iso
from services.dev.generator import generate_payloads
from services.ops.run_report import ReportScope, run_report
from tests.support import until

from .conftest import StoreProcess, outcomes, running_uploader, upload_settings

N = 200
RUN = "pipeline-run"


async def _publish_snapshot(settings: Settings) -> None:
    """What the snapshot extractor writes: run-start everywhere, payloads, run-end with per-partition counts."""
    await ensure_topics(settings)
    topic, partitions = settings.topics.investigations, settings.topics.partitions
    producer = make_producer(settings.kafka)
    await start_client(producer, settings.kafka)

    async def marker(kind: str, partition: int, published: int = 0) -> None:
        value = RunMarker(
            kind=kind,  # type: ignore[arg-type]
            run_id=RUN,
            partition=partition,
            partitions=partitions,
            expected=N,
            published=published,
            started_at=utc_now_iso(),
        )
        headers = make_headers({H_KIND: kind, H_RUN_ID: RUN})
        await producer.send_and_wait(
            topic, value.model_dump_json().encode(), value.key, partition=partition, headers=headers
        )

    try:
        for partition in range(partitions):
            await marker("run-start", partition)
        published = Counter[int]()
        for payload in generate_payloads(N, 11, "small"):
            headers = make_headers({H_KIND: "payload", H_RUN_ID: RUN, "arcstream.schema.version": 1})
            value = dumps(payload.model_dump(mode="json"))
            sent = await producer.send_and_wait(topic, value, payload.identifier.encode(), headers=headers)
            published[sent.partition] += 1
        for partition in range(partitions):
            await marker("run-end", partition, published[partition])
    finally:
        await producer.stop()


def test_snapshot_built_and_uploaded_is_one_complete_harvest(
    make_settings: Callable[..., Settings], make_store: Callable[..., StoreProcess]
) -> None:
    store = make_store()
    settings = upload_settings(make_settings, store)

    async def scenario() -> None:
        await _publish_snapshot(settings)
        stop = asyncio.Event()
        builder = asyncio.create_task(
            BuilderService(settings, engine="fast", workers=1, group_id=f"builder-{settings.topics.prefix}").run(stop)
        )
        try:

            async def harvest_closed() -> bool:
                harvests = store.get("/v3/harvests")
                return bool(harvests) and all(h["status"] != "RUNNING" for h in harvests)

            async with running_uploader(settings):
                await until(harvest_closed, what="harvest closed", limit_s=240)
        finally:
            stop.set()
            await builder

        arcs = [r for r in await read_topic(settings.kafka, settings.topics.arcs) if r.value is not None]
        arcs = [r for r in arcs if header_dict(r.headers).get(H_KIND) == "arc"]
        assert len(arcs) == N
        stored = {entry["arc_id"]: entry for entry in store.get("/v3/arcs")}
        for record in arcs:
            the_id = arc_id(record.key.decode(), "test-rdi")
            assert store.arc_file(the_id) == record.value
            assert stored[the_id]["arc_hash"] == header_dict(record.headers)[H_CONTENT_HASH]

        [harvest] = store.get("/v3/harvests")
        assert harvest["status"] == "COMPLETED"
        assert harvest["statistics"]["expected_datasets"] == N
        assert harvest["statistics"]["arcs_submitted"] == N
        uploads = [o for o in await outcomes(settings) if o.stage == "upload"]
        assert Counter(o.status for o in uploads) == {"created": N}
        assert all(o.run_id == RUN and o.engine for o in uploads)

        report = await run_report(settings, ReportScope.from_settings(settings, RUN))
        assert report["schema:actionStatus"] == "schema:CompletedActionStatus"
        [entry] = report["schema:result"]
        assert entry["fairagro:expectedDatasets"] == N
        assert entry["fairagro:harvestedDatasets"] == N
        assert entry["fairagro:failedDatasets"] == 0

    asyncio.run(scenario())
