"""Uploader benchmark: ARCs/s into the local store with 0 % and 30 % injected 503s; prints JSON.

    python bench/upload.py [--n 500] [--retry-after 1] [--concurrency 8]

For each failure rate a fresh topic prefix gets one snapshot run of ``n`` small
ARCs (run-start, ARCs, run-end on every partition), a fresh ``arcstream store``
process serves as target, and an in-process :class:`Uploader` delivers the run.
The clock is the store's own: from the first ARC request received to the last
ARC request answered, so consumer-group joining and process start are not counted.

- ``arcs_per_s``: delivered ARCs / that interval;
- ``requests_per_arc``: ARC POSTs (including the 503 answers) / delivered ARCs;
- ``retried_503``: 503 answers the uploader retried (each waited at least Retry-After);
- ``first_try_to_accepted_*``: per ARC, first request to accepting answer. With 30 % 503s
  a few ARCs fail several times in a row and back off exponentially; that tail, not the
  average, decides the run's duration (and so ``arcs_per_s``).

Uses ``KAFKA_BOOTSTRAP_SERVERS`` if set, else starts the dev broker for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from services.common import tracing
from services.common.config import Settings, load_settings
from services.common.content_hash import content_hash
from services.common.kafka.clients import make_producer, start_client
from services.common.kafka.topics import ensure_topics
from services.common.records import H_CONTENT_HASH, H_KIND, H_RUN_ID, RunMarker, make_headers
from services.common.report import utc_now_iso
from services.dev.stack.broker import start_broker, stop_broker
from services.dev.stack.processes import terminate
from services.dev.stack.stack import start_store
from services.uploader.service import Uploader

PARTITIONS = 3


def arc(identifier: str) -> dict[str, Any]:
    return {
        "@context": "https://w3id.org/ro/crate/1.1/context",
        "@graph": [
            {
                "@id": "./",
                "@type": "Dataset",
                "additionalType": "Investigation",
                "identifier": identifier,
                "name": f"Benchmark investigation {identifier}",
                "description": "x" * 400,
            },
            {"@id": "ro-crate-metadata.json", "@type": "CreativeWork", "about": {"@id": "./"}},
        ],
    }


async def produce_run(settings: Settings, documents: list[dict[str, Any]]) -> tuple[str, float]:
    """run-start on every partition, the ARCs, run-end on every partition; the run id and its start time.

    The start time is taken once the producer is connected, right before the first marker.
    """
    run_id = f"bench-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings)
    producer = make_producer(settings.kafka)
    await start_client(producer, settings.kafka)
    topic = settings.topics.arcs
    n = len(documents)

    def marker(kind: str, partition: int, published: int = 0) -> RunMarker:
        return RunMarker(
            kind=kind,  # type: ignore[arg-type]
            run_id=run_id,
            partition=partition,
            partitions=PARTITIONS,
            expected=n,
            published=published,
            started_at=utc_now_iso(),
        )

    try:
        started = time.monotonic()
        for p in range(PARTITIONS):
            start = marker("run-start", p)
            headers = make_headers({H_KIND: "run-start", H_RUN_ID: run_id})
            await producer.send_and_wait(
                topic, start.model_dump_json().encode(), start.key, partition=p, headers=headers
            )
        published = dict.fromkeys(range(PARTITIONS), 0)
        futures = []
        for document in documents:
            identifier = document["@graph"][0]["identifier"]
            headers = make_headers({H_KIND: "arc", H_RUN_ID: run_id, H_CONTENT_HASH: content_hash(document)})
            futures.append(
                await producer.send(topic, json.dumps(document).encode(), identifier.encode(), headers=headers)
            )
        for future in futures:
            published[(await future).partition] += 1
        for p in range(PARTITIONS):
            end = marker("run-end", p, published[p])
            headers = make_headers({H_KIND: "run-end", H_RUN_ID: run_id})
            await producer.send_and_wait(topic, end.model_dump_json().encode(), end.key, partition=p, headers=headers)
    finally:
        await producer.stop()
    return run_id, started


async def deliver(settings: Settings, store_url: str) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(Uploader(settings).run(stop))
    async with httpx.AsyncClient(base_url=store_url, timeout=10) as client:
        while True:
            harvests = (await client.get("/v3/harvests")).json()
            if harvests and all(h["status"] != "RUNNING" for h in harvests):
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.2)
    stop.set()
    await task


def scenario(bootstrap: str, n: int, failure_rate: float, retry_after: float, concurrency: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        store = start_store(
            Path(tmp),
            extra_args=["--failure-rate", str(failure_rate), "--retry-after", str(retry_after), "--seed", "1"],
            known_rdis=("bench",),
        )
        try:
            settings = load_settings(
                rdi="bench",
                state_dir=Path(tmp) / "state",
                log_level="WARNING",
                kafka={"bootstrap_servers": bootstrap, "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
                topics={"prefix": f"bu{uuid.uuid4().hex[:8]}", "partitions": PARTITIONS},
                uploader={"target_url": store.url, "max_concurrent_uploads": concurrency, "max_attempts": 20},
            )
            asyncio.run(produce_run(settings, [arc(f"bench-{i:05d}") for i in range(n)]))
            wall = time.perf_counter()
            asyncio.run(deliver(settings, store.url))
            wall = time.perf_counter() - wall
            requests = httpx.get(store.url + "/_store/requests", timeout=30).json()
        finally:
            terminate(store.pid)
    arc_requests = [r for r in requests if r["identifier"] and r["method"] == "POST"]
    delivered = {r["identifier"] for r in arc_requests if r["status"] == 200}
    seconds = max(r["answered"] for r in arc_requests) - min(r["received"] for r in arc_requests)
    first: dict[str, float] = {}
    done: dict[str, float] = {}
    for request in sorted(arc_requests, key=lambda r: r["received"]):
        first.setdefault(request["identifier"], request["received"])
        if request["status"] == 200:
            done[request["identifier"]] = request["answered"]
    per_arc = sorted(done[i] - first[i] for i in done)
    return {
        "failure_rate": failure_rate,
        "arcs": n,
        "delivered": len(delivered),
        "seconds": round(seconds, 3),
        "arcs_per_s": round(len(delivered) / seconds, 1),
        "requests_per_arc": round(len(arc_requests) / max(1, len(delivered)), 3),
        "retried_503": sum(r["status"] == 503 for r in arc_requests),
        "first_try_to_accepted_p50_s": round(per_arc[len(per_arc) // 2], 3),
        "first_try_to_accepted_p99_s": round(per_arc[int(len(per_arc) * 0.99)], 3),
        "first_try_to_accepted_max_s": round(per_arc[-1], 3),
        "wall_seconds_incl_startup": round(wall, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="ARCs per scenario")
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds of injected 503s")
    parser.add_argument("--concurrency", type=int, default=8, help="max_concurrent_uploads")
    parser.add_argument("--failure-rates", type=float, nargs="+", default=[0.0, 0.3], help="share of injected 503s")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None
    with tempfile.TemporaryDirectory(prefix="bench-broker-") as tmp:
        if bootstrap is None:
            broker = start_broker(Path(tmp))
            bootstrap = broker.url
        try:
            with tracing.traced(tracing.UPLOADER):  # on only with OTEL_* set (the store inherits them)
                results = [
                    scenario(bootstrap, args.n, rate, args.retry_after, args.concurrency) for rate in args.failure_rates
                ]
                traced = tracing.enabled()
        finally:
            if broker is not None:
                stop_broker(broker)
    print(
        json.dumps(
            {
                "benchmark": "upload",
                "retry_after_s": args.retry_after,
                "max_concurrent_uploads": args.concurrency,
                "tracing": traced,
                "scenarios": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
