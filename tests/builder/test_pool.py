"""The build pool on its own: batches keep per-build timeouts, and memory-based worker recycling."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.builder.pool import BuildPool
from services.builder.worker import BuildResult
from services.common.records import dumps

from .conftest import minimal_payload

FAST_FAKE = "tests.builder.fakes:fake_fast_build_arc_json"


def _json(identifier: str, instruction: str | None = None) -> bytes:
    return dumps(minimal_payload(identifier, description_text=instruction).model_dump(mode="json"))


def test_a_hung_build_in_a_batch_is_the_only_one_timed_out(tmp_path: Path) -> None:
    gate = tmp_path / "gate"

    async def scenario() -> list[BuildResult | None]:
        pool = BuildPool(1, FAST_FAKE, timeout_s=2.0, max_builds_per_worker=1000, batch_size=3)
        try:
            await pool.check()
            first = asyncio.create_task(pool.build(_json("inv-gated", f"gate:{gate}")))
            # The worker is busy with the gated build, so the next three wait and go as one batch.
            rest = [
                asyncio.create_task(pool.build(_json(identifier, instruction)))
                for identifier, instruction in [("inv-a", None), ("inv-hung", "sleep:600"), ("inv-b", None)]
            ]
            await asyncio.sleep(0)
            gate.touch()
            return await asyncio.gather(first, *rest)
        finally:
            await pool.close()

    results = asyncio.run(scenario())
    assert [result is not None and result.ok for result in results] == [True, True, False, True]
    hung = results[2]
    assert hung is not None and hung.error_code == "build-timeout"


def test_a_build_no_longer_wanted_when_a_worker_is_free_is_skipped(tmp_path: Path) -> None:
    gate = tmp_path / "gate"

    async def scenario() -> list[BuildResult | None]:
        pool = BuildPool(1, FAST_FAKE, timeout_s=60.0, max_builds_per_worker=1000, batch_size=4)
        try:
            await pool.check()
            first = asyncio.create_task(pool.build(_json("inv-gated", f"gate:{gate}")))
            skipped = asyncio.create_task(pool.build(_json("inv-old"), wanted=lambda: False))
            kept = asyncio.create_task(pool.build(_json("inv-new")))
            await asyncio.sleep(0)
            gate.touch()
            return await asyncio.gather(first, skipped, kept)
        finally:
            await pool.close()

    first, skipped, kept = asyncio.run(scenario())
    assert first is not None and first.ok
    assert skipped is None
    assert kept is not None and kept.ok


def test_a_worker_over_its_memory_limit_is_replaced_before_its_next_build(tmp_path: Path) -> None:
    async def scenario() -> list[BuildResult | None]:
        # Any Python process is above 1 MiB, so each worker retires after one build.
        pool = BuildPool(1, FAST_FAKE, timeout_s=60.0, max_builds_per_worker=1000, max_worker_rss_mb=1)
        try:
            return [await pool.build(_json(f"inv-{i}", f"pid:{tmp_path}")) for i in range(3)]
        finally:
            await pool.close()

    results = asyncio.run(scenario())
    assert all(result is not None and result.ok for result in results)
    assert len(list(tmp_path.iterdir())) == 3  # one worker process per build, no build lost
