"""Newest version per key, both policies: one at a time (uploads) and never waiting (builds)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass

from services.common.kafka.latest import LatestPerKey


@dataclass(frozen=True)
class Job:
    key: str
    offset: int


def spawner(tasks: set[asyncio.Task[None]]) -> object:
    def spawn(work: Awaitable[None], job: Job) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        tasks.add(task)
        return task

    return spawn


def test_one_at_a_time_never_overlaps_a_key_and_the_newest_waiting_version_wins() -> None:
    running: set[str] = set()
    ran: list[Job] = []
    superseded: list[tuple[int, int]] = []

    async def scenario() -> None:
        release = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        async def run(job: Job) -> None:
            assert job.key not in running, "two versions of one identifier in flight"
            running.add(job.key)
            await release.wait()
            ran.append(job)
            running.discard(job.key)

        async def on_superseded(older: Job, newer: Job) -> None:
            superseded.append((older.offset, newer.offset))

        latest: LatestPerKey[Job] = LatestPerKey(run, on_superseded, spawner(tasks), one_at_a_time=True)  # type: ignore[arg-type]
        for job in [Job("a", 1), Job("b", 2), Job("a", 3), Job("a", 4), Job("a", 5)]:
            latest.submit(job.key, job)
        await asyncio.sleep(0)
        assert running == {"a", "b"}  # different identifiers in parallel
        assert latest.is_superseded("a", Job("a", 1)) and not latest.is_superseded("a", Job("a", 5))
        release.set()
        while any(not task.done() for task in tasks):
            await asyncio.gather(*tasks)

    asyncio.run(scenario())
    assert [(j.key, j.offset) for j in ran] == [("a", 1), ("b", 2), ("a", 5)]
    assert superseded == [(3, 4), (4, 5)]


def test_never_waiting_runs_every_version_at_once_and_marks_older_ones_superseded() -> None:
    started: list[int] = []
    verdicts: dict[int, bool] = {}

    async def scenario() -> None:
        release = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()
        latest: LatestPerKey[Job]

        async def run(job: Job) -> None:
            started.append(job.offset)
            await release.wait()
            verdicts[job.offset] = latest.is_superseded(job.key, job)

        async def never(older: Job, newer: Job) -> None:
            raise AssertionError("nothing waits, so nothing is superseded while waiting")

        latest = LatestPerKey(run, never, spawner(tasks), one_at_a_time=False)  # type: ignore[arg-type]
        latest.submit("k", Job("k", 10))
        latest.submit("k", Job("k", 11))
        await asyncio.sleep(0)
        assert started == [10, 11]  # the newer version did not wait for the older one
        release.set()
        await asyncio.gather(*tasks)
        assert not latest.is_superseded("k", Job("k", 10))  # the key is forgotten once nothing of it runs

    asyncio.run(scenario())
    assert verdicts == {10: True, 11: False}


def test_forget_drops_waiting_versions_of_lost_partitions_and_close_starts_nothing() -> None:
    ran: list[int] = []

    async def scenario() -> None:
        release = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        async def run(job: Job) -> None:
            await release.wait()
            ran.append(job.offset)

        async def on_superseded(older: Job, newer: Job) -> None:
            ran.append(-older.offset)

        latest: LatestPerKey[Job] = LatestPerKey(run, on_superseded, spawner(tasks), one_at_a_time=True)  # type: ignore[arg-type]
        latest.submit("a", Job("a", 1))
        latest.submit("a", Job("a", 2))  # waits
        latest.submit("b", Job("b", 3))
        latest.submit("b", Job("b", 4))  # waits
        latest.forget(lambda job: job.key != "a")
        latest.close()
        latest.submit("c", Job("c", 5))  # closed: not started
        release.set()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
    assert sorted(ran) == [1, 3]  # 2 was forgotten, 4 not started after close, 5 never taken
