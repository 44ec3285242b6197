"""Tracing with OpenTelemetry: one trace per investigation version, across processes and topics.

**Off unless asked for, and then free.** Tracing is configured only by the standard
``OTEL_*`` environment variables, read by the OpenTelemetry SDK itself (the one exception to
"settings live in :mod:`services.common.config`"). It is on when ``OTEL_TRACES_EXPORTER``
names an exporter (``otlp`` or ``console``) or an OTLP endpoint is set
(``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), unless
``OTEL_TRACES_EXPORTER=none`` or ``OTEL_SDK_DISABLED=true``. Otherwise the SDK is never
imported, no provider is installed, no header is written, and every helper here is a flag
check returning a shared no-op.

**Context travels with the records.** The W3C ``traceparent`` / ``tracestate`` headers go on
every payload (``arc.investigations``) and ARC (``arc.arcs``) and on every request to the ARC
store. aiokafka's own instrumentation cannot do this: it does not know that one snapshot
batch or CDC transaction yields many investigations, nor that a build or an upload outlives
the poll that read it. So propagation is explicit: :func:`publish` (producer side) and
:func:`consuming` (consumer side); HTTP goes through the official httpx and aiohttp-server
instrumentations (:func:`instrument_http_client`, :func:`instrument_http_server`).

**Names follow the semantic conventions** for messaging (``messaging.system``,
``messaging.destination.name``, ``messaging.operation.type``, ``messaging.kafka.*``,
``messaging.consumer.group.name``) and HTTP (the instrumentations, switched to the stable
HTTP conventions: ``http.request.method``, ``url.full``, ``server.address``,
``http.response.status_code``, ``error.type``). arcstream's own attributes start with
``arcstream.``. docs/observability.md ("Tracing") shows the span tree.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager, contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from services.common.errors import ConfigError
from services.common.records import Headers

if TYPE_CHECKING:
    import httpx
    from aiokafka import TopicPartition
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger(__name__)

#: Default ``service.name`` per service (``OTEL_SERVICE_NAME`` overrides it).
EXTRACTOR = "arcstream-extractor"
CDC_EXTRACTOR = "arcstream-cdc-extractor"
BUILDER = "arcstream-builder"
UPLOADER = "arcstream-uploader"
STORE = "arcstream-store"

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: The W3C trace context headers on Kafka records.
TRACE_HEADERS: frozenset[str] = frozenset({TRACEPARENT, TRACESTATE})

#: Exporters ``OTEL_TRACES_EXPORTER`` may name (``none``: off).
EXPORTERS = ("otlp", "console")

_provider: TracerProvider | None = None
_tracer: Tracer | None = None
_OFF: AbstractContextManager[Any] = contextlib.nullcontext()


class Consumed(Protocol):
    """What a consumed message tells the tracing (:class:`services.common.kafka.stage.Message`)."""

    @property
    def tp(self) -> TopicPartition: ...

    @property
    def offset(self) -> int: ...

    @property
    def identifier(self) -> str: ...

    @property
    def headers(self) -> dict[str, str]: ...

    @property
    def taken_at(self) -> float: ...


# -- switching it on -----------------------------------------------------------------------------


def wanted_exporters(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The span exporters the ``OTEL_*`` variables ask for; empty: tracing stays off.

    An OTLP endpoint alone means ``otlp`` (the SDK's default exporter); nothing set means
    off (the SDK would export to localhost:4318 by default, which a service must not do
    unasked). Unknown names and protocols are a :class:`ConfigError` (one line at start).
    """
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = [name.strip().lower() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()]
    if not named:
        endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        named = ["otlp"] if any(environ.get(name, "").strip() for name in endpoints) else []
    exporters = [name for name in named if name != "none"]
    unknown = [name for name in exporters if name not in EXPORTERS]
    if unknown:
        raise ConfigError(f"OTEL_TRACES_EXPORTER={','.join(unknown)} is not supported: use otlp, console or none")
    if "otlp" in exporters:
        protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        if (protocol or "http/protobuf").strip() != "http/protobuf":
            raise ConfigError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported: arcstream exports OTLP over "
                "http/protobuf (set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf; collectors listen on port 4318)"
            )
    return exporters


