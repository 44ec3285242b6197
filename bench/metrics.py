"""Metrics overhead benchmark: cost of the per-message instrumentation and of one scrape; prints JSON.

    python bench/metrics.py [--messages 200000] [--partitions 64]

- ``per_message_us``: what a stage adds per message — ``message_in``,
  ``set_in_flight``, ``message_out`` and ``record_outcome`` (status counter,
  duration and latency histograms) — averaged over ``messages`` calls, on this
  process's own thread (no HTTP involved).
- ``scrape_ms``: one ``GET /metrics`` over a real socket, with lag series for
  ``partitions`` partitions on two topics per stage (a large deployment's
  series count), median of 50 scrapes; ``scrape_bytes`` its size.

Runs without a broker; the metrics server binds an ephemeral loopback port.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request

from aiokafka import TopicPartition

from services.common import metrics
from services.common.config import MetricsSettings
from services.common.metrics_server import start_metrics_server
from services.common.report import OutcomeRecord


def per_message_us(messages: int) -> float:
    outcome = OutcomeRecord(identifier="bench", stage="build", status="built", duration_ms=12.0, latency_ms=850.0)
    started = time.perf_counter()
    for n in range(messages):
        metrics.message_in("build")
        metrics.set_in_flight("build", n % 16)
        metrics.message_out("build")
        metrics.record_outcome(outcome)
    return (time.perf_counter() - started) / messages * 1e6


def scrape(partitions: int) -> tuple[float, int]:
    for stage in metrics.STAGES:
        lags = {TopicPartition(f"bench.{stage}.{t}", p): p for t in ("a", "b") for p in range(partitions)}
        metrics.set_consumer_lag(stage, lags)
    server = start_metrics_server(MetricsSettings(ephemeral_port=True))
    assert server is not None
    try:
        times, size = [], 0
        for _ in range(50):
            started = time.perf_counter()
            with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
                size = len(response.read())
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1000, size
    finally:
        server.stop()
        for stage in metrics.STAGES:
            metrics.set_consumer_lag(stage, {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=64)
    args = parser.parse_args()
    scrape_ms, scrape_bytes = scrape(args.partitions)
    print(
        json.dumps(
            {
                "messages": args.messages,
                "per_message_us": round(per_message_us(args.messages), 2),
                "lag_series": 2 * args.partitions * len(metrics.STAGES),
                "scrape_ms": round(scrape_ms, 2),
                "scrape_bytes": scrape_bytes,
            }
        )
    )


if __name__ == "__main__":
    main()
