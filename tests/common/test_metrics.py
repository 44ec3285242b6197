"""Metrics, health and readiness over real HTTP, and the shared series' helpers."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from aiokafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from services.common import metrics, metrics_server
from services.common.config import MetricsSettings, Settings
from services.common.errors import ConfigError
from services.common.kafka.clients import make_consumer, make_producer, start_client
from services.common.kafka.topics import ensure_topics
from services.common.metrics_server import MetricsServer, Readiness, serve_metrics, start_metrics_server
from services.common.report import OutcomeRecord

EPHEMERAL = MetricsSettings(ephemeral_port=True)


def fetch(url: str) -> tuple[int, str, str]:
    """GET over a real socket: status, content type, body."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def scrape(server: MetricsServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` parsed into {(sample name, sorted labels): value}."""
    status, content_type, body = fetch(server.url + "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    running = start_metrics_server(EPHEMERAL)
    assert running is not None
    yield running
    running.stop()


def test_port_zero_disables_the_server() -> None:
    assert start_metrics_server(MetricsSettings(port=0)) is None


def test_ephemeral_port_reports_the_bound_port(server: MetricsServer) -> None:
    assert server.port > 0
    with socket.create_connection((server.host, server.port), timeout=5):
        pass
    assert server.url == f"http://127.0.0.1:{server.port}"


def test_configured_port_in_use_is_a_config_error(server: MetricsServer) -> None:
    with pytest.raises(ConfigError, match=str(server.port)):
        start_metrics_server(MetricsSettings(port=server.port))


def test_stop_closes_the_socket() -> None:
    running = start_metrics_server(EPHEMERAL)
    assert running is not None
    running.stop()
    with pytest.raises(OSError):
        socket.create_connection((running.host, running.port), timeout=5)


def test_every_named_series_is_exposed_for_every_stage(server: MetricsServer) -> None:
    samples = scrape(server)
    for stage in metrics.STAGES:
        for name in (
            "arcstream_messages_in_total",
            "arcstream_messages_out_total",
            "arcstream_in_flight",
            "arcstream_paused_partitions",
            "arcstream_seconds_since_last_progress",
        ):
            assert (name, (("stage", stage),)) in samples, (name, stage)
    assert any(name == "process_cpu_seconds_total" for name, _ in samples)


def test_counters_and_gauges_reach_the_endpoint(server: MetricsServer) -> None:
    before = scrape(server)
    metrics.message_in("build", 3)
    metrics.message_out("build", 2)
    metrics.message_failed("build", "mapping-failed")
    metrics.set_in_flight("build", 7)
    metrics.set_paused_partitions("build", 2)
    metrics.http_response("upload", 503)
    metrics.http_response("upload", None)
    after = scrape(server)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("arcstream_messages_in_total", stage="build") == 3
    assert delta("arcstream_messages_out_total", stage="build") == 2
    assert delta("arcstream_messages_failed_total", stage="build", error_code="mapping-failed") == 1
    assert value(after, "arcstream_in_flight", stage="build") == 7
    assert value(after, "arcstream_paused_partitions", stage="build") == 2
    assert delta("arcstream_http_responses_total", stage="upload", code="503") == 1
    assert delta("arcstream_http_responses_total", stage="upload", code="error") == 1


def test_outcome_feeds_status_duration_and_latency(server: MetricsServer) -> None:
    before = scrape(server)
    metrics.record_outcome(
        OutcomeRecord(identifier="i1", stage="upload", status="created", duration_ms=40.0, latency_ms=1500.0)
    )
    metrics.record_outcome(OutcomeRecord(identifier="i2", stage="upload", status="failed"))
    after = scrape(server)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("arcstream_outcomes_total", stage="upload", status="created") == 1
    assert delta("arcstream_outcomes_total", stage="upload", status="failed") == 1
    assert delta("arcstream_duration_seconds_count", stage="upload") == 1
    assert delta("arcstream_duration_seconds_sum", stage="upload") == pytest.approx(0.04)
    assert delta("arcstream_duration_seconds_bucket", stage="upload", le="0.05") == 1
    assert delta("arcstream_duration_seconds_bucket", stage="upload", le="0.025") == 0
    assert delta("arcstream_end_to_end_latency_seconds_count", stage="upload") == 1
    assert delta("arcstream_end_to_end_latency_seconds_bucket", stage="upload", le="2.0") == 1
    assert delta("arcstream_end_to_end_latency_seconds_bucket", stage="upload", le="1.0") == 0


def test_progress_resets_seconds_since_last_progress(server: MetricsServer) -> None:
    started = time.monotonic()
    metrics.message_out("extract")
    samples = scrape(server)
    elapsed = time.monotonic() - started
    assert 0 <= value(samples, "arcstream_seconds_since_last_progress", stage="extract") <= elapsed


def test_consumer_lag_per_partition_and_removal(server: MetricsServer) -> None:
    tp0, tp1 = TopicPartition("t.arcs", 0), TopicPartition("t.arcs", 1)
    metrics.set_consumer_lag("upload", {tp0: 5, tp1: 0})
    samples = scrape(server)
    assert value(samples, "arcstream_consumer_lag", stage="upload", topic="t.arcs", partition="0") == 5
    lag1 = ("arcstream_consumer_lag", (("partition", "1"), ("stage", "upload"), ("topic", "t.arcs")))
    lag0 = ("arcstream_consumer_lag", (("partition", "0"), ("stage", "upload"), ("topic", "t.arcs")))
    assert lag1 in samples
    metrics.set_consumer_lag("upload", {tp1: 2})  # partition 0 revoked
    samples = scrape(server)
    assert lag0 not in samples
    assert value(samples, "arcstream_consumer_lag", stage="upload", topic="t.arcs", partition="1") == 2
    metrics.set_consumer_lag("upload", {})


def test_readyz_follows_the_service_checks() -> None:
    ready = Readiness("assigned", "broker")
    running = start_metrics_server(EPHEMERAL, ready)
    assert running is not None
    try:
        status, content_type, body = fetch(running.url + "/readyz")
        assert (status, content_type) == (503, "application/json")
        assert json.loads(body) == {"ready": False, "checks": {"assigned": False, "broker": False}}
        ready.set("assigned", True)
        ready.set("broker", True)
        status, _, body = fetch(running.url + "/readyz")
        assert status == 200
        assert json.loads(body)["ready"] is True
        ready.set("broker", False)
        assert fetch(running.url + "/readyz")[0] == 503
    finally:
        running.stop()


def test_readyz_with_a_failing_callback_is_not_ready() -> None:
    def broken() -> bool:
        raise RuntimeError("consumer gone")

    running = start_metrics_server(EPHEMERAL, broken)
    assert running is not None
    try:
        status, _, body = fetch(running.url + "/readyz")
        assert status == 503
        assert "consumer gone" in json.loads(body)["error"]
        assert fetch(running.url + "/healthz")[0] == 200  # alive, just not ready
    finally:
        running.stop()


def test_healthz_and_readyz_default_and_unknown_path(server: MetricsServer) -> None:
    assert fetch(server.url + "/healthz")[0] == 200
    assert fetch(server.url + "/readyz")[0] == 200
    assert fetch(server.url + "/nope")[0] == 404


def test_healthz_reports_an_event_loop_that_does_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_server, "LOOP_CHECK_TIMEOUT_S", 0.2)
    stalled = asyncio.new_event_loop()  # never run: callbacks scheduled on it never execute
    running = start_metrics_server(EPHEMERAL, loop=stalled)
    assert running is not None
    try:
        status, _, body = fetch(running.url + "/healthz")
        assert status == 503
        assert json.loads(body)["status"] == "event loop unresponsive"
        stalled.close()
        assert fetch(running.url + "/healthz")[0] == 503
    finally:
        running.stop()