def setup(default_service_name: str) -> bool:
    """Install the tracer provider this process's ``OTEL_*`` variables ask for; ``False``: tracing is off.

    Once per process (a second call keeps the first provider). ``OTEL_SERVICE_NAME`` (or
    ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``) overrides ``default_service_name``;
    sampler, batch sizes, endpoint, headers, timeout and compression are the SDK's own
    ``OTEL_*`` variables.
    """
    global _provider, _tracer
    if _provider is not None:
        return True
    exporters = wanted_exporters()
    if not exporters:
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default_service_name}))
    provider = TracerProvider(resource=resource)
    for name in exporters:
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        else:
            exporter = ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    # The HTTP instrumentations emit the stable HTTP conventions only when asked (read once, on first use).
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    _provider = provider
    _tracer = provider.get_tracer("arcstream")
    log.info("tracing on: service %s, exporter %s", resource.attributes.get(SERVICE_NAME), ", ".join(exporters))
    return True


def enabled() -> bool:
    return _tracer is not None


def flush() -> None:
    """Export what is buffered now (a process that exits without running ``atexit`` handlers)."""
    if _provider is not None:
        _provider.force_flush()


@contextmanager
def traced(default_service_name: str) -> Iterator[None]:
    """Tracing for the lifetime of a service command: set up, then export what is left at its end."""
    setup(default_service_name)
    try:
        yield
    finally:
        if _provider is not None:
            _provider.shutdown()


# -- spans -----------------------------------------------------------------------------------------


def _wall_ns(monotonic_s: float) -> int:
    """A ``time.monotonic()`` reading as epoch nanoseconds (what span timestamps are)."""
    return time.time_ns() - int((time.monotonic() - monotonic_s) * 1e9)


def span(name: str, attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[Any]:
    """An internal span, current inside the block (a shared no-op when tracing is off)."""
    if _tracer is None:
        return _OFF
    return _tracer.start_as_current_span(name, attributes=attributes)


def record_span(name: str, start_ns: int, end_ns: int, attributes: Mapping[str, Any] | None = None) -> None:
    """A finished child of the current span, from times measured elsewhere (e.g. in a worker process)."""
    if _tracer is not None:
        _tracer.start_span(name, start_time=start_ns, attributes=attributes).end(end_time=end_ns)


def record_work(
    queued_ns: int, work_s: float | None, wait_name: str, work_name: str, attributes: Mapping[str, Any]
) -> None:
    """Split the time since ``queued_ns`` into a wait and the last ``work_s`` seconds of work, as two spans.

    For work done in another process that reports only its own duration (a build worker):
    what it did not spend working, the job spent waiting (for a free worker, and in transfer).
    """
    if _tracer is None or work_s is None:
        return
    end = time.time_ns()
    work_start = max(queued_ns, end - int(work_s * 1e9))
    record_span(wait_name, queued_ns, work_start)
    record_span(work_name, work_start, end, {key: value for key, value in attributes.items() if value is not None})


def now_ns() -> int:
    """Epoch nanoseconds when tracing is on (for :func:`record_span`), else 0 without asking the clock."""
    return time.time_ns() if _tracer is not None else 0


def consuming(message: Consumed, group: str) -> AbstractContextManager[Any]:
    """The ``process <topic>`` span of one consumed record, current inside the block.

    Its parent is the producer's span named by the record's ``traceparent`` header (a record
    without one starts a trace); it starts when the stage took the record in, so the time it
    waited inside the stage is part of it.
    """
    if _tracer is None:
        return _OFF
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    return _tracer.start_as_current_span(
        f"process {message.tp.topic}",
        context=propagate.extract(message.headers),
        kind=SpanKind.CONSUMER,
        start_time=_wall_ns(message.taken_at),
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": message.tp.topic,
            "messaging.destination.partition.id": str(message.tp.partition),
            "messaging.kafka.offset": message.offset,
            "messaging.kafka.message.key": message.identifier,
            "messaging.consumer.group.name": group,
        },
    )


def traced_job[M: Consumed](job: Callable[[M], Awaitable[None]], group: str) -> Callable[[M], Awaitable[None]]:
    """``job`` run inside its message's :func:`consuming` span; ``job`` itself when tracing is off."""
    if _tracer is None:
        return job

    async def run(message: M) -> None:
        with consuming(message, group):
            await job(message)

    return run


def consuming_batch(name: str, group: str, count: int, attributes: Mapping[str, Any]) -> AbstractContextManager[Any]:
    """A ``process`` span over many records that carry no trace context (e.g. one CDC transaction)."""
    if _tracer is None:
        return _OFF
    from opentelemetry.trace import SpanKind

    return _tracer.start_as_current_span(
        name,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.consumer.group.name": group,
            "messaging.batch.message_count": count,
            **attributes,
        },
    )


