"""Uploader against a store that fails on purpose: overload (503 + Retry-After), 422 and 413."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from services.common import metrics
from services.common.config import Settings
from services.common.content_hash import arc_id
from services.common.kafka.clients import make_consumer, start_client
from services.common.kafka.groups import stop_consumer
from services.common.kafka.reading import read_topic
from services.common.records import H_ERROR_CODE, H_ERROR_MESSAGE, H_ERROR_STAGE, header_dict
from services.dev.stack import stack
from services.dev.stack.ports import free_port
from services.dev.stack.processes import terminate
from tests.support import until

from .conftest import ArcsTopic, StoreProcess, arc_bytes, arc_document, outcomes, running_uploader, upload_settings


def _no_retry_before_retry_after(requests: list[dict[str, Any]]) -> int:
    """Check every retry against the store's clock; return how many 503s were retried."""
    by_identifier: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for request in requests:
        if request["identifier"] and request["method"] == "POST":
            by_identifier[request["identifier"]].append(request)
    retried = 0
    for identifier, attempts in by_identifier.items():
        attempts.sort(key=lambda r: r["received"])
        for earlier, later in itertools.pairwise(attempts):
            if earlier["status"] == 503:
                retried += 1
                waited = later["received"] - earlier["answered"]
                assert waited >= earlier["retry_after"], (identifier, waited, earlier["retry_after"])
    return retried


def test_overloaded_store_gets_everything_and_no_retry_comes_early(
    make_settings: Callable[..., Settings], make_store: Callable[..., StoreProcess], arcs_topic: ArcsTopic
) -> None:
    store = make_store("--failure-rate", "0.3", "--retry-after", "1", "--seed", "7")
    settings = upload_settings(make_settings, store, max_attempts=12)
    documents = [arc_document(f"busy-{i:03d}") for i in range(120)]

    async def scenario() -> None:
        run_id, produced = await arcs_topic.snapshot_run(documents)

        async def closed() -> bool:
            harvests = store.get("/v3/harvests")
            return bool(harvests) and all(h["status"] != "RUNNING" for h in harvests)

        async with running_uploader(settings):
            await until(closed, what="harvest closed")

        results = [o for o in await outcomes(settings) if o.run_id == run_id]
        assert Counter(o.status for o in results) == {"created": len(documents)}
        assert max(o.attempts for o in results) > 1
        for item in produced:
            assert store.arc_file(arc_id(item.identifier, "test-rdi")) == item.value
        [harvest] = store.get("/v3/harvests")
        assert harvest["status"] == "COMPLETED"
        assert harvest["statistics"]["arcs_submitted"] == len(documents)

        requests = store.requests()
        arc_posts = [r for r in requests if r["identifier"]]
        assert sum(r["status"] == 503 for r in arc_posts) >= 0.15 * len(arc_posts)
        assert _no_retry_before_retry_after(requests) > 0

    asyncio.run(scenario())


def test_422_and_413_fail_that_arc_only_and_the_partition_continues(
    make_settings: Callable[..., Settings], make_store: Callable[..., StoreProcess], arcs_topic: ArcsTopic
) -> None:
    store = make_store("--max-body-bytes", "4000")
    settings = upload_settings(make_settings, store)
    good = [arc_document(f"ok-{i:02d}") for i in range(20)]
    too_big = arc_document("big-1", title="x" * 6000)
    # The target accepts only @context and @graph at the top of an ARC (422 otherwise).
    not_a_crate = {
        "@context": "https://w3id.org/ro/crate/1.1/context",
        "@graph": [{"@id": "./", "identifier": "bad-1"}],
        "extra": True,
    }

    async def scenario() -> None:
        # All in one partition, the bad ones first: everything after them must still be delivered.
        produced = await arcs_topic.arcs(
            [too_big, arc_bytes(not_a_crate), *good],
            keys=["big-1", "bad-1", *[d["@graph"][0]["identifier"] for d in good]],
            partition=0,
        )
        last_offset = produced[-1].offset

        async def all_reported() -> bool:
            return len(await outcomes(settings)) >= len(produced)

        async with running_uploader(settings):
            await until(all_reported, what="every ARC reported")

        by_id = {o.identifier: o for o in await outcomes(settings)}
        big, bad = by_id["big-1"], by_id["bad-1"]
        assert big.status == "failed" and big.http_status == 413 and big.attempts == 1
        assert "HTTP 413" in (big.error_message or "") and "body limit" in (big.error_message or "")
        assert "4000 bytes" in (big.error_message or "")  # the store's own message, excerpted
        assert bad.status == "failed" and bad.http_status == 422 and bad.attempts == 1
        assert "HTTP 422" in (bad.error_message or "") and "RO-Crate" in (bad.error_message or "")
        assert big.error_code == bad.error_code == "target-rejected"
        assert all(by_id[d["@graph"][0]["identifier"]].status == "created" for d in good)

        dlq = await read_topic(settings.kafka, settings.topics.dlq)
        assert sorted(r.key for r in dlq) == [b"bad-1", b"big-1"]
        for record in dlq:
            headers = header_dict(record.headers)
            assert headers[H_ERROR_STAGE] == "upload"
            assert headers[H_ERROR_CODE] == "target-rejected"
            assert headers[H_ERROR_MESSAGE].startswith("HTTP 4")
        assert {r.value for r in dlq} == {arc_bytes(too_big), arc_bytes(not_a_crate)}

        # Offsets were committed past the failures, to the end of the partition.
        consumer = make_consumer(settings.kafka, [], settings.uploader.group_id)
        await start_client(consumer, settings.kafka)
        try:
            assert await consumer.committed(TopicPartition(settings.topics.arcs, 0)) == last_offset + 1
        finally:
            await stop_consumer(consumer)

    asyncio.run(scenario())


