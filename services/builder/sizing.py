"""Per-engine defaults for the in-flight limit and worker recycling.

The issue's defaults (in-flight limit 2 x workers, a fresh worker every 200
builds) were sized for arctrl, whose builds take 0.3-60 s and leave large object
graphs behind: there, one queued payload per worker keeps every worker busy, and
a ~1 s worker start every 200 builds is noise. The fast engine builds a `mixed`
investigation in ~2.5 ms and keeps no state between builds, so the same values
make the service latency-bound on broker round trips (2 in flight) and spend
about half its time starting workers (bench/README.md). Explicit settings
(``builder.max_in_flight``, ``builder.max_builds_per_worker``) always win; any
other engine (e.g. a test engine) gets the conservative arctrl values.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.config import Settings


@dataclass(frozen=True)
class EngineSizing:
    #: Default in-flight limit per build worker.
    in_flight_per_worker: int
    #: Default builds before a worker is replaced (memory is bounded by ``builder.max_worker_rss_mb`` too).
    max_builds_per_worker: int
    #: Payloads handed to a worker in one pool task (fast builds only: see :mod:`services.builder.pool`).
    batch_size: int


SLOW = EngineSizing(in_flight_per_worker=2, max_builds_per_worker=200, batch_size=1)
#: 32 payloads per worker in flight: the mixed corpus holds ~55 KB per payload, so ~2 MB per worker.
FAST = EngineSizing(in_flight_per_worker=32, max_builds_per_worker=100_000, batch_size=8)

SIZING: dict[str, EngineSizing] = {"fast": FAST}


def sizing(engine: str) -> EngineSizing:
    return SIZING.get(engine, SLOW)


def in_flight_limit(settings: Settings, engine: str, workers: int) -> int:
    """``builder.max_in_flight`` if set, else the engine's per-worker default times ``workers``."""
    return settings.builder.max_in_flight or sizing(engine).in_flight_per_worker * workers


def max_builds_per_worker(settings: Settings, engine: str) -> int:
    """``builder.max_builds_per_worker`` if set, else the engine's default."""
    return settings.builder.max_builds_per_worker or sizing(engine).max_builds_per_worker
