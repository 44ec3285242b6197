"""The Prometheus series every stage exposes, defined once so services only call helpers.

Every series carries ``stage`` (``extract`` | ``build`` | ``upload``), so one
dashboard reads all three services, and several stages may share one process
(``arcstream demo``) without clashing. The series live in arcstream's own
:data:`REGISTRY` (plus the process/platform/GC collectors), so importing a
library that registers into prometheus-client's global registry never adds
unexplained series to ``/metrics``.

``docs/operations.md`` explains what each series means and how to read it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Literal, Protocol

from aiokafka import TopicPartition
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

from services.common.report import OutcomeRecord

StageName = Literal["extract", "build", "upload"]
STAGES: tuple[StageName, ...] = ("extract", "build", "upload")

REGISTRY = CollectorRegistry(auto_describe=True)
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

#: Seconds; from a fast local upload (milliseconds) to a large RO-Crate build (minutes).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
#: Seconds from the source commit to acceptance by a stage; CDC aims at seconds, snapshots take longer.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

MESSAGES_IN = Counter(
    "arcstream_messages_in_total",
    "Messages a stage took in (rows or changes for extract, topic records for build and upload).",
    ["stage"],
    registry=REGISTRY,
)
MESSAGES_OUT = Counter(
    "arcstream_messages_out_total",
    "Messages a stage produced to its output topic or delivered to the target.",
    ["stage"],
    registry=REGISTRY,
)
MESSAGES_FAILED = Counter(
    "arcstream_messages_failed_total",
    "Messages that failed permanently (reported as 'failed', usually also sent to the DLQ), by error code.",
    ["stage", "error_code"],
    registry=REGISTRY,
)
DLQ_RECORDS = Counter(
    "arcstream_dlq_records_total",
    "Dead letters written (failed inputs, unchanged, with the reason in headers), by error code.",
    ["stage", "error_code"],
    registry=REGISTRY,
)
OUTCOMES = Counter(
    "arcstream_outcomes_total",
    "Outcome records written to the report topic, by status.",
    ["stage", "status"],
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "arcstream_in_flight",
    "Messages taken in but not yet fully handled (their offsets are not committable yet).",
    ["stage"],
    registry=REGISTRY,
)
PAUSED_PARTITIONS = Gauge(
    "arcstream_paused_partitions",
    "Assigned partitions the stage has paused because its in-flight limit is reached.",
    ["stage"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "arcstream_consumer_lag",
    "Records in a partition after the consumer's position (highwater minus position).",
    ["stage", "topic", "partition"],
    registry=REGISTRY,
)
SECONDS_SINCE_PROGRESS = Gauge(
    "arcstream_seconds_since_last_progress",
    "Seconds since the stage last finished a message (since process start if it never did).",
    ["stage"],
    registry=REGISTRY,
)
DURATION = Histogram(
    "arcstream_duration_seconds",
    "Time one stage spent on one message (build: the arctrl/fast build; upload: all attempts).",
    ["stage"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
LATENCY = Histogram(
    "arcstream_end_to_end_latency_seconds",
    "Seconds from the source commit (or extraction) to acceptance by this stage.",
    ["stage"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
HTTP_RESPONSES = Counter(
    "arcstream_http_responses_total",
    "HTTP responses a stage received, by status code ('error' when no response arrived).",
    ["stage", "code"],
    registry=REGISTRY,
)
TARGET_UP = Gauge(
    "arcstream_target_up",
    "1 when the upload target's last answer was an HTTP response other than 502/503/504; 0 after a "
    "timeout, a connection error or a 502/503/504, and 0 until the first request of this process was answered.",
    registry=REGISTRY,
)

#: Answers meaning "no target behind this address right now" (a gateway or the target itself says so).
TARGET_DOWN_STATUSES = frozenset({502, 503, 504})

TARGET_UNAVAILABLE = Gauge(
    "arcstream_target_unavailable",
    "1 while the upload target is unavailable (connection errors, timeouts, 502/503/504) and delivery is paused.",
    registry=REGISTRY,
)
TARGET_MISCONFIGURED = Gauge(
    "arcstream_target_misconfigured",
    "1 while the upload target refuses this uploader (unknown RDI, certificate missing or not for this RDI).",
    ["reason"],
    registry=REGISTRY,
)
#: Reasons of ``arcstream_target_misconfigured`` (each series is exported, 0 or 1).
MISCONFIGURED_REASONS = ("unknown-rdi", "certificate-required", "rdi-not-authorised")

_STARTED_AT = time.monotonic()
_last_progress: dict[str, float] = {}
_progress_lock = threading.Lock()


def _seconds_since(stage: str) -> float:
    with _progress_lock:
        last = _last_progress.get(stage, _STARTED_AT)
    return time.monotonic() - last


def _since_progress(stage: str) -> Callable[[], float]:
    return lambda: _seconds_since(stage)


for _stage in STAGES:
    # Children exist from the start, so every series shows up at 0 before the first message.
    MESSAGES_IN.labels(_stage)
    MESSAGES_OUT.labels(_stage)
    IN_FLIGHT.labels(_stage)
    PAUSED_PARTITIONS.labels(_stage)
    SECONDS_SINCE_PROGRESS.labels(_stage).set_function(_since_progress(_stage))


def message_in(stage: StageName, count: int = 1) -> None:
    """Count messages taken in."""
    MESSAGES_IN.labels(stage).inc(count)


def message_out(stage: StageName, count: int = 1) -> None:
    """Count messages produced or delivered; this is progress."""
    MESSAGES_OUT.labels(stage).inc(count)
    mark_progress(stage)


def message_failed(stage: StageName, error_code: str, count: int = 1) -> None:
    """Count a permanent failure; handling a message, even by failing it, is progress."""
    MESSAGES_FAILED.labels(stage, error_code).inc(count)
    mark_progress(stage)


def set_target_state(*, unavailable: bool, misconfigured: str | None) -> None:
    """Publish the upload target's state (see services/uploader/health.py)."""
    TARGET_UNAVAILABLE.set(1 if unavailable else 0)
    for reason in MISCONFIGURED_REASONS:
        TARGET_MISCONFIGURED.labels(reason).set(1 if reason == misconfigured else 0)


