"""Tracing end to end: one investigation's trace across the real services, and nothing when it is off.

On: the snapshot extractor, the builder, the uploader and the store run as their own
processes (``arcstream ...``, each with its default service name) and export over real
OTLP http/protobuf to a receiver started here; the spans that arrive must form one
tree per investigation, with the ``traceparent`` on the Kafka records and the HTTP
request naming the span that sent them. Off: the same pipeline with no ``OTEL_*``
variable installs no provider, starts no exporter and writes no trace header anywhere.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace

from services.builder.service import BuilderService
from services.common import tracing
from services.common.config import Settings
from services.common.kafka.reading import read_topic
from services.common.records import H_KIND, header_dict
from services.dev.generator import generate
from services.dev.otlp import OtlpReceiver, ReceivedSpan, otlp_receiver
from services.dev.stack.processes import terminate
from services.dev.stack.stack import start_store
from services.dev.stack.state import ServerRecord
from services.dev.writer import write_rows
from services.extractor.snapshot import run_snapshot
from services.extractor.source.schema import connect, ensure_source_schema
from services.uploader.service import Uploader
from tests.observability.processes import ROOT, Service, service_env
from tests.ops.pipeline import FAST_GROUP, running
from tests.support import until

RDI = "trace-rdi"
INVESTIGATIONS = 2


async def fill(database_url: str, n: int) -> None:
    conn = await connect(database_url)
    try:
        await ensure_source_schema(conn)
        await conn.commit()
        await write_rows(conn, generate(n, 1, "small"))
    finally:
        await conn.close()


def records(settings: Settings, topic: str) -> list[Any]:
    """Payload/ARC records of ``topic`` (run markers left out)."""
    return [
        record
        for record in asyncio.run(read_topic(settings.kafka, topic))
        if header_dict(record.headers).get(H_KIND) in ("payload", "arc", None)
    ]


def store_arcs(store: ServerRecord) -> list[dict[str, Any]]:
    answer: list[dict[str, Any]] = httpx.get(f"{store.url}/v3/arcs", timeout=10).json()
    return answer


def request_log(store: ServerRecord) -> list[dict[str, Any]]:
    answer: list[dict[str, Any]] = httpx.get(f"{store.url}/_store/requests", timeout=10).json()
    return answer


def wait(condition: Callable[[], bool], what: str) -> None:
    async def check() -> bool:
        return await asyncio.to_thread(condition)

    asyncio.run(until(check, what))


def the(spans: Iterable[ReceivedSpan], **where: Any) -> ReceivedSpan:
    """The one span with these fields (``attributes`` entries as ``attr_<name with _ for .>``)."""
    found = [span for span in spans if all(_field(span, key) == value for key, value in where.items())]
    assert len(found) == 1, (where, found)
    return found[0]


def _field(span: ReceivedSpan, key: str) -> Any:
    if key.startswith("attr_"):
        return span.attributes.get(key[5:].replace("_", "."))
    return getattr(span, key)


def names(header: str | None) -> tuple[str, str]:
    """The (trace id, parent span id) a ``traceparent`` value names (its flags aside)."""
    assert header is not None
    version, trace_id, span_id, _flags = header.split("-")
    assert version == "00"
    return trace_id, span_id


def ids(span: ReceivedSpan) -> tuple[str, str]:
    return span.trace_id, span.span_id


def run_pipeline(settings: Settings, store: ServerRecord, env: dict[str, str], tmp_path: Path) -> None:
    """Snapshot (to completion), then builder and uploader until every ARC is in the store, then SIGTERM."""
    snapshot = subprocess.run(
        [sys.executable, "-m", "services.cli", "extract", "snapshot", "--no-progress"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert snapshot.returncode == 0, snapshot.stderr
    services = [Service([name], env, tmp_path / f"{name}.log") for name in ("builder", "uploader")]
    try:
        wait(lambda: len(store_arcs(store)) == INVESTIGATIONS, "every ARC in the store")
    finally:
        exit_codes = [service.stop() for service in services]
    assert exit_codes == [0, 0], exit_codes


def test_one_investigation_is_one_trace_from_extract_through_build_and_upload_to_the_store(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cleanups: Callable[[Callable[[], None]], None],
) -> None:
    settings = make_settings(kafka=FAST_GROUP)
    asyncio.run(fill(settings.database_url.get_secret_value(), INVESTIGATIONS))
    receiver = OtlpReceiver()
    receiver.start()
    cleanups(receiver.stop)
    otel = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    for name, value in otel.items():
        monkeypatch.setenv(name, value)  # the store process inherits the environment
    store = start_store(tmp_path / "store", known_rdis=(RDI,))
    cleanups(lambda: terminate(store.pid))

    env = service_env(settings, store, tmp_path, RDI) | {"ARCSTREAM_BUILDER__ENGINE": "fast"}
    run_pipeline(settings, store, env | otel, tmp_path)
    store_log = request_log(store)
    terminate(store.pid)  # SIGTERM: the store exports its last spans on the way out

    def arrived() -> bool:
        spans = receiver.received()
        server = [s for s in spans if s.kind == "server" and s.attributes.get("url.path", "").endswith("/arcs")]
        client = [s for s in spans if s.kind == "client" and s.attributes.get("url.full", "").endswith("/arcs")]
        return len(server) >= INVESTIGATIONS and len(client) >= INVESTIGATIONS

    wait(arrived, "the spans of every service at the receiver")
    spans = receiver.received()
    assert {s.service for s in spans} >= {"arcstream-extractor", "arcstream-builder", "arcstream-uploader"}
    assert "arcstream-store" in {s.service for s in spans}

    investigations_topic, arcs_topic = settings.topics.investigations, settings.topics.arcs
    payload_records = {record.key.decode(): record for record in records(settings, investigations_topic)}
    arc_records = {record.key.decode(): record for record in records(settings, arcs_topic)}
    assert len(payload_records) == len(arc_records) == INVESTIGATIONS
    identifier = sorted(payload_records)[0]

    # Extract: the payload's publish span starts the investigation's trace, linked to its batch.
    published = the(spans, service="arcstream-extractor", kind="producer", attr_messaging_kafka_message_key=identifier)
    assert published.name == f"publish {investigations_topic}"
    assert published.parent_span_id == ""
    payload = payload_records[identifier]
    assert published.attributes["messaging.system"] == "kafka"
    assert published.attributes["messaging.operation.type"] == "publish"
    assert published.attributes["messaging.destination.name"] == investigations_topic
    assert published.attributes["messaging.destination.partition.id"] == str(payload.partition)
    assert published.attributes["messaging.kafka.offset"] == payload.offset
    assert names(header_dict(payload.headers)["traceparent"]) == ids(published)
    [(batch_trace, batch_span)] = published.links
    batch = the(spans, span_id=batch_span)
    assert (batch.name, batch.trace_id, batch.service) == ("snapshot batch", batch_trace, "arcstream-extractor")
    other = the(
        spans,
        service="arcstream-extractor",
        kind="producer",
        attr_messaging_kafka_message_key=sorted(payload_records)[1],
    )
    assert other.trace_id != published.trace_id  # one trace per investigation, not per batch
    assert other.links == published.links

    in_trace = [s for s in spans if s.trace_id == published.trace_id]

    def child(parent: ReceivedSpan, **where: Any) -> ReceivedSpan:
        return the(in_trace, parent_span_id=parent.span_id, **where)

    # Build: process <- extractor's publish; build -> queue wait, engine; publish arc.arcs.
    processed = child(published, service="arcstream-builder", kind="consumer")
    assert processed.name == f"process {investigations_topic}"
    assert processed.attributes["messaging.operation.type"] == "process"
    assert processed.attributes["messaging.consumer.group.name"] == f"{settings.topics.prefix}-builder"
    assert processed.attributes["messaging.kafka.offset"] == payload.offset
    assert processed.attributes["messaging.kafka.message.key"] == identifier
    assert processed.attributes["arcstream.outcome"] == "built"
    build = child(processed, name="build")
    queue_wait, engine = child(build, name="queue wait"), child(build, name="engine fast")
    assert build.start_ns <= queue_wait.start_ns <= queue_wait.end_ns <= engine.start_ns <= engine.end_ns
    built = child(processed, kind="producer")
    assert built.name == f"publish {arcs_topic}"
    arc = arc_records[identifier]
    assert built.attributes["messaging.kafka.offset"] == arc.offset
    assert names(header_dict(arc.headers)["traceparent"]) == ids(built)

    # Upload: process <- builder's publish; attempt -> HTTP request -> the store's server span.
    uploaded = child(built, service="arcstream-uploader", kind="consumer")
    assert uploaded.name == f"process {arcs_topic}"
    assert uploaded.attributes["messaging.consumer.group.name"] == f"{settings.topics.prefix}-uploader"
    assert uploaded.attributes["arcstream.outcome"] == "created"
    attempt = child(uploaded, name="upload attempt")
    assert attempt.attributes["arcstream.attempt"] == 1
    request = child(attempt, kind="client")
    assert request.name == "POST"
    assert request.attributes["http.request.method"] == "POST"
    assert request.attributes["url.full"].startswith(store.url + "/v3/harvests/")
    assert request.attributes["server.address"] == "127.0.0.1"
    assert request.attributes["server.port"] == int(store.url.rsplit(":", 1)[1])
    assert request.attributes["http.response.status_code"] == 200
    served = child(request, service="arcstream-store", kind="server")
    assert served.name == "POST /v3/harvests/{harvest_id}/arcs"
    assert served.attributes["http.response.status_code"] == 200
    [logged] = [r for r in store_log if r["identifier"] == identifier and r["path"].endswith("/arcs")]
    assert names(logged["traceparent"]) == ids(request)

    assert {s.service for s in in_trace} == {
        "arcstream-extractor",
        "arcstream-builder",
        "arcstream-uploader",
        "arcstream-store",
    }
    assert all(s.parent_span_id in {p.span_id for p in in_trace} for s in in_trace if s is not published)


def test_with_tracing_off_no_exporter_runs_and_no_trace_header_is_written(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cleanups: Callable[[Callable[[], None]], None],
) -> None:
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    store = start_store(tmp_path / "store", known_rdis=(RDI,))
    cleanups(lambda: terminate(store.pid))
    prefix = make_settings().topics.prefix
    settings = make_settings(
        kafka=FAST_GROUP,
        rdi=RDI,
        builder={"engine": "fast", "group_id": f"{prefix}-builder"},
        uploader={"target_url": store.url, "group_id": f"{prefix}-uploader"},
    )
    asyncio.run(fill(settings.database_url.get_secret_value(), INVESTIGATIONS))

    assert tracing.setup(tracing.BUILDER) is False

    async def pipeline() -> None:
        await run_snapshot(settings, progress=False)
        async with running(BuilderService(settings, workers=1)), running(Uploader(settings)):
            await until(lambda: asyncio.to_thread(lambda: len(store_arcs(store)) == INVESTIGATIONS), "every ARC")

    asyncio.run(pipeline())

    assert not tracing.enabled()
    assert not type(trace.get_tracer_provider()).__module__.startswith("opentelemetry.sdk")
    assert not [thread.name for thread in threading.enumerate() if thread.name.startswith("OtelBatch")]
    for topic in (settings.topics.investigations, settings.topics.arcs):
        on_topic = asyncio.run(read_topic(settings.kafka, topic))
        assert on_topic
        assert not [r for r in on_topic if {key for key, _ in r.headers or ()} & tracing.TRACE_HEADERS], topic
    logged = request_log(store)
    assert len([r for r in logged if r["method"] == "POST" and r["path"].endswith("/arcs")]) == INVESTIGATIONS
    assert all(r["traceparent"] is None for r in logged)


def test_with_tracing_off_the_services_export_nothing_even_with_an_endpoint_around(tmp_path: Path) -> None:
    """``OTEL_TRACES_EXPORTER=none`` wins over an endpoint: a real process sends nothing to a live receiver."""
    with otlp_receiver() as receiver:
        env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
        env |= {
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        code = (
            "import sys\n"
            "import services.builder.service, services.uploader.service, services.store.app\n"
            "import services.extractor.snapshot, services.extractor.cdc.extractor\n"
            "from services.common import tracing\n"
            "with tracing.traced(tracing.UPLOADER):\n"
            "    with tracing.span('would be exported'):\n"
            "        pass\n"
            "print(tracing.enabled(), sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
        )
        result = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "False []"  # not even the OpenTelemetry API is imported
        assert receiver.requests == 0
