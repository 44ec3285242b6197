"""Tracing overhead: the same workloads with tracing off and on (OTLP to a live receiver), alternating; JSON.

    python bench/tracing.py [--rounds 3] [--workloads snapshot build upload] [--snapshot-n 4000]

Each workload runs as its own process (the tracer provider is per process), ``--rounds``
times per mode, in the order off/on, on/off, off/on, ... so both modes see the same
background load on a shared machine. "on" sets only standard variables
(``OTEL_TRACES_EXPORTER=otlp``, ``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf``),
with the SDK's default batching; the receiver (:mod:`services.dev.otlp`) runs in this process on
the same cores and decodes every export, as a collector would. "off" has no ``OTEL_*`` at all.

- ``snapshot``: ``arcstream extract snapshot --workers 1`` of ``--snapshot-n`` small investigations
  (one producer span per investigation plus one per batch): investigations/s from its summary.
- ``build``: ``bench/build.py --engine fast`` (process, build, queue wait, engine and publish spans
  per payload; the fast engine makes the per-message cost most visible): the service's ARCs/s.
- ``upload``: ``bench/upload.py --failure-rates 0`` (process, attempt and HTTP client spans per ARC
  in the uploader, a server span per request in the store): ARCs/s on the store's clock.

First the helpers alone (``per_call_us``: microseconds per message, off and on). Then
reports every run's figure, the medians per mode, ``on/off`` of the medians, and the spans the
receiver got per "on" run. ``--before DIR`` (a source tree of a commit without tracing, e.g.
``git archive <commit> | tar -x -C DIR``) adds a third mode, ``before``, for snapshot and build:
``off_to_before`` is what the instrumentation costs while tracing is off. Starts its own
PostgreSQL and broker (or uses DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from services.dev.otlp import OtlpReceiver, otlp_receiver
from services.dev.stack import stack

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "services.cli"]

#: A workload run with the given extra environment from the given source tree; returns its figure.
Workload = Callable[[dict[str, str], Path], float]


def _json_output(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> Any:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout[done.stdout.index("{") :])


def snapshot_workload(base: dict[str, str], postgres_url: str, n: int) -> Workload:
    database = f"bench_tracing_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    database_url = postgres_url.rsplit("/", 1)[0] + f"/{database}"
    env = base | {"DATABASE_URL": database_url}
    generate = [*CLI, "gen", "-n", str(n), "--profile", "small", "--seed", "1"]
    subprocess.run(generate, env=env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")

    def run(mode_env: dict[str, str], tree: Path) -> float:
        prefix = {"ARCSTREAM_TOPICS__PREFIX": f"bt{uuid.uuid4().hex[:8]}"}
        command = [*CLI, "extract", "snapshot", "--no-progress", "--workers", "1"]
        summary = _json_output(command, env | mode_env | prefix, tree)
        return float(summary["rate_per_s"])

    return run


def build_workload(base: dict[str, str], n: int) -> Workload:
    def run(mode_env: dict[str, str], tree: Path) -> float:
        args = [sys.executable, "bench/build.py", "--engine", "fast", "--profile", "mixed", "--n", str(n)]
        result = _json_output([*args, "--repeat", "2"], base | mode_env, tree)
        return float(result["service"]["arcs_per_s"])

    return run


def upload_workload(base: dict[str, str], n: int) -> Workload:
    def run(mode_env: dict[str, str], tree: Path) -> float:
        command = [sys.executable, "bench/upload.py", "--n", str(n), "--failure-rates", "0"]
        result = _json_output(command, base | mode_env, tree)
        return float(result["scenarios"][0]["arcs_per_s"])

    return run


PER_CALL = """
import json, time
from aiokafka import TopicPartition
from services.common import tracing
from services.common.kafka.stage import Message