def test_serve_metrics_checks_the_running_loop() -> None:
    async def serve() -> tuple[MetricsServer | None, int, str, int]:
        async with serve_metrics(EPHEMERAL, lambda: {"assigned": True}) as running:
            assert running is not None
            status, _, body = await asyncio.to_thread(fetch, running.url + "/healthz")
            ready_status = (await asyncio.to_thread(fetch, running.url + "/readyz"))[0]
        return running, status, body, ready_status

    running, status, body, ready_status = asyncio.run(serve())
    assert (status, json.loads(body), ready_status) == (200, {"status": "ok"}, 200)
    assert running is not None
    with pytest.raises(OSError):
        socket.create_connection((running.host, running.port), timeout=5)


def test_consumer_lag_from_a_real_consumer(settings: Settings, server: MetricsServer) -> None:
    asyncio.run(_consumer_lag_from_a_real_consumer(settings, server))


async def _consumer_lag_from_a_real_consumer(settings: Settings, server: MetricsServer) -> None:
    await ensure_topics(settings)
    topic = settings.topics.arcs
    producer = make_producer(settings.kafka)
    await start_client(producer, settings.kafka)
    try:
        for n in range(5):
            await producer.send_and_wait(topic, f"v{n}".encode(), key=f"k{n}".encode(), partition=0)
    finally:
        await producer.stop()
    consumer = make_consumer(settings.kafka, [], group_id=None, max_poll_records=2)
    await start_client(consumer, settings.kafka)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        got: list[object] = []
        while not got:
            got = (await consumer.getmany(tp, timeout_ms=1000, max_records=2)).get(tp, [])
        lags = await metrics.update_consumer_lag("upload", consumer)
        assert lags == {tp: 5 - len(got)}
        samples = await asyncio.to_thread(scrape, server)
        lag = value(samples, "arcstream_consumer_lag", stage="upload", topic=topic, partition="0")
        assert lag == 5 - len(got)
    finally:
        await consumer.stop()
        metrics.set_consumer_lag("upload", {})
