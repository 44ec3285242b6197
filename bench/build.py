"""Builder benchmark: plain arctrl loop vs the builder service topic to topic; prints JSON.

    python bench/build.py [--n 40] [--seed 7] [--profile mixed] [--workers W] [--engine arctrl]

1. ``single_process``: one process builds every payload of the corpus in a loop
   (the engine function itself, no Kafka, no process pool) - the ceiling per core.
2. ``service``: the payloads go to ``arc.investigations`` of a fresh topic prefix,
   a :class:`BuilderService` with ``W`` workers (already joined and warmed up)
   turns them into ``arc.arcs``; the clock runs from the first payload produced
   to the last ARC acknowledged (counted with the service's own metrics).
3. ``efficiency`` = service ARCs/s / (W x single-process ARCs/s); goal >= 0.9.

Uses ``KAFKA_BOOTSTRAP_SERVERS`` if set, else starts the dev broker for the run.
"""

from __future__ import annotations

import argparse
import asyncio
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

from services.builder.engines import engine_path, load_engine
from services.builder.service import BuilderService
from services.common import metrics
from services.common.config import Settings, load_settings
from services.common.devstack.broker import start_broker, stop_broker
from services.common.errors import MappingError
from services.common.kafka.clients import make_producer, start_client
from services.common.kafka.topics import ensure_topics
from services.common.payload import InvestigationPayload
from services.common.records import dumps
from services.common.source.generator import generate_payloads


def single_process(payloads: list[InvestigationPayload], engine: str) -> dict[str, Any]:
    build = load_engine(engine_path(engine))
    build(payloads[0])  # warm-up: imports and first-call costs are not per-ARC costs
    failed = 0
    started = time.perf_counter()
    for payload in payloads:
        try:
            build(payload)
        except MappingError:
            failed += 1
    seconds = time.perf_counter() - started
    return {
        "arcs": len(payloads),
        "failed": failed,
        "seconds": round(seconds, 3),
        "arcs_per_s": len(payloads) / seconds,
    }


def _handled() -> float:
    out = metrics.REGISTRY.get_sample_value("arcstream_messages_out_total", {"stage": "build"}) or 0.0
    failed = sum(
        sample.value
        for metric in metrics.MESSAGES_FAILED.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("stage") == "build"
    )
    return out + failed


async def _until(condition: Callable[[], bool]) -> None:
    for _ in itertools.count():
        if condition():
            return
        await asyncio.sleep(0.02)


async def _produce(settings: Settings, payloads: list[InvestigationPayload], key_prefix: str = "") -> None:
    producer = make_producer(settings.kafka)
    await start_client(producer, settings.kafka)
    try:
        for payload in payloads:
            value = dumps(payload.model_dump(mode="json"))
            await producer.send(settings.topics.investigations, value, key=f"{key_prefix}{payload.identifier}".encode())
        await producer.flush()
    finally:
        await producer.stop()


async def service(
    settings: Settings, payloads: list[InvestigationPayload], engine: str, workers: int
) -> dict[str, Any]:
    await ensure_topics(settings)
    builder = BuilderService(settings, engine=engine, workers=workers, group_id=f"bench-{settings.topics.prefix}")
    stop = asyncio.Event()
    task = asyncio.create_task(builder.run(stop))
    await _until(lambda: bool(builder.assignment()))
    # Warm-up, as for the single-process loop: every worker's first build pays one-off import costs.
    before = _handled()
    await _produce(settings, payloads[: workers * 2], key_prefix="warm-up/")
    await _until(lambda: _handled() - before >= workers * 2)
    before = _handled()
    started = time.perf_counter()
    await _produce(settings, payloads)
    await _until(lambda: _handled() - before >= len(payloads))
    seconds = time.perf_counter() - started
    stop.set()
    await task
    return {
        "arcs": len(payloads),
        "workers": workers,
        "seconds": round(seconds, 3),
        "arcs_per_s": len(payloads) / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", default="mixed", choices=["small", "mixed", "large"])
    parser.add_argument("--workers", type=int, default=None, help="default: max_concurrent_arc_builds (cores - 1)")
    parser.add_argument("--engine", default="arctrl")
    args = parser.parse_args()

    payloads = generate_payloads(args.n, args.seed, args.profile)
    single = single_process(payloads, args.engine)

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
            topic_to_topic = asyncio.run(service(settings, payloads, args.engine, workers))
        finally:
            if broker is not None:
                stop_broker(broker)

    result = {
        "benchmark": "build",
        "engine": args.engine,
        "corpus": {"profile": args.profile, "n": args.n, "seed": args.seed},
        "cpu_count": os.cpu_count(),
        "single_process": single,
        "service": topic_to_topic,
        "efficiency": topic_to_topic["arcs_per_s"] / (workers * single["arcs_per_s"]),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
