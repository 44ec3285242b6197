"""Snapshot re-run of unchanged ARCs into the local store: what the second run costs; prints JSON.

    python bench/rerun.py [--n 500] [--concurrency 8]

One uploader (in this process, as in ``bench/upload.py``) keeps running while two
snapshot runs of the same ``n`` small ARCs (the documents of ``bench/upload.py``)
go to ``arc.arcs`` of a fresh topic prefix, one after the other, against a fresh
``arcstream store`` process. The first run delivers every ARC; the second carries
the same, unchanged ARCs. Per run:

- ``requests``: what the store received from the run's first marker to the harvest
  being closed, by method and path (ids replaced by ``{id}``) and answer status;
- ``outcomes``: the upload outcomes of the run (``arc.report``) by status;
- ``harvest``: the store's ``GET /v3/harvests/{id}`` after closing (status, statistics);
- ``wall_s``: from just before the run's first run-start marker is produced to the
  store answering the request that closed the harvest (both on this machine's
  monotonic clock); ``first_arc_to_closed_s`` starts at the first ARC request instead;
- ``store_cpu_s`` / ``bench_cpu_s``: CPU seconds of the store process (with its children)
  and of this process (uploader, producer, report reader) over the same interval.

Before each run the bench waits until the store is idle (``store_idle_wait_s``): the store
checks new ARCs with arctrl in a background process (git sync), and that backlog of the
first run must not run during the second. ``ARCSTREAM_STORE__GIT_SYNC=false`` switches it off.

The harvest counts as closed by the first 2xx answer to ``POST /v3/harvests/{id}/complete``,
``PATCH /v3/harvests/{id}`` or ``DELETE /v3/harvests/{id}``. The bench polls the store's
request log (``/_store/``, which the log itself leaves out), so its own polling is not
among the counted requests.

Uses ``KAFKA_BOOTSTRAP_SERVERS`` if set, else starts the dev broker for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import psutil
from aiokafka import TopicPartition

from bench.upload import PARTITIONS, arc, produce_run
from services.common.config import Settings, load_settings
from services.common.kafka.clients import make_consumer, start_client
from services.common.kafka.topics import ensure_topics
from services.common.records import loads
from services.dev.stack.broker import start_broker, stop_broker
from services.dev.stack.processes import terminate
from services.dev.stack.stack import start_store
from services.uploader.service import Uploader

RDI = "bench"
_ID = re.compile(r"^(/v3/(?:harvests|arcs))/[^/]+")
_ID_SUB = r"\1/{id}"
_CLOSING = re.compile(r"^(?:POST /v3/harvests/[^/]+/complete|PATCH /v3/harvests/[^/]+|DELETE /v3/harvests/[^/]+)$")


def path_class(request: dict[str, Any]) -> str:
    """``METHOD /path`` with harvest and ARC ids replaced by ``{id}``."""
    return f"{request['method']} {_ID.sub(_ID_SUB, request['path'])}"


def bench_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def store_cpu_s(pid: int) -> float:
    """CPU seconds of the store process and its live children (the git-sync worker, where there is one)."""
    process = psutil.Process(pid)
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


async def store_idle(pid: int, limit_s: float = 180.0) -> float:
    """Wait until the store used < 5 % of a core over a second (background work of the previous run done)."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        before = store_cpu_s(pid)
        await asyncio.sleep(1.0)
        if store_cpu_s(pid) - before < 0.05:
            break
    return time.monotonic() - started


