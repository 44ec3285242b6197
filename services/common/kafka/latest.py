"""Newest version per key: what a stage does when an identifier changes again before it is done.

Versions of one key arrive in offset order on one partition. Downstream only needs
the newest, and an older version must never land after a newer one. Two policies,
one per kind of effect:

- ``one_at_a_time=True`` (the uploader: the effect is an HTTP request, whose order at
  the target only holds if requests of one key never overlap): while a version runs,
  the next one waits; a third arriving while the second still waits supersedes it —
  the waiting version is handed to ``superseded`` (which reports it) and never run.
- ``one_at_a_time=False`` (the builder: the effect is produced only when the job ends,
  and jobs may take minutes): every version starts at once; a job asks
  :meth:`is_superseded` before it starts (to skip the work) and before it produces
  (to discard its result), so a newer version never waits for an older one.

In both, :meth:`is_superseded` is true once a newer version of the key was submitted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol


class Versioned(Protocol):
    """A job's version: its offset (newer versions of a key have higher offsets)."""

    @property
    def offset(self) -> int: ...


class LatestPerKey[Job: Versioned]:
    """Runs ``run(job)`` per key by the policy chosen; see the module docstring."""

    def __init__(
        self,
        run: Callable[[Job], Awaitable[None]],
        superseded: Callable[[Job, Job], Awaitable[None]],
        spawn: Callable[[Awaitable[None], Job], asyncio.Task[None]],
        *,
        one_at_a_time: bool,
    ) -> None:
        self._run = run
        self._superseded = superseded
        self._spawn = spawn
        self._one_at_a_time = one_at_a_time
        #: key -> [newest offset submitted, jobs of the key not finished (running or waiting)]
        self._newest: dict[str, list[int]] = {}
        self._running: dict[str, Job] = {}
        self._waiting: dict[str, Job] = {}
        self._closed = False

    def close(self) -> None:
        """Start nothing more (shutdown): waiting jobs stay unhandled and are read again after a restart."""
        self._closed = True

    def submit(self, key: str, job: Job) -> None:
        """Run ``job`` by the policy (see the module docstring)."""
        if self._closed:
            return
        entry = self._newest.setdefault(key, [job.offset, 0])
        entry[0] = max(entry[0], job.offset)
        entry[1] += 1
        if not self._one_at_a_time or key not in self._running:
            self._start(key, job)
            return
        older = self._waiting.get(key)
        self._waiting[key] = job
        if older is not None:
            self._spawn(self._finished(key, self._superseded(older, job)), older)

    def is_superseded(self, key: str, job: Job) -> bool:
        """True once a newer version of ``key`` than ``job`` was submitted."""
        entry = self._newest.get(key)
        return entry is not None and entry[0] > job.offset

    def forget(self, keep: Callable[[Job], bool]) -> None:
        """Drop waiting jobs that ``keep`` rejects (their partition moved to another member)."""
        for key, job in list(self._waiting.items()):
            if not keep(job):
                del self._waiting[key]
                self._release(key)

    def _start(self, key: str, job: Job) -> None:
        if self._one_at_a_time:
            self._running[key] = job
        self._spawn(self._run_then_next(key, job), job)

    async def _finished(self, key: str, work: Awaitable[None]) -> None:
        try:
            await work
        finally:
            self._release(key)

    async def _run_then_next(self, key: str, job: Job) -> None:
        try:
            await self._run(job)
        finally:
            self._release(key)
            if self._running.get(key) is job:
                del self._running[key]
                following = self._waiting.pop(key, None)
                if following is not None and not self._closed:
                    self._start(key, following)

    def _release(self, key: str) -> None:
        """One job of ``key`` is over; forget the key when none is left (keeps memory flat)."""
        entry = self._newest.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                del self._newest[key]