def dead_letter(stage: StageName, error_code: str) -> None:
    """Count a dead letter written for ``stage``."""
    DLQ_RECORDS.labels(stage, error_code).inc()


def mark_progress(stage: StageName) -> None:
    """Reset ``arcstream_seconds_since_last_progress`` for ``stage``."""
    with _progress_lock:
        _last_progress[stage] = time.monotonic()


def set_in_flight(stage: StageName, count: int) -> None:
    IN_FLIGHT.labels(stage).set(count)


def set_paused_partitions(stage: StageName, count: int) -> None:
    PAUSED_PARTITIONS.labels(stage).set(count)


def observe_duration(stage: StageName, seconds: float) -> None:
    DURATION.labels(stage).observe(seconds)


def observe_latency(stage: StageName, seconds: float) -> None:
    LATENCY.labels(stage).observe(max(0.0, seconds))


def http_response(stage: StageName, status: int | None) -> None:
    """Count one HTTP exchange; ``None`` when no response arrived (timeout, refused connection)."""
    HTTP_RESPONSES.labels(stage, str(status) if status is not None else "error").inc()


def target_answered(status: int | None) -> None:
    """Set ``arcstream_target_up`` from one exchange; ``None`` when no response arrived.

    Only the uploader calls this, so the series reads 0 elsewhere and before the first
    request: alert on it together with ``arcstream_http_responses_total`` (see
    ``deploy/prometheus/alerts.yml``), never alone.
    """
    TARGET_UP.set(0 if status is None or status in TARGET_DOWN_STATUSES else 1)


def record_outcome(outcome: OutcomeRecord) -> None:
    """Account for one outcome record: status count, duration and latency when it carries them."""
    OUTCOMES.labels(outcome.stage, outcome.status).inc()
    if outcome.duration_ms is not None:
        observe_duration(outcome.stage, outcome.duration_ms / 1000)
    if outcome.latency_ms is not None:
        observe_latency(outcome.stage, outcome.latency_ms / 1000)


def set_consumer_lag(stage: StageName, lags: dict[TopicPartition, int]) -> None:
    """Publish per-partition lag; partitions no longer in ``lags`` (revoked) disappear."""
    wanted = {(tp.topic, str(tp.partition)) for tp in lags}
    for tp, lag in lags.items():
        CONSUMER_LAG.labels(stage, tp.topic, str(tp.partition)).set(lag)
    for labels in _lag_children(stage):
        if labels[1:] not in wanted:
            CONSUMER_LAG.remove(*labels)


def _lag_children(stage: str) -> Iterable[tuple[str, str, str]]:
    children = [sample.labels for metric in CONSUMER_LAG.collect() for sample in metric.samples]
    return [(c["stage"], c["topic"], c["partition"]) for c in children if c["stage"] == stage]


class _LagSource(Protocol):
    def assignment(self) -> set[TopicPartition]: ...

    def highwater(self, partition: TopicPartition) -> int | None: ...

    async def position(self, partition: TopicPartition) -> int: ...


async def update_consumer_lag(stage: StageName, consumer: _LagSource) -> dict[TopicPartition, int]:
    """Compute lag of every assigned partition from the consumer's highwater and position.

    The highwater is what the last fetch response reported, so call this after
    ``getmany`` (e.g. once per poll loop). Partitions not fetched yet are left out.
    """
    lags: dict[TopicPartition, int] = {}
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        position = await consumer.position(tp)
        lags[tp] = max(0, highwater - position)
    set_consumer_lag(stage, lags)
    return lags