class Outcomes:
    """Every record of the report topic, read in the background."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.records: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = make_consumer(self.settings.kafka, [], group_id=None)
        await start_client(consumer, self.settings.kafka)
        topic = self.settings.topics.report
        consumer.assign([TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())])
        self._task = asyncio.create_task(self._run(consumer))

    async def _run(self, consumer: Any) -> None:
        try:
            while True:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    self.records.extend(loads(r.value) for r in records if r.value is not None)
        finally:
            await consumer.stop()

    def of_run(self, run_id: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("stage") == "upload" and r.get("run_id") == run_id]

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def request_log(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    return list((await client.get("/_store/requests")).json())


async def one_run(
    settings: Settings,
    client: httpx.AsyncClient,
    outcomes: Outcomes,
    store_pid: int,
    documents: list[dict[str, Any]],
    uploader: asyncio.Task[None],
) -> dict[str, Any]:
    settle_s = await store_idle(store_pid)
    mark = len(await request_log(client))
    cpu_store, cpu_bench = store_cpu_s(store_pid), bench_cpu_s()
    run_id, started = await produce_run(settings, documents)
    while True:
        requests = (await request_log(client))[mark:]
        closing = [r for r in requests if _CLOSING.match(f"{r['method']} {r['path']}") and 200 <= r["status"] < 300]
        if closing:
            break
        if uploader.done():
            uploader.result()
            raise RuntimeError("the uploader stopped before the harvest was closed")
        await asyncio.sleep(0.05)
    cpu_store, cpu_bench = store_cpu_s(store_pid) - cpu_store, bench_cpu_s() - cpu_bench
    closed = closing[0]
    requests = [r for r in requests if r["received"] <= closed["answered"]]
    harvest_id = closed["path"].split("/")[3]
    harvest = (await client.get(f"/v3/harvests/{harvest_id}")).json()
    for _ in range(300):  # outcomes are acknowledged before a run-end counts, but the reader may lag
        if len(outcomes.of_run(run_id)) >= len(documents):
            break
        await asyncio.sleep(0.1)
    by_class: dict[str, Counter[int]] = {}
    for request in requests:
        by_class.setdefault(path_class(request), Counter())[request["status"]] += 1
    arc_requests = [r for r in requests if r["identifier"]]
    return {
        "run_id": run_id,
        "requests": {name: dict(sorted(statuses.items())) for name, statuses in sorted(by_class.items())},
        "requests_total": len(requests),
        "outcomes": dict(Counter(o["status"] for o in outcomes.of_run(run_id)).most_common()),
        "harvest": {key: harvest.get(key) for key in ("harvest_id", "status", "statistics")},
        "wall_s": round(closed["answered"] - started, 3),
        "first_arc_to_closed_s": (
            round(closed["answered"] - min(r["received"] for r in arc_requests), 3) if arc_requests else None
        ),
        "store_idle_wait_s": round(settle_s, 1),
        "store_cpu_s": round(cpu_store, 3),
        "bench_cpu_s": round(cpu_bench, 3),
    }


async def rerun(settings: Settings, store_url: str, store_pid: int, n: int) -> list[dict[str, Any]]:
    documents = [arc(f"bench-{i:05d}") for i in range(n)]
    await ensure_topics(settings)
    outcomes = Outcomes(settings)
    await outcomes.start()
    stop = asyncio.Event()
    uploader = asyncio.create_task(Uploader(settings).run(stop))
    try:
        async with httpx.AsyncClient(base_url=store_url, timeout=30) as client:
            return [await one_run(settings, client, outcomes, store_pid, documents, uploader) for _ in range(2)]
    finally:
        stop.set()
        await uploader
        await outcomes.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="ARCs per run")
    parser.add_argument("--concurrency", type=int, default=8, help="max_concurrent_uploads")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None
    with tempfile.TemporaryDirectory(prefix="bench-rerun-") as tmp:
        if bootstrap is None:
            broker = start_broker(Path(tmp))
            bootstrap = broker.url
        store = start_store(Path(tmp), known_rdis=(RDI,))
        try:
            settings = load_settings(
                rdi=RDI,
                state_dir=Path(tmp) / "state",
                log_level="WARNING",
                kafka={"bootstrap_servers": bootstrap, "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
                topics={"prefix": f"br{uuid.uuid4().hex[:8]}", "partitions": PARTITIONS},
                uploader={"target_url": store.url, "max_concurrent_uploads": args.concurrency, "max_attempts": 20},
            )
            assert store.pid is not None
            first, second = asyncio.run(rerun(settings, store.url, store.pid, args.n))
        finally:
            terminate(store.pid)
            if broker is not None:
                stop_broker(broker)
    print(
        json.dumps(
            {
                "benchmark": "rerun",
                "arcs": args.n,
                "max_concurrent_uploads": args.concurrency,
                "first_run": first,
                "second_run": second,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
