"""CDC latency: source commit -> payload published, and -> ARC accepted by the store.

Starts the single-machine stack (PostgreSQL, broker, ARC store) in a temporary
directory, creates small investigations (one row each plus one study), runs
``cdc capture``, ``extract cdc``, ``builder`` and ``uploader`` as processes,
then commits single-row updates (``UPDATE "vInvestigation" SET title``) at each
rate for the given duration, round-robin over the investigations.

- *published*: per update, from the client's clock right after COMMIT to the
  producer timestamp of the first payload on ``arc.investigations`` that
  contains it (the title carries the update's sequence number);
- *accepted*: per upload outcome on ``arc.report`` (``created``/``updated``),
  the uploader's ``latency_ms``: from the source commit time of the *oldest*
  change the payload carries (header ``arcstream.source.ts``) to acceptance,
  so a coalesced payload counts its worst case.

Prints one JSON object. Usage: ``python bench/cdc_latency.py [--rates 5,20] [--duration 60]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import yaml
from aiokafka import ConsumerRecord, TopicPartition

from services.common.config import Settings, load_settings
from services.common.kafka.clients import make_consumer, start_client
from services.common.kafka.topics import ensure_topics
from services.common.records import loads
from services.dev.stack import stack
from services.extractor.cdc.capture.setup import setup_cdc
from services.extractor.source.schema import ensure_source_schema

RDI = "cdc-bench"


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else ordered * 99
    return {
        "n": len(ordered),
        "p50": round(q[49], 1),
        "p95": round(q[94], 1),
        "p99": round(q[98], 1),
        "max": round(ordered[-1], 1),
    }


class Collector:
    """Every record of a topic from now on, in the background."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.records: list[ConsumerRecord[bytes, bytes]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = make_consumer(self.settings.kafka, [], group_id=None)
        await start_client(consumer, self.settings.kafka)
        tps = [TopicPartition(self.topic, p) for p in sorted(consumer.partitions_for_topic(self.topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        self._task = asyncio.create_task(self._run(consumer))

    async def _run(self, consumer: Any) -> None:
        try:
            while True:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    self.records.extend(records)
        finally:
            await consumer.stop()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class Service:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        with log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "services.cli", *args], env=env, stdout=out, stderr=out)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def wait_until(check: Any, limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.2)
    return False


async def drive(
    conn: psycopg.AsyncConnection[Any], identifiers: list[str], rate: int, duration: float, tag: str
) -> list[tuple[str, int, float]]:
    """Commit ``rate`` single-row updates per second; return (identifier, seq, commit wall ms)."""
    commits: list[tuple[str, int, float]] = []
    start = time.monotonic()
    for seq in range(int(rate * duration)):
        delay = start + seq / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        identifier = identifiers[seq % len(identifiers)]
        await conn.execute('UPDATE "vInvestigation" SET title = %s WHERE identifier = %s', (f"{tag}-{seq}", identifier))
        commits.append((identifier, seq, time.time() * 1000))
    return commits


def _title(record: ConsumerRecord[bytes, bytes]) -> str:
    """The title a payload, or a captured change of "vInvestigation", carries."""
    assert record.value is not None
    value = loads(record.value)
    row = value.get("after") if "op" in value else value
    return str((row or {}).get("title") or "")


def published_latencies(
    commits: list[tuple[str, int, float]], records: list[ConsumerRecord[bytes, bytes]], tag: str
) -> tuple[list[float], int]:
    """Per update: first record (producer timestamp) whose title sequence is at or past it."""
    seen: dict[str, list[tuple[int, int]]] = {}
    for record in records:
        if record.value is None or record.key is None:
            continue
        title = _title(record)
        if title.startswith(f"{tag}-"):
            # Change records are keyed {"identifier": ...}; payloads by the bare identifier.
            key = loads(record.key) if record.key.startswith(b"{") else None
            identifier = key["identifier"] if isinstance(key, dict) else record.key.decode()
            seen.setdefault(identifier, []).append((int(title.rsplit("-", 1)[1]), record.timestamp))
    latencies: list[float] = []
    missing = 0
    for identifier, seq, commit_ms in commits:
        times = [ts for shown, ts in seen.get(identifier, []) if shown >= seq]
        if times:
            latencies.append(max(0.0, min(times) - commit_ms))
        else:
            missing += 1
    return latencies, missing


def cleanup_database(admin_url: str, name: str, slot: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for _ in range(50):  # the walsender lets go of the slot shortly after capture exits
            row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
            if row is None or not row[0]:
                break
            time.sleep(0.2)
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="cdc-bench-"))
    # The store answers 400 for an RDI it does not know (as the API does): it must know ours.
    state = stack.up(work / "stack", with_store=True, known_rdis=(RDI,))
    assert state.postgres and state.broker and state.store
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = state.postgres.url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = f"{admin.rpartition('/')[0]}/{name}"
    prefix = f"b{uuid.uuid4().hex[:8]}"
    config: dict[str, Any] = {
        "database_url": database_url,
        "rdi": RDI,
        "max_concurrent_arc_builds": args.workers,
        "kafka": {"bootstrap_servers": state.broker.url, "session_timeout_ms": 2000, "heartbeat_interval_ms": 500},
        "topics": {"prefix": prefix, "partitions": 3},
        "uploader": {"target_url": state.store.url},
        "builder": {"engine": args.engine} if args.engine else {},
        "cdc": {
            "topic_prefix": f"{prefix}db",
            "slot_name": f"{prefix}_slot",
            "publication_name": f"{prefix}_pub",
            "offsets_dir": str(work / "offsets"),
            "heartbeat_interval_ms": 1000,
        },
    }
    (work / "arcstream.yaml").write_text(yaml.safe_dump(config))
    settings = load_settings(**config)
    hidden = ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "ARC_STORE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCSTREAM_") and k not in hidden}
    env |= {"ARCSTREAM_CONFIG": str(work / "arcstream.yaml"), "ARCSTREAM_STATE_DIR": str(work / "none")}
    identifiers = [f"BENCH-{i:02d}" for i in range(args.investigations)]
    services: list[Service] = []
    result: dict[str, Any] = {
        "bench": "cdc_latency",
        "investigations": len(identifiers),
        "duration_s": args.duration,
        "build_workers": args.workers,
        "build_engine": settings.builder.engine,
        "debounce_ms": settings.cdc.debounce_ms,
        "cpu_count": os.cpu_count(),
        "rates": {},
    }
    try:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await ensure_source_schema(conn)
            async with conn.transaction():
                for identifier in identifiers:
                    await conn.execute(
                        'INSERT INTO "vInvestigation" (identifier, title) VALUES (%s, %s)', (identifier, "start")
                    )
                    await conn.execute(
                        'INSERT INTO "vStudy" (identifier, investigation_ref, title) VALUES (%s, %s, %s)',
                        ("S1", identifier, "study"),
                    )
            await setup_cdc(conn, settings)
            await ensure_topics(settings)
            started = time.monotonic()
            services.append(Service(["cdc", "capture"], env, work / "capture.log"))
            while not (
                await (
                    await conn.execute(
                        "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND active",
                        (settings.cdc.slot_name,),
                    )
                ).fetchone()
            ):
                if services[0].proc.poll() is not None:
                    raise RuntimeError((work / "capture.log").read_text()[-2000:])
                await asyncio.sleep(0.2)
            result["capture_start_s"] = round(time.monotonic() - started, 1)
            for args_ in (["extract", "cdc"], ["builder"], ["uploader"]):
                services.append(Service(args_, env, work / f"{args_[0]}.log"))

            payloads = Collector(settings, settings.topics.investigations)
            report = Collector(settings, settings.topics.report)
            captured = Collector(settings, f"{settings.cdc.topic_prefix}.public.vInvestigation")
            for collector in (payloads, report, captured):
                await collector.start()

            def accepted() -> list[dict[str, Any]]:
                found = [loads(r.value) for r in report.records if r.value is not None]
                return [o for o in found if o.get("stage") == "upload" and o.get("status") in ("created", "updated")]

            # Warm-up: every investigation built and uploaded once (worker start, arctrl import).
            await drive(conn, identifiers, rate=len(identifiers), duration=1, tag="warm")
            warmed = await wait_until(lambda: {o["identifier"] for o in accepted()} >= set(identifiers), 180)
            result["warm_up_complete"] = warmed
            for rate in args.rates:
                tag = f"r{rate}"
                mark_p, mark_r, mark_c = len(payloads.records), len(accepted()), len(captured.records)
                commits = await drive(conn, identifiers, rate, args.duration, tag)
                last = {identifier: seq for identifier, seq, _ in commits}

                def caught_up(last: dict[str, int] = last, tag: str = tag, mark_p: int = mark_p) -> bool:
                    _, missing = published_latencies(
                        [(i, s, 0.0) for i, s in last.items()], payloads.records[mark_p:], tag
                    )
                    return missing == 0

                await wait_until(caught_up, 120)
                published, missing = published_latencies(commits, payloads.records[mark_p:], tag)
                # Uploads follow builds; give the tail time to arrive.
                await wait_until(lambda: False, args.settle)
                upload_latencies = [o["latency_ms"] for o in accepted()[mark_r:] if o.get("latency_ms") is not None]
                captured_ms, _ = published_latencies(commits, captured.records[mark_c:], tag)
                result["rates"][str(rate)] = {
                    "updates": len(commits),
                    "commit_to_captured_ms": percentiles(captured_ms),
                    "commit_to_published_ms": percentiles(published) | {"not_published": missing},
                    "payloads_published": len(payloads.records) - mark_p,
                    "commit_to_accepted_ms": percentiles(upload_latencies),
                }
            for collector in (payloads, report, captured):
                await collector.stop()
    finally:
        for service in reversed(services):
            service.stop()
        cleanup_database(admin, name, settings.cdc.slot_name)
        stack.down(work / "stack")
        shutil.rmtree(work, ignore_errors=True)
    result["note"] = (
        "accepted = uploader latency_ms from the oldest change in each payload (worst case per payload); "
        "2 shared CPU cores"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="5,20", help="updates per second, comma separated")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per rate")
    parser.add_argument("--investigations", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1, help="builder processes")
    parser.add_argument("--engine", help="builder engine (builder.engine; default as configured)")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to wait for the upload tail")
    args = parser.parse_args()
    args.rates = [int(r) for r in args.rates.split(",")]
    print(json.dumps(asyncio.run(bench(args)), indent=2))


if __name__ == "__main__":
    main()
