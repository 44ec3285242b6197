"""Per-identifier ordering: one version in flight per key, a waiting version superseded by a newer one."""

from __future__ import annotations

import asyncio

from services.uploader.keyed import KeyedScheduler


def test_same_key_never_runs_twice_at_once_and_newest_waiting_version_wins() -> None:
    running: set[str] = set()
    ran: list[tuple[str, int]] = []
    superseded: list[tuple[int, int]] = []
    release = asyncio.Event()

    async def scenario() -> None:
        tasks: set[asyncio.Task[None]] = set()

        def spawn(coro: object) -> asyncio.Task[None]:
            task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
            tasks.add(task)
            return task

        async def run(job: tuple[str, int]) -> None:
            key, _ = job
            assert key not in running, "two versions of one identifier in flight"
            running.add(key)
            await release.wait()
            ran.append(job)
            running.discard(key)

        async def on_superseded(older: tuple[str, int], newer: tuple[str, int]) -> None:
            superseded.append((older[1], newer[1]))

        scheduler: KeyedScheduler[tuple[str, int]] = KeyedScheduler(run, on_superseded, spawn)
        for job in [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("a", 4)]:
            scheduler.submit(job[0], job)
        await asyncio.sleep(0)
        assert running == {"a", "b"}  # different identifiers in parallel
        release.set()
        while any(not t.done() for t in tasks):
            await asyncio.gather(*tasks)

    asyncio.run(scenario())
    assert [job for job in ran if job[0] == "a"] == [("a", 1), ("a", 4)]
    assert superseded == [(2, 3), (3, 4)]
    assert ("b", 1) in ran


def test_closed_scheduler_starts_nothing_more() -> None:
    started: list[int] = []

    async def scenario() -> None:
        gate = asyncio.Event()

        async def run(job: int) -> None:
            started.append(job)
            await gate.wait()

        async def on_superseded(older: int, newer: int) -> None:
            raise AssertionError("not expected")

        scheduler: KeyedScheduler[int] = KeyedScheduler(run, on_superseded, asyncio.ensure_future)
        scheduler.submit("k", 1)
        scheduler.submit("k", 2)
        await asyncio.sleep(0)
        scheduler.close()
        gate.set()
        await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert started == [1]
