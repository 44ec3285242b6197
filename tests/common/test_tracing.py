"""When tracing is on, what it costs when off, and the one-line errors of a wrong ``OTEL_*`` setting.

The end-to-end trace across the real services is ``tests/observability/test_tracing.py``.
These tests run in the test process with tracing off (nothing here installs a provider).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.common import tracing
from services.common.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT = "http://127.0.0.1:4318"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    ("environ", "exporters"),
    [
        ({}, []),
        ({"OTEL_SERVICE_NAME": "mine"}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ENDPOINT + "/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, ["otlp"]),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            },
            ["otlp"],
        ),
    ],
)
def test_tracing_is_on_only_when_an_exporter_or_endpoint_is_named(
    environ: dict[str, str], exporters: list[str]
) -> None:
    assert tracing.wanted_exporters(environ) == exporters


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER=zipkin"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "http/protobuf"),
    ],
)
def test_an_unsupported_exporter_or_protocol_is_a_config_error(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        tracing.wanted_exporters(environ)


def test_a_service_started_with_an_unsupported_protocol_exits_with_one_line() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "builder"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("arcstream builder: error: OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported")


def test_off_every_helper_is_a_shared_no_op_and_headers_stay_as_they_are() -> None:
    assert not tracing.enabled()
    assert tracing.span("a") is tracing.span("b", {"x": 1})
    assert tracing.now_ns() == 0

    async def job(message: object) -> None: ...

    assert tracing.traced_job(job, "group") is job
    headers = [("arcstream.kind", b"payload")]
    publish = tracing.publish("arc.investigations", "inv-1", new_trace=True)
    assert publish.headers(headers) is headers
    with publish:
        publish.acknowledged(0, 1)


def test_off_a_stage_passes_the_incoming_trace_context_on() -> None:
    """A builder without tracing copies the payload's context to the ARC, so the trace stays one."""
    headers = [("arcstream.kind", b"arc")]
    publish = tracing.publish("arc.arcs", "inv-1")
    carried = publish.headers(headers, {"traceparent": TRACEPARENT, "arcstream.kind": "payload"})
    assert carried == [("arcstream.kind", b"arc"), ("traceparent", TRACEPARENT.encode())]
    assert publish.headers(headers, {"arcstream.kind": "payload"}) is headers
