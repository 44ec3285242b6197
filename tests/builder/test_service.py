"""The builder service against the real broker and real arctrl workers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import orjson
from aiokafka import TopicPartition

from services.common import metrics
from services.common.config import Settings
from services.common.content_hash import content_hash
from services.common.kafka.clients import make_consumer, start_client
from services.common.kafka.groups import stop_consumer
from services.common.records import header_dict

from .conftest import (
    FAST_GROUP,
    fake_engine,
    marker_message,
    minimal_payload,
    payload_message,
    produce,
    rich_payload,
    running_builder,
    topic,
    wait_until,
)
from .test_mapping import CANNOT_TAKE, cannot_take_payload


def test_payloads_markers_tombstones_and_failures_flow_through(
    builder_settings: Callable[..., Settings],
) -> None:
    settings = builder_settings(max_concurrent_arc_builds=2)
    run = "run-1"
    good = minimal_payload("inv-good")
    messages = [
        marker_message("run-start", run, 0),
        payload_message(good, partition=0, run_id=run),
        (b"inv-malformed", b"{not json", [], 0),
        (b"inv-invalid", orjson.dumps({"identifier": "inv-invalid", "studies": 3}), [], 0),
        payload_message(
            cannot_take_payload("empty study identifier").model_copy(update={"identifier": "inv-unmappable"}),
            partition=0,
        ),
        (b"inv-gone", None, [], 0),
        marker_message("run-end", run, 0),
        payload_message(minimal_payload("inv-other"), partition=2),
    ]

    async def scenario() -> None:
        await produce(settings, messages)
        async with running_builder(settings) as service:

            async def all_handled() -> bool:
                return len(await topic(settings, settings.topics.arcs)) >= 5 and service.in_flight == 0

            await wait_until(all_handled, "ARCs, tombstone and markers on arc.arcs")
        arcs = await topic(settings, settings.topics.arcs)
        dlq = await topic(settings, settings.topics.dlq)
        report = [json.loads(r.value) for r in await topic(settings, settings.topics.report)]

        on_p0 = [r for r in arcs if r.partition == 0]
        # Markers keep their place after every earlier message; other keys may finish in any order.
        assert [r.key for r in on_p0][::3] == [messages[0][0], messages[6][0]]
        assert sorted(r.key for r in on_p0[1:3]) == [b"inv-gone", b"inv-good"]
        assert on_p0[0].value == messages[0][1] and on_p0[-1].value == messages[6][1]
        assert next(r for r in on_p0 if r.key == b"inv-gone").value is None
        arc = next(r for r in on_p0 if r.key == b"inv-good")
        headers = header_dict(arc.headers)
        assert headers["arcstream.content.hash"] == content_hash(json.loads(arc.value))
        assert (headers["arcstream.engine"], headers["arcstream.run.id"], headers["arcstream.kind"]) == (
            settings.builder.engine,
            run,
            "arc",
        )
        assert headers["arcstream.schema.version"] == "1"
        assert [(r.key, r.partition) for r in arcs if r.partition != 0] == [(b"inv-other", 2)]

        failed = {r.key: header_dict(r.headers) for r in dlq}
        assert {k: v["arcstream.error.code"] for k, v in failed.items()} == {
            b"inv-malformed": "malformed-json",
            b"inv-invalid": "schema-violation",
            b"inv-unmappable": "mapping-failed",
        }
        assert next(r.value for r in dlq if r.key == b"inv-malformed") == b"{not json"
        assert all(
            v["arcstream.origin.partition"] == "0" and v["arcstream.error.stage"] == "build" for v in failed.values()
        )

        outcomes = {(o["identifier"], o["status"]) for o in report}
        assert outcomes == {
            ("inv-good", "built"),
            ("inv-other", "built"),
            ("inv-malformed", "failed"),
            ("inv-invalid", "failed"),
            ("inv-unmappable", "failed"),
        }
        built = next(o for o in report if o["identifier"] == "inv-good")
        assert (built["stage"], built["run_id"], built["content_hash"]) == (
            "build",
            run,
            headers["arcstream.content.hash"],
        )

        # Everything was handled, so the group committed up to the end of each partition.
        consumer = make_consumer(settings.kafka, [], f"builder-{settings.topics.prefix}")
        await start_client(consumer, settings.kafka)
        try:
            p0 = TopicPartition(settings.topics.investigations, 0)
            assert await consumer.committed(p0) == 7
        finally:
            await consumer.stop()

    asyncio.run(scenario())


def test_pause_engages_at_the_limit_and_releases(builder_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = builder_settings(max_concurrent_arc_builds=1, builder={"max_in_flight": 1})
    gate = tmp_path / "gate"
    payloads = [minimal_payload("inv-gated", description_text=f"gate:{gate}")] + [
        minimal_payload(f"inv-{i}") for i in range(2)
    ]

    async def scenario() -> None:
        await produce(settings, [payload_message(p, partition=0) for p in payloads])
        async with running_builder(settings, engine=fake_engine()) as service:

            async def paused() -> bool:
                return bool(service.assignment()) and service.paused() == service.assignment()

            await wait_until(paused, "partitions paused at the in-flight limit")
            assert service.in_flight == 1
            gauge = metrics.REGISTRY.get_sample_value("arcstream_paused_partitions", {"stage": "build"})
            assert gauge == len(service.assignment())
            gate.touch()

            async def drained() -> bool:
                return len(await topic(settings, settings.topics.arcs)) == 3 and not service.paused()

            await wait_until(drained, "all ARCs built and partitions resumed")
            assert metrics.REGISTRY.get_sample_value("arcstream_paused_partitions", {"stage": "build"}) == 0

    asyncio.run(scenario())


def test_timeout_kills_a_hung_build_and_the_service_continues(
    builder_settings: Callable[..., Settings],
) -> None:
    settings = builder_settings(max_concurrent_arc_builds=1, arc_generation_timeout_minutes=0.05)
    hung = minimal_payload("inv-hung", description_text="sleep:600")
    after = minimal_payload("inv-after")

    async def scenario() -> None:
        await produce(settings, [payload_message(hung, partition=1), payload_message(after, partition=1)])
        async with running_builder(settings, engine=fake_engine()):

            async def both_handled() -> bool:
                return bool(await topic(settings, settings.topics.dlq)) and bool(
                    await topic(settings, settings.topics.arcs)
                )

            await wait_until(both_handled, "timeout on arc.dlq and the next ARC built")
        dlq = await topic(settings, settings.topics.dlq)
        assert [(r.key, header_dict(r.headers)["arcstream.error.code"]) for r in dlq] == [
            (b"inv-hung", "build-timeout")
        ]
        assert [r.key for r in await topic(settings, settings.topics.arcs)] == [b"inv-after"]
        report = [json.loads(r.value) for r in await topic(settings, settings.topics.report)]
        assert {(o["identifier"], o["status"], o.get("error_code")) for o in report} == {
            ("inv-hung", "failed", "build-timeout"),
            ("inv-after", "built", None),
        }

    asyncio.run(scenario())


def test_newest_version_wins_under_out_of_order_completion(
    builder_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = builder_settings(max_concurrent_arc_builds=2)
    gate = tmp_path / "gate"
    older = minimal_payload("inv-k", title="older", description_text=f"gate:{gate}")
    newer = minimal_payload("inv-k", title="newer")

    async def scenario() -> None:
        await produce(settings, [payload_message(older, partition=0)])
        async with running_builder(settings, engine=fake_engine()) as service:

            async def older_building() -> bool:
                return await asyncio.to_thread(Path(f"{gate}.started").exists)

            await wait_until(older_building, "the older version's build to start")
            await produce(settings, [payload_message(newer, partition=0)])

            async def newer_built() -> bool:
                return bool(await topic(settings, settings.topics.arcs))

            await wait_until(newer_built, "the newer version's ARC")
            gate.touch()  # the older build now finishes after the newer one

            async def both_reported() -> bool:
                return len(await topic(settings, settings.topics.report)) == 2 and service.in_flight == 0

            await wait_until(both_reported, "outcomes of both versions")
        arcs = await topic(settings, settings.topics.arcs)
        assert [json.loads(r.value)["@graph"][-2]["name"] for r in arcs] == ["newer"]
        report = [json.loads(r.value) for r in await topic(settings, settings.topics.report)]
        assert sorted(o["status"] for o in report) == ["built", "superseded"]

    asyncio.run(scenario())


def test_an_arc_too_large_for_the_topic_goes_to_the_dlq(builder_settings: Callable[..., Settings]) -> None:
    settings = builder_settings(max_concurrent_arc_builds=1, kafka={**FAST_GROUP, "max_request_size": 8000})
    big = rich_payload("inv-big")  # ~5 KB of payload, ~10 KB of ARC
    small = minimal_payload("inv-small")

    async def scenario() -> None:
        await produce(settings, [payload_message(big, partition=0), payload_message(small, partition=0)])
        async with running_builder(settings):

            async def handled() -> bool:
                return len(await topic(settings, settings.topics.report)) == 2

            await wait_until(handled, "both outcomes")
        dlq = await topic(settings, settings.topics.dlq)
        assert [(r.key, header_dict(r.headers)["arcstream.error.code"]) for r in dlq] == [(b"inv-big", "arc-too-large")]
        assert [r.key for r in await topic(settings, settings.topics.arcs)] == [b"inv-small"]

    asyncio.run(scenario())


def test_workers_are_recycled_after_max_builds(builder_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = builder_settings(max_concurrent_arc_builds=1, builder={"max_builds_per_worker": 1})
    payloads = [minimal_payload(f"inv-{i}", description_text=f"pid:{tmp_path}") for i in range(3)]

    async def scenario() -> None:
        await produce(settings, [payload_message(p, partition=0) for p in payloads])
        async with running_builder(settings, engine=fake_engine()):

            async def built() -> bool:
                return len(await topic(settings, settings.topics.arcs)) == 3

            await wait_until(built, "three ARCs")

    asyncio.run(scenario())
    assert len(list(tmp_path.iterdir())) == 3  # one worker process per build


def test_every_cannot_take_case_is_a_dlq_record_not_a_crash(builder_settings: Callable[..., Settings]) -> None:
    settings = builder_settings(max_concurrent_arc_builds=2)

    def keyed(i: int, case: str) -> tuple[bytes, bytes, list[tuple[str, bytes]], int]:
        payload = cannot_take_payload(case)
        if payload.identifier.strip():  # each case its own identifier, and the key names it
            payload = payload.model_copy(update={"identifier": f"inv-{i}"})
        return payload.identifier.encode(), orjson.dumps(payload.model_dump(mode="json")), [], i % 3

    bad = [keyed(i, case) for i, case in enumerate(sorted(CANNOT_TAKE))]
    good = payload_message(rich_payload("inv-rich"), partition=0)

    async def scenario() -> None:
        await produce(settings, [*bad, good])
        async with running_builder(settings):

            async def handled() -> bool:
                return len(await topic(settings, settings.topics.report)) == len(bad) + 1

            await wait_until(handled, "an outcome for every payload")
        dlq = await topic(settings, settings.topics.dlq)
        assert sorted(r.key for r in dlq) == sorted(key for key, *_ in bad)
        assert {header_dict(r.headers)["arcstream.error.code"] for r in dlq} == {"mapping-failed"}
        assert [r.key for r in await topic(settings, settings.topics.arcs)] == [b"inv-rich"]

    asyncio.run(scenario())


def test_a_rebalance_keeps_in_flight_work_and_re_applies_pauses(
    builder_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = builder_settings(max_concurrent_arc_builds=1, builder={"max_in_flight": 1})
    gate = tmp_path / "gate"
    gated = minimal_payload("inv-gated", description_text=f"gate:{gate}")
    group = f"builder-{settings.topics.prefix}"

    async def scenario() -> None:
        await produce(
            settings, [payload_message(gated, partition=0), payload_message(minimal_payload("inv-next"), partition=1)]
        )
        async with running_builder(settings, engine=fake_engine(), group_id=group) as service:

            async def paused() -> bool:
                return bool(service.assignment()) and service.paused() == service.assignment()

            await wait_until(paused, "partitions paused at the in-flight limit")
            before = service.rebalances
            # A second member subscribed to another topic makes the group rebalance; this builder
            # gets all its partitions back, and aiokafka has forgotten their pauses.
            other = make_consumer(settings.kafka, [settings.topics.state], group)
            await start_client(other, settings.kafka)
            try:

                async def rebalanced() -> bool:
                    return service.rebalances > before

                await wait_until(rebalanced, "a rebalance")
                assert len(service.assignment()) == 3
                assert service.paused() == service.assignment()
                assert service.in_flight == 1
            finally:
                await stop_consumer(other)
            gate.touch()

            async def built() -> bool:
                return len(await topic(settings, settings.topics.arcs)) == 2 and service.in_flight == 0

            await wait_until(built, "both ARCs")
        keys = sorted(r.key for r in await topic(settings, settings.topics.arcs))
        assert keys == [b"inv-gated", b"inv-next"]  # the kept build was neither lost nor redone

    asyncio.run(scenario())


def test_a_superseded_version_waiting_for_a_worker_is_skipped(
    builder_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = builder_settings(max_concurrent_arc_builds=1, builder={"max_in_flight": 4})
    gate = tmp_path / "gate"
    blocker = minimal_payload("inv-blocker", description_text=f"gate:{gate}")
    older, newer = minimal_payload("inv-k", title="older"), minimal_payload("inv-k", title="newer")

    async def scenario() -> None:
        messages = [payload_message(p, partition=0) for p in (blocker, older, newer)]
        await produce(settings, messages)
        async with running_builder(settings, engine=fake_engine()) as service:

            async def queued() -> bool:  # the blocker builds, both versions wait for the one worker
                return service.in_flight == 3 and await asyncio.to_thread(Path(f"{gate}.started").exists)

            await wait_until(queued, "both versions queued behind the blocker")
            gate.touch()

            async def done() -> bool:
                return len(await topic(settings, settings.topics.report)) == 3 and service.in_flight == 0

            await wait_until(done, "three outcomes")
        report = [json.loads(r.value) for r in await topic(settings, settings.topics.report)]
        mine = sorted((o["status"], o.get("duration_ms") is None) for o in report if o["identifier"] == "inv-k")
        assert mine == [("built", False), ("superseded", True)]  # the older one never reached a worker
        titles = [
            next(n for n in json.loads(r.value)["@graph"] if n["@id"] == "./")["name"]
            for r in await topic(settings, settings.topics.arcs)
            if r.key == b"inv-k"
        ]
        assert titles == ["newer"]

    asyncio.run(scenario())