def outcome(status: str, error_code: str | None = None) -> None:
    """Note a message's outcome on the current span; a failure marks it as an error (``error.type``)."""
    if _tracer is None:
        return
    from opentelemetry import trace
    from opentelemetry.trace import StatusCode

    current = trace.get_current_span()
    current.set_attribute("arcstream.outcome", status)
    if error_code is not None:
        current.set_attribute("error.type", error_code)
        current.set_status(StatusCode.ERROR, error_code)


def copy_trace_headers(headers: Headers, incoming: Mapping[str, str]) -> Headers:
    """``headers`` plus the trace context headers of ``incoming`` (none there: ``headers`` unchanged)."""
    carried = [(key, incoming[key].encode()) for key in (TRACEPARENT, TRACESTATE) if key in incoming]
    return [*headers, *carried] if carried else headers


class Publish:
    """The ``publish <topic>`` (producer) span of one record, or nothing when tracing is off.

    Ended by :meth:`acknowledged` (with where the record landed), :meth:`failed`, or by leaving
    its ``with`` block.
    """

    def __init__(self, span: Span | None) -> None:
        self._span = span

    def headers(self, headers: Headers, incoming: Mapping[str, str] | None = None) -> Headers:
        """``headers`` with this span's trace context (replacing any there).

        Off: ``headers`` unchanged, plus ``incoming``'s trace context headers if given, so a
        stage without tracing passes the trace on (the builder copies it from payload to ARC).
        """
        if self._span is None:
            return copy_trace_headers(headers, incoming) if incoming is not None else headers
        from opentelemetry import propagate, trace

        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(self._span))
        kept = [(key, value) for key, value in headers if key not in carrier and key not in TRACE_HEADERS]
        return kept + [(key, value.encode()) for key, value in carrier.items()]

    def acknowledged(self, partition: int, offset: int) -> None:
        if self._span is not None and self._span.is_recording():
            self._span.set_attributes(
                {"messaging.destination.partition.id": str(partition), "messaging.kafka.offset": offset}
            )
            self._span.end()

    def failed(self, exc: BaseException) -> None:
        if self._span is not None and self._span.is_recording():
            from opentelemetry.trace import StatusCode

            self._span.record_exception(exc)
            self._span.set_attribute("error.type", type(exc).__name__)
            self._span.set_status(StatusCode.ERROR, str(exc))
            self._span.end()

    def __enter__(self) -> Publish:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            self.failed(exc)
        elif self._span is not None and self._span.is_recording():
            self._span.end()


_NO_PUBLISH = Publish(None)


def publish(topic: str, key: str, *, new_trace: bool = False, attributes: Mapping[str, Any] | None = None) -> Publish:
    """Start the producer span of one record keyed ``key``.

    ``new_trace``: the record starts its own trace (one per investigation version), linked to
    the current span (the snapshot batch or CDC transaction that produced it) instead of
    being its child, so a batch of 250 investigations makes 250 traces, not one.
    """
    if _tracer is None:
        return _NO_PUBLISH
    from opentelemetry import context, trace
    from opentelemetry.trace import Link, SpanKind

    parent = None
    links: list[Link] = []
    if new_trace:
        parent = context.Context()
        current = trace.get_current_span().get_span_context()
        if current.is_valid:
            links.append(Link(current))
    return Publish(
        _tracer.start_span(
            f"publish {topic}",
            context=parent,
            kind=SpanKind.PRODUCER,
            links=links,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "publish",
                "messaging.destination.name": topic,
                "messaging.kafka.message.key": key,
                **(attributes or {}),
            },
        )
    )


@asynccontextmanager
async def _waiting[T](name: str, gate: AbstractAsyncContextManager[T]) -> AsyncIterator[T]:
    assert _tracer is not None
    wait = _tracer.start_span(name)
    try:
        async with gate as value:
            wait.end()
            yield value
    finally:
        if wait.is_recording():
            wait.end()


def waiting[T](name: str, gate: AbstractAsyncContextManager[T], *, traced: bool) -> AbstractAsyncContextManager[T]:
    """``gate`` (an async context manager that may wait on entry), with a span over the wait when ``traced``."""
    if _tracer is None or not traced:
        return gate
    return _waiting(name, gate)


# -- HTTP ------------------------------------------------------------------------------------------


def instrument_http_client(client: httpx.AsyncClient) -> None:
    """Client spans and ``traceparent`` on every request of ``client`` (official httpx instrumentation)."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=_provider)


def instrument_http_server() -> None:
    """Server spans continuing the caller's ``traceparent`` for aiohttp applications created after this call."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

    instrumentor = AioHttpServerInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=_provider)
