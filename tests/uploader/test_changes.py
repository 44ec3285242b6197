"""CDC changes (no run id), tombstones, --force, and a snapshot run aborted by the next one."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from services.common.config import Settings
from services.common.content_hash import arc_id, content_hash
from services.common.records import H_CONTENT_HASH, H_KIND, make_headers
from tests.support import until

from .conftest import ArcsTopic, StoreProcess, arc_bytes, arc_document, outcomes, running_uploader, upload_settings


def test_cdc_changes_tombstones_and_force(
    make_settings: Callable[..., Settings], make_store: Callable[..., StoreProcess], arcs_topic: ArcsTopic
) -> None:
    store = make_store("--enable-delete")  # tombstones become DELETEs, which only the local store has
    settings = upload_settings(make_settings, store, target_deletes=True)

    async def reported(count: int) -> None:
        async def enough() -> bool:
            return len(await outcomes(settings)) >= count

        await until(enough, what=f"{count} outcomes")

    async def scenario() -> None:
        await arcs_topic.arcs([arc_document("cdc-a"), arc_document("cdc-b")])
        async with running_uploader(settings):
            await reported(2)
            # A change to one, a delete of the other, then the deleted one comes back unchanged.
            await arcs_topic.arcs([arc_document("cdc-a", title="new title")])
            await arcs_topic.arcs([None], keys=["cdc-b"])
            await reported(4)
            await arcs_topic.arcs([arc_document("cdc-b")])
            await reported(5)
        async with running_uploader(settings, force=True, group_id="re-export"):
            await reported(10)

        records = sorted(await outcomes(settings), key=lambda o: o.at)  # the topic is read partition by partition
        assert [(o.identifier, o.status) for o in records[:2]] in (
            [("cdc-a", "created"), ("cdc-b", "created")],
            [("cdc-b", "created"), ("cdc-a", "created")],
        )
        assert all(o.run_id is None for o in records)
        by_id: dict[str, list[str]] = {}
        for o in records[:5]:
            by_id.setdefault(o.identifier, []).append(o.status)
        assert by_id == {"cdc-a": ["created", "updated"], "cdc-b": ["created", "deleted", "created"]}
        deleted = next(o for o in records if o.status == "deleted")
        assert deleted.http_status == 200 and deleted.arc_id == arc_id("cdc-b", "test-rdi")
        # The forced re-export (new group, from the beginning) sends everything again; content the
        # target already holds is reported unchanged (the target answers "updated" for it too);
        # versions of cdc-b still waiting behind a newer one may be superseded.
        again = records[5:]
        assert len(again) == 5
        assert {o.status for o in again} <= {"created", "updated", "unchanged", "deleted", "superseded"}
        last = {o.identifier: o.status for o in again}
        # cdc-a: the old version went in first (updated), then the new one again (updated), unless the
        # old one was superseded while waiting; then the new one equals what the target holds (unchanged).
        assert last["cdc-a"] in ("updated", "unchanged") and last["cdc-b"] in ("created", "unchanged")
        assert len(store.get("/v3/arcs")) == 2
        posts = [r for r in store.requests() if r["path"] == "/v3/arcs" and r["method"] == "POST"]
        assert len(posts) == 4 + sum(o.status in ("created", "updated", "unchanged") for o in again)

    asyncio.run(scenario())


def test_run_without_run_end_is_cancelled_when_the_next_run_starts(
    make_settings: Callable[..., Settings], make_store: Callable[..., StoreProcess], arcs_topic: ArcsTopic
) -> None:
    store = make_store()
    settings = upload_settings(make_settings, store)

    async def scenario() -> None:
        # Run A starts and publishes, but its extractor dies: no run-end.
        await arcs_topic.markers("run-start", "run-a", 3)
        await arcs_topic.arcs([arc_document(f"a-{i}") for i in range(3)], run_id="run-a")
        run_b, _ = await arcs_topic.snapshot_run([arc_document(f"a-{i}", title="v2") for i in range(3)], "run-b")

        async def both_closed() -> bool:
            harvests = store.get("/v3/harvests")
            return len(harvests) == 2 and all(h["status"] != "RUNNING" for h in harvests)

        async with running_uploader(settings):
            await until(both_closed, what="both harvests closed")

        statuses = sorted(h["status"] for h in store.get("/v3/harvests"))
        assert statuses == ["CANCELLED", "COMPLETED"]
        results = await outcomes(settings)
        assert Counter(o.status for o in results if o.run_id == "run-a") == {"created": 3}
        assert Counter(o.status for o in results if o.run_id == run_b) == {"updated": 3}

    asyncio.run(scenario())


def test_a_stale_content_hash_header_does_not_make_a_changed_arc_unchanged(
    make_settings: Callable[..., Settings], make_store: Callable[..., StoreProcess], arcs_topic: ArcsTopic
) -> None:
    store = make_store()
    settings = upload_settings(make_settings, store)
    first, changed = arc_document("stale-1"), arc_document("stale-1", title="changed since")

    async def scenario() -> None:
        await arcs_topic.arcs([first])
        # A producer that copied the old hash into the header of the changed ARC.
        stale = make_headers({H_KIND: "arc", H_CONTENT_HASH: content_hash(first)})
        await arcs_topic.raw([("stale-1", arc_bytes(changed), stale)])

        async def both() -> bool:
            return len(await outcomes(settings)) == 2

        async with running_uploader(settings):
            await until(both, what="both versions reported")
        results = sorted(await outcomes(settings), key=lambda o: o.at)
        assert [o.status for o in results] == ["created", "updated"]
        assert results[1].content_hash == content_hash(changed) != content_hash(first)
        assert content_hash(store.get(f"/v3/arcs/{arc_id('stale-1', 'test-rdi')}")) == content_hash(changed)

    asyncio.run(scenario())
