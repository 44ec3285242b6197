"""Snapshot extractor benchmark: investigations/s and peak RSS for N = 2,000 and 20,000 (profile small).

Starts its own single-machine stack (or uses DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS),
fills a fresh database per N with ``arcstream gen``, runs ``arcstream extract snapshot``
as a child process and samples the RSS of its whole process tree. Prints one JSON object.

Each size runs in two modes: with the default process count (one per core, but one per
5,000 investigations at most: the throughput a user gets) and with one process
(the same configuration at both sizes: whether memory stays flat as the database grows).
Each mode runs ``--repeat`` times (shared virtual machines vary by tens of percent from
one second to the next); medians are reported, with the slowest and fastest rate.

    python bench/snapshot.py [--sizes 2000 20000] [--repeat 3] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import psycopg

from services.dev.stack import stack


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def _run_measured(args: list[str], env: dict[str, str]) -> tuple[dict[str, object], int]:
    child = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    process = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        try:
            peak = max(peak, _tree_rss(process))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    stdout = child.stdout.read() if child.stdout else ""
    if child.returncode != 0:
        raise SystemExit(f"extract failed with exit code {child.returncode}")
    return json.loads(stdout.strip().splitlines()[-1]), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per size and mode (medians are reported)")
    parser.add_argument("--fresh", action="store_true", help="extract right after loading, without VACUUM ANALYZE")
    args = parser.parse_args()

    state_dir = Path(tempfile.mkdtemp(prefix="arcstream-bench-"))
    state = stack.up(state_dir, with_store=False)
    assert state.postgres is not None and state.broker is not None
    results = []
    try:
        for n in args.sizes:
            database = f"bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(state.postgres.url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{database}"')
            env = {
                **os.environ,
                "DATABASE_URL": state.postgres.url.rsplit("/", 1)[0] + f"/{database}",
                "KAFKA_BOOTSTRAP_SERVERS": state.broker.url,
                "ARCSTREAM_TOPICS__PREFIX": f"bench{n}{uuid.uuid4().hex[:4]}",
                "ARCSTREAM_STATE_DIR": str(state_dir / "none"),
            }
            cli = [sys.executable, "-m", "services.cli"]
            subprocess.run(
                [*cli, "gen", "-n", str(n), "--profile", "small", "--seed", "1"],
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            if not args.fresh:
                # A source database in service is vacuumed and analysed (autovacuum); right after a bulk
                # load the first reader also pays for setting hint bits on every page.
                with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
                    conn.execute("VACUUM ANALYZE")
            for mode, extra in (("default", []), ("one process", ["--workers", "1"])):
                runs = [
                    _run_measured([*cli, "extract", "snapshot", "--no-progress", *extra], env)
                    for _ in range(args.repeat)
                ]
                rates = [float(summary["rate_per_s"]) for summary, _ in runs]  # type: ignore[arg-type]
                results.append(
                    {
                        "investigations": n,
                        "mode": mode,
                        "processes": runs[0][0]["processes"],
                        "published": runs[0][0]["published"],
                        "repeats": args.repeat,
                        "duration_s_median": statistics.median(
                            float(summary["duration_s"])  # type: ignore[arg-type]
                            for summary, _ in runs
                        ),
                        "investigations_per_s": statistics.median(rates),
                        "investigations_per_s_min": min(rates),
                        "investigations_per_s_max": max(rates),
                        "peak_rss_mb": round(statistics.median(peak for _, peak in runs) / 2**20, 1),
                    }
                )
    finally:
        stack.down(state_dir)
    report: dict[str, object] = {
        "benchmark": "snapshot",
        "profile": "small",
        "cores": os.cpu_count(),
        "source": "freshly loaded" if args.fresh else "vacuumed and analysed",
        "runs": results,
    }
    single = [run for run in results if run["mode"] == "one process"]
    if len(single) >= 2:
        report["rss_ratio_largest_to_smallest_one_process"] = round(
            float(single[-1]["peak_rss_mb"]) / float(single[0]["peak_rss_mb"]), 3
        )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
