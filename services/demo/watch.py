"""Follow ``arc.report`` live: outcome counts per stage and the latest outcome per identifier.

The demo's progress bars and its "arrived in the store" checks read from here,
i.e. from what the services themselves reported, not from private state.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from services.common.config import Settings
from services.common.kafka.clients import make_consumer, start_client
from services.common.kafka.reading import topic_partitions
from services.common.records import loads

Outcome = dict[str, Any]


class ReportWatcher:
    """Consumes ``arc.report`` from the beginning (no consumer group) in a background task."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.counts: Counter[tuple[str, str]] = Counter()
        self.outcomes: list[Outcome] = []
        #: When (``time.monotonic()``) the first outcome of each stage arrived here.
        self.first_seen: dict[str, float] = {}
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = make_consumer(self._settings.kafka, [], group_id=None)
        await start_client(consumer, self._settings.kafka)
        consumer.assign(await topic_partitions(consumer, self._settings.topics.report))
        await consumer.seek_to_beginning()
        self._task = asyncio.create_task(self._follow(consumer))

    async def _follow(self, consumer: Any) -> None:
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=200)
                records = [loads(r.value) for rs in batches.values() for r in rs if r.value is not None]
                if records:
                    now = time.monotonic()
                    async with self._changed:
                        for outcome in records:
                            self.first_seen.setdefault(outcome["stage"], now)
                            self.outcomes.append(outcome)
                            self.counts[(outcome["stage"], outcome["status"])] += 1
                        self._changed.notify_all()
        finally:
            await consumer.stop()

    def stage_total(self, stage: str) -> int:
        return sum(count for (s, _), count in self.counts.items() if s == stage)

    async def wait_for(self, predicate: Callable[[], bool], on_change: Callable[[], None]) -> None:
        """Wait until ``predicate()`` holds, calling ``on_change`` on every new outcome (bound it with a timeout)."""
        async with self._changed:
            while not predicate():
                await self._changed.wait()
                on_change()

    def latest(self, identifier: str, stage: str) -> Outcome | None:
        for outcome in reversed(self.outcomes):
            if outcome["identifier"] == identifier and outcome["stage"] == stage:
                return outcome
        return None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