N = 20000
headers = [("arcstream.kind", b"payload"), ("arcstream.run.id", b"run")]
message = Message(TopicPartition("arc.investigations", 0), 1, b"inv", b"{}", [], {})
figures = {}
with tracing.traced("arcstream-bench"):
    started = time.perf_counter()
    for i in range(N):
        with tracing.publish("arc.investigations", "inv", new_trace=True) as publish:
            publish.headers(headers)
            publish.acknowledged(0, i)
    figures["publish_us"] = (time.perf_counter() - started) / N * 1e6
    started = time.perf_counter()
    for _ in range(N):
        with tracing.consuming(message, "group"), tracing.span("build"):
            tracing.outcome("built")
    figures["consume_and_span_us"] = (time.perf_counter() - started) / N * 1e6
print(json.dumps({key: round(value, 2) for key, value in figures.items()}))
"""


def per_call(on_env: dict[str, str], base: dict[str, str]) -> dict[str, Any]:
    """Microseconds per message of the helpers alone: a publish, and a consumed message with one inner span."""
    off = _json_output([sys.executable, "-c", PER_CALL], base)
    on = _json_output([sys.executable, "-c", PER_CALL], base | on_env)
    return {"off": off, "on": on}


def on_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }


def compare(
    name: str, workload: Workload, rounds: int, receiver: OtlpReceiver, before_tree: Path | None
) -> dict[str, Any]:
    """Alternate the modes round by round (each round starts with the next mode); medians and ratios."""
    modes = ["off", "on"] + (["before"] if before_tree is not None else [])
    figures: dict[str, list[float]] = {mode: [] for mode in modes}
    spans: list[int] = []
    for round_ in range(rounds):
        for mode in modes[round_ % len(modes) :] + modes[: round_ % len(modes)]:
            received = len(receiver.received())
            tree = before_tree if mode == "before" and before_tree is not None else ROOT
            figures[mode].append(workload(on_env(receiver) if mode == "on" else {}, tree))
            if mode == "on":
                spans.append(len(receiver.received()) - received)
            print(f"{name} round {round_ + 1} {mode}: {figures[mode][-1]}", file=sys.stderr)
    medians = {mode: statistics.median(values) for mode, values in figures.items()}
    result: dict[str, Any] = {"workload": name, **figures, **{f"{mode}_median": m for mode, m in medians.items()}}
    result["on_to_off"] = round(medians["on"] / medians["off"], 3)
    if "before" in medians:
        result["off_to_before"] = round(medians["off"] / medians["before"], 3)
    result["spans_received_per_on_run"] = spans
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workloads", nargs="+", default=["snapshot", "build", "upload"])
    parser.add_argument("--snapshot-n", type=int, default=4000)
    parser.add_argument("--build-n", type=int, default=300)
    parser.add_argument("--upload-n", type=int, default=500)
    parser.add_argument(
        "--before",
        type=Path,
        help="source tree without tracing (git archive <commit> | tar -x -C DIR): a third mode, for off vs before",
    )
    args = parser.parse_args()
    state_dir = Path(tempfile.mkdtemp(prefix="arcstream-bench-tracing-"))
    state = stack.up(state_dir, with_store=False)
    assert state.postgres is not None and state.broker is not None
    base = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")} | {
        "KAFKA_BOOTSTRAP_SERVERS": state.broker.url,
        "ARCSTREAM_STATE_DIR": str(state_dir / "none"),
        "ARCSTREAM_LOG_LEVEL": "WARNING",
    }
    results = []
    try:
        with otlp_receiver() as receiver:
            helpers = per_call(on_env(receiver), base)
            for name in args.workloads:
                if name == "snapshot":
                    workload = snapshot_workload(base, state.postgres.url, args.snapshot_n)
                elif name == "build":
                    workload = build_workload(base, args.build_n)
                else:
                    workload = upload_workload(base, args.upload_n)
                before = args.before if name != "upload" else None  # its bench had no --failure-rates yet
                results.append(compare(name, workload, args.rounds, receiver, before))
    finally:
        stack.down(state_dir)
    report = {
        "benchmark": "tracing",
        "cores": os.cpu_count(),
        "rounds": args.rounds,
        "per_call_us": helpers,
        "workloads": results,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
