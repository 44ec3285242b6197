"""After a real builder + uploader run, /metrics holds the named series with the values the run implies."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.builder.engines import register_engine
from services.builder.service import BuilderService
from services.common.config import MetricsSettings, Settings
from services.common.kafka.reading import read_topic
from services.common.metrics_server import MetricsServer, start_metrics_server
from services.common.payload import InvestigationPayload
from services.dev.stack.state import ServerRecord
from services.uploader.service import Uploader

from .pipeline import FAST_GROUP, delivered, publish, run, running, until

register_engine("recipe-v1", "tests.ops.engines:build_v1")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(server: MetricsServer) -> Samples:
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        body = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    running_server = start_metrics_server(MetricsSettings(ephemeral_port=True))
    assert running_server is not None
    yield running_server
    running_server.stop()


def test_series_after_a_build_and_upload_run(
    make_settings: Callable[..., Settings], start_store: Callable[..., ServerRecord], server: MetricsServer
) -> None:
    store = start_store("store", "--known-rdi", "metrics-rdi")
    settings = make_settings(
        kafka=FAST_GROUP,
        rdi="metrics-rdi",
        max_concurrent_arc_builds=1,
        uploader={"target_url": store.url, "backoff_initial_s": 0.05, "backoff_max_s": 0.5},
    )
    before = scrape(server)
    started = time.monotonic()
    run(_build_and_upload(settings, store, server))
    after = scrape(server)
    elapsed = time.monotonic() - started

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Every payload came in; three were built and delivered, one failed its mapping.
    assert delta("arcstream_messages_in_total", stage="build") == 4
    assert delta("arcstream_outcomes_total", stage="build", status="built") == 3
    assert delta("arcstream_outcomes_total", stage="build", status="failed") == 1
    assert delta("arcstream_messages_failed_total", stage="build", error_code="mapping-failed") == 1
    assert delta("arcstream_messages_out_total", stage="build") >= 3
    assert delta("arcstream_messages_in_total", stage="upload") == 3
    assert delta("arcstream_outcomes_total", stage="upload", status="created") == 3
    assert delta("arcstream_messages_out_total", stage="upload") == 3
    assert delta("arcstream_http_responses_total", stage="upload", code="200") >= 3
    # Durations and latencies: one observation per built / delivered ARC, within the run's wall time.
    for stage in ("build", "upload"):
        for histogram in ("arcstream_duration_seconds", "arcstream_end_to_end_latency_seconds"):
            count = delta(f"{histogram}_count", stage=stage)
            assert count >= 3, (histogram, stage)
            # Each observation lies within the run (payloads were published after it started).
            assert 0 < delta(f"{histogram}_sum", stage=stage) <= count * elapsed, (histogram, stage)
            assert delta(f"{histogram}_bucket", stage=stage, le="+Inf") == count
        # Stopped cleanly: nothing in flight, nothing paused, progress within the run.
        assert value(after, "arcstream_in_flight", stage=stage) == 0
        assert value(after, "arcstream_paused_partitions", stage=stage) == 0
        assert value(after, "arcstream_seconds_since_last_progress", stage=stage) <= elapsed
    # Lag per partition of this test's topics: reported, and 0 once everything was consumed.
    for stage, topic in (("build", settings.topics.investigations), ("upload", settings.topics.arcs)):
        lags = lag_samples(after, stage, topic)
        assert lags and set(lags) == {0.0}, (stage, lags)


async def _build_and_upload(settings: Settings, store: ServerRecord, server: MetricsServer) -> None:
    payloads = [InvestigationPayload(identifier=f"inv-{n}", title=f"Plot {n}") for n in range(3)]
    broken = InvestigationPayload(identifier="inv-broken", title="Gap", description_text="needs-v2")
    await publish(settings, *payloads, broken)

    async def dead_lettered() -> bool:
        return any(r.key == b"inv-broken" for r in await read_topic(settings.kafka, settings.topics.dlq))

    builder = BuilderService(settings, engine="recipe-v1", group_id=f"builder-{settings.topics.prefix}")
    async with running(builder), running(Uploader(settings)):
        await until(lambda: delivered(store, 3), "3 ARCs in the store")
        await until(dead_lettered, "the broken payload in the DLQ")
        await until(lambda: _caught_up(server, settings), "lag 0 reported by both consumers")


def lag_samples(samples: Samples, stage: str, topic: str) -> list[float]:
    return [
        v
        for (name, labels), v in samples.items()
        if name == "arcstream_consumer_lag" and ("stage", stage) in labels and ("topic", topic) in labels
    ]


async def _caught_up(server: MetricsServer, settings: Settings) -> bool:
    samples = await asyncio.to_thread(scrape, server)
    lags = lag_samples(samples, "build", settings.topics.investigations) + lag_samples(
        samples, "upload", settings.topics.arcs
    )
    return bool(lag_samples(samples, "upload", settings.topics.arcs)) and not any(lags)
