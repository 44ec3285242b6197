"""One job per key at a time, newest version wins: the uploader's per-identifier ordering.

Different identifiers upload in parallel, but two versions of one identifier
must never be in flight together (the older could land last). While a version
runs, the next one waits; a third arriving while the second still waits
supersedes it — the waiting version is handed to ``superseded`` (which reports
it) and never sent, because the target only needs the newest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class KeyedScheduler[Job]:
    """Runs ``run(job)`` for at most one job per key; see the module docstring."""

    def __init__(
        self,
        run: Callable[[Job], Awaitable[None]],
        superseded: Callable[[Job, Job], Awaitable[None]],
        spawn: Callable[[Awaitable[None]], asyncio.Task[None]],
    ) -> None:
        self._run = run
        self._superseded = superseded
        self._spawn = spawn
        self._running: set[str] = set()
        self._waiting: dict[str, Job] = {}
        self._closed = False

    def close(self) -> None:
        """Start nothing more (shutdown): waiting jobs stay unhandled and are read again after a restart."""
        self._closed = True

    def submit(self, key: str, job: Job) -> None:
        if self._closed:
            return
        if key not in self._running:
            self._start(key, job)
            return
        older = self._waiting.get(key)
        self._waiting[key] = job
        if older is not None:
            self._spawn(self._superseded(older, job))

    def _start(self, key: str, job: Job) -> None:
        self._running.add(key)
        self._spawn(self._run_then_next(key, job))

    async def _run_then_next(self, key: str, job: Job) -> None:
        try:
            await self._run(job)
        finally:
            self._running.discard(key)
            following = self._waiting.pop(key, None)
            if following is not None and not self._closed:
                self._start(key, following)
