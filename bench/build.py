"""Builder benchmark: plain single-process engine loop vs the builder service topic to topic; prints JSON.

    python bench/build.py [--n 40] [--seed 7] [--profile mixed] [--workers W] [--engine arctrl] [--repeat 2]

1. ``single_process``: this process does, in a loop, the per-ARC work a build needs
   (validate the payload JSON, build, content hash: :func:`services.builder.worker.build`;
   no Kafka, no process pool) - the ceiling per core. ``single_process_engine_only``
   keeps the earlier baseline (the engine call on an already validated payload, no
   hash): with arctrl the difference is ~2 %, with the fast engine ~2x.
2. ``service``: the payloads go to ``arc.investigations`` of a fresh topic prefix;
   a :class:`BuilderService` with ``W`` workers (joined and warmed up beforehand)
   turns them into ``arc.arcs``; the clock runs from the first payload produced to
   the last ARC acknowledged (counted with the service's own metrics).
3. ``efficiency`` = service ARCs/s / (W x single-process ARCs/s); goal >= 0.9
   (``efficiency_engine_only`` against the earlier baseline).

The machine is shared, so the two measurements alternate round by round (single,
service, single, service, ...) and each keeps its fastest round: both then see
the same background load, and the minimum is the least disturbed round.
``service.build_s`` (the sum of build times the workers reported) shows how much
of the service's wall time the workers were busy; the rest is pipeline overhead.

Uses ``KAFKA_BOOTSTRAP_SERVERS`` if set, else starts the dev broker for the run.

Engines (``bench/engines.py``): ``--engines`` compares the ``fast`` and ``arctrl``
engines without Kafka (ARCs/s, ms per ARC, speed-up on ``mixed`` and ``large``,
time per cell by table rows, per-payload worker costs) and prints that JSON instead;
``--engine noop`` runs the pipeline with an engine that costs nothing (its ceiling).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import engines
from services.builder import sizing, worker
from services.builder.engines import EngineFunction, engine_path, load_engine, register_engine
from services.builder.service import BuilderService
from services.common import metrics, tracing
from services.common.config import Settings, load_settings
from services.common.errors import MappingError
from services.common.kafka.clients import make_producer, start_client
from services.common.kafka.topics import ensure_topics
from services.common.payload import InvestigationPayload
from services.common.records import dumps
from services.dev.generator import generate_payloads
from services.dev.stack.broker import start_broker, stop_broker


def _engine_round(build: EngineFunction, payloads: list[InvestigationPayload]) -> float:
    started = time.perf_counter()
    for payload in payloads:
        with contextlib.suppress(MappingError):  # a refused payload still cost its build time
            build(payload)
    return time.perf_counter() - started


def _worker_round(raw: list[bytes]) -> float:
    """The per-ARC work a build needs, as a worker does it: validate the JSON, build, content hash."""
    started = time.perf_counter()
    for payload_json in raw:
        worker.build(payload_json)
    return time.perf_counter() - started


def _single_round(build: EngineFunction, payloads: list[InvestigationPayload], raw: list[bytes]) -> tuple[float, float]:
    return _worker_round(raw), _engine_round(build, payloads)


def _failed() -> float:
    """Messages the build stage failed (dead-lettered), from its metrics."""
    return sum(
        sample.value
        for metric in metrics.MESSAGES_FAILED.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("stage") == "build"
    )


def _handled() -> float:
    """Messages the build stage finished (produced or failed), from its metrics."""
    out = metrics.REGISTRY.get_sample_value("arcstream_messages_out_total", {"stage": "build"}) or 0.0
    return out + _failed()


def _build_seconds() -> float:
    return metrics.REGISTRY.get_sample_value("arcstream_duration_seconds_sum", {"stage": "build"}) or 0.0


async def _until(condition: Callable[[], bool]) -> None:
    for _ in itertools.count():
        if condition():
            return
        await asyncio.sleep(0.02)


async def _produce(settings: Settings, payloads: list[tuple[str, bytes]]) -> None:
    """Keyed by the payload's identifier: the builder fails a payload whose key differs (``key-mismatch``)."""
    producer = make_producer(settings.kafka)
    await start_client(producer, settings.kafka)
    try:
        for identifier, value in payloads:
            await producer.send(settings.topics.investigations, value, key=identifier.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _service_round(settings: Settings, payloads: list[tuple[str, bytes]]) -> tuple[float, float, int]:
    """Seconds, worker build seconds and failed builds of one round.

    Payloads are serialised before the clock starts: that is the extractor's work, not the
    builder's. Rounds reuse the keys; a round starts once the previous one is handled, so no
    version of a key supersedes another. Failed builds are counted so that a round of
    failures (which end before the engine runs) cannot pass for build throughput.
    """
    before, busy_before, failed_before = _handled(), _build_seconds(), _failed()
    started = time.perf_counter()
    await _produce(settings, payloads)
    await _until(lambda: _handled() - before >= len(payloads))
    return time.perf_counter() - started, _build_seconds() - busy_before, int(_failed() - failed_before)


async def measure(
    settings: Settings, payloads: list[InvestigationPayload], engine: str, workers: int, repeat: int
) -> dict[str, Any]:
    build = load_engine(engine_path(engine))
    worker.init_worker(engine_path(engine))
    raw = [dumps(payload.model_dump(mode="json")) for payload in payloads]
    worker.build(raw[0])  # warm-up: imports and first-call costs are not per-ARC costs
    await ensure_topics(settings)
    builder = BuilderService(settings, engine=engine, workers=workers, group_id=f"bench-{settings.topics.prefix}")
    stop = asyncio.Event()
    task = asyncio.create_task(builder.run(stop))
    await _until(lambda: bool(builder.assignment()))
    messages = [(payload.identifier, value) for payload, value in zip(payloads, raw, strict=True)]
    await _service_round(settings, messages[: workers * 2])  # every worker's first build is slow
    single: list[tuple[float, float]] = []
    service: list[tuple[float, float, int]] = []
    for _ in range(repeat):
        single.append(await asyncio.to_thread(_single_round, build, payloads, raw))
        service.append(await _service_round(settings, messages))
    stop.set()
    await task
    best_single = min(s for s, _ in single)
    best_engine = min(e for _, e in single)
    best_service, busy, _ = min(service)
    n = len(payloads)
    return {
        "single_process": {
            "definition": "validate payload JSON + build + content hash per ARC (what a build needs)",
            "arcs": n,
            "seconds": round(best_single, 3),
            "arcs_per_s": round(n / best_single, 3),
            "rounds_s": [round(s, 3) for s, _ in single],
        },
        "single_process_engine_only": {
            "definition": "engine call on an already validated payload, no hash (the baseline before 2026-11-22)",
            "arcs": n,
            "seconds": round(best_engine, 3),
            "arcs_per_s": round(n / best_engine, 3),
            "rounds_s": [round(e, 3) for _, e in single],
        },
        "service": {
            "arcs": n,
            "workers": workers,
            "seconds": round(best_service, 3),
            "arcs_per_s": round(n / best_service, 3),
            "build_s": round(busy, 3),
            "rounds_s": [round(s, 3) for s, _, _ in service],
            "failed_per_round": [failed for _, _, failed in service],
        },
        "efficiency": round((n / best_service) / (workers * n / best_single), 3),
        "efficiency_engine_only": round((n / best_service) / (workers * n / best_engine), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", default="mixed", choices=["small", "mixed", "large"])
    parser.add_argument("--workers", type=int, default=None, help="default: max_concurrent_arc_builds (cores - 1)")
    parser.add_argument("--engine", default="arctrl")
    parser.add_argument("--repeat", type=int, default=2, help="alternating timed rounds; the best of each counts")
    parser.add_argument("--engines", action="store_true", help="compare the fast and arctrl engines (no Kafka)")
    engines.add_arguments(parser)
    args = parser.parse_args()
    if args.engines:
        print(json.dumps(engines.run(args), indent=2))
        return
    register_engine("noop", engines.NOOP_ENGINE)
    sizing.SIZING["noop"] = sizing.FAST  # the pipeline's ceiling for millisecond builds

    payloads = generate_payloads(args.n, args.seed, args.profile)
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    with tempfile.TemporaryDirectory() as tmp:
        if not bootstrap:
            broker = start_broker(Path(tmp))
            bootstrap = broker.url
        try:
            settings = load_settings(
                kafka={"bootstrap_servers": bootstrap, "session_timeout_ms": 6000, "heartbeat_interval_ms": 500},
                topics={"prefix": f"bench{uuid.uuid4().hex[:8]}", "partitions": 6},
                state_dir=Path(tmp) / "state",
            )
            workers = args.workers or settings.max_concurrent_arc_builds
            with tracing.traced(tracing.BUILDER):  # on only with OTEL_* set (bench/tracing.py compares)
                figures = asyncio.run(measure(settings, payloads, args.engine, workers, args.repeat))
                traced = tracing.enabled()
        finally:
            if broker is not None:
                stop_broker(broker)

    result = {
        "benchmark": "build",
        "engine": args.engine,
        "corpus": {"profile": args.profile, "n": args.n, "seed": args.seed},
        "cpu_count": os.cpu_count(),
        "tracing": traced,
        **figures,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
