"""Per-engine defaults for the in-flight limit and worker recycling; explicit settings win."""

from __future__ import annotations

from services.builder import sizing
from services.common.config import load_settings


def test_arctrl_and_unknown_engines_keep_the_issue_defaults() -> None:
    settings = load_settings(max_concurrent_arc_builds=3)
    for engine in ("arctrl", "some-test-engine"):
        assert sizing.in_flight_limit(settings, engine, 3) == 6
        assert sizing.max_builds_per_worker(settings, engine) == 200
        assert sizing.sizing(engine).batch_size == 1


def test_the_fast_engine_gets_a_deeper_queue_and_rare_recycling() -> None:
    settings = load_settings()
    assert sizing.in_flight_limit(settings, "fast", 2) == 64
    assert sizing.max_builds_per_worker(settings, "fast") == 100_000
    assert sizing.sizing("fast").batch_size > 1


def test_explicit_settings_override_the_engine_defaults() -> None:
    settings = load_settings(builder={"max_in_flight": 5, "max_builds_per_worker": 7})
    assert sizing.in_flight_limit(settings, "fast", 2) == 5
    assert sizing.max_builds_per_worker(settings, "arctrl") == 7