def test_a_store_that_never_recovers_fails_its_arcs_only_after_the_outage_budget(
    make_settings: Callable[..., Settings], make_store: Callable[..., StoreProcess], arcs_topic: ArcsTopic
) -> None:
    store = make_store("--failure-rate", "1", "--retry-after", "0")
    settings = upload_settings(make_settings, store, max_attempts=3, outage_budget_s=3.0)
    documents = [arc_document(f"down-{i}") for i in range(5)]

    async def scenario() -> None:
        produced = await arcs_topic.arcs(documents, partition=1)

        async def all_reported() -> bool:
            return len(await outcomes(settings)) >= len(documents)

        async def paused() -> bool:
            return metrics.REGISTRY.get_sample_value("arcstream_target_unavailable") == 1

        async with running_uploader(settings) as uploader:
            await until(paused, what="delivery paused for the outage")
            assert uploader.readiness()["target"] is False
            await until(all_reported, what="every ARC reported")

        results = await outcomes(settings)
        assert {(o.status, o.error_code, o.http_status) for o in results} == {("failed", "target-failed", 503)}
        assert all("outage_budget_s" in (o.error_message or "") for o in results)
        # Waiting on an outage costs no attempts of their own: far more than max_attempts went out.
        assert len(await read_topic(settings.kafka, settings.topics.dlq)) == len(documents)

        consumer = make_consumer(settings.kafka, [], settings.uploader.group_id)
        await start_client(consumer, settings.kafka)
        try:
            assert await consumer.committed(TopicPartition(settings.topics.arcs, 1)) == produced[-1].offset + 1
        finally:
            await stop_consumer(consumer)

    asyncio.run(scenario())


def store_outage(
    make_settings: Callable[..., Settings], tmp_path: Path, arcs_topic: ArcsTopic, outage_s: float
) -> None:
    """A snapshot run; the store process is killed mid-run and comes back after ``outage_s`` on the same port."""
    data_dir = tmp_path / "outage-store"
    port = free_port()
    flags = ("--latency-ms", "40")
    record = stack.start_store(data_dir, port=port, extra_args=flags, known_rdis=("test-rdi",))
    store = StoreProcess(record.url, Path(record.data_dir or ""), record.pid)
    settings = upload_settings(make_settings, store)
    documents = [arc_document(f"out-{i:03d}") for i in range(60)]

    before_outage, after_outage = documents[:10], documents[10:]

    async def scenario() -> None:
        # The run's first ARCs go out before the outage and the rest during it, so the outage always
        # meets undelivered work, however fast the first part went through.
        run_id = f"run-{uuid.uuid4().hex[:8]}"
        await arcs_topic.markers("run-start", run_id, len(documents))
        produced = await arcs_topic.arcs(before_outage, run_id)

        async def some_delivered() -> bool:
            return len(await outcomes(settings)) >= len(before_outage)

        async def closed() -> bool:
            harvests = store.get("/v3/harvests")
            return bool(harvests) and all(h["status"] != "RUNNING" for h in harvests)

        async with running_uploader(settings) as uploader:
            await until(some_delivered, what="the first ARCs delivered")
            terminate(store.pid)
            down_at = time.monotonic()
            produced += await arcs_topic.arcs(after_outage, run_id)
            await arcs_topic.markers("run-end", run_id, len(documents), dict(Counter(p.partition for p in produced)))

            async def paused() -> bool:
                return metrics.REGISTRY.get_sample_value("arcstream_target_unavailable") == 1

            await until(paused, what="delivery paused")
            assert uploader.readiness()["target"] is False
            await asyncio.sleep(max(0.0, outage_s - (time.monotonic() - down_at)))
            store.pid = stack.start_store(data_dir, port=port, extra_args=flags, known_rdis=("test-rdi",)).pid
            await until(closed, what="the harvest completed after the outage", limit_s=outage_s + 180)

        results = [o for o in await outcomes(settings) if o.run_id == run_id]
        assert Counter(o.status for o in results) == {"created": len(documents)}
        [harvest] = store.get("/v3/harvests")
        assert harvest["status"] == "COMPLETED"
        assert harvest["statistics"]["arcs_submitted"] == len(documents)
        assert all(o.harvest_id == harvest["harvest_id"] for o in results)
        assert await read_topic(settings.kafka, settings.topics.dlq) == []

    try:
        asyncio.run(scenario())
    finally:
        terminate(store.pid)


def test_a_store_outage_mid_run_pauses_delivery_and_every_arc_lands_in_the_harvest(
    make_settings: Callable[..., Settings], tmp_path: Path, arcs_topic: ArcsTopic
) -> None:
    store_outage(make_settings, tmp_path, arcs_topic, outage_s=15)


@pytest.mark.slow
def test_a_five_minute_store_outage_mid_run_loses_nothing(
    make_settings: Callable[..., Settings], tmp_path: Path, arcs_topic: ArcsTopic
) -> None:
    store_outage(make_settings, tmp_path, arcs_topic, outage_s=300)
