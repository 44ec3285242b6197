"""The API's later git sync, as far as a client can see it: an event on the ARC, not an HTTP error.

The API accepts any ARC that passes its ingest validation and hands new or changed
content to a background worker that parses it with arctrl and pushes it to git. What
that worker needs (the RO-Crate descriptor ``about`` the root, the root a ``Dataset``
with ``additionalType: Investigation``, and an arctrl parse that succeeds) is reported
only as a ``GIT_PUSH_SUCCESS`` / ``GIT_PUSH_FAILED`` event in the ARC's log, which a
client sees in the ``events`` of a later answer for the same ARC.

The store does the same off the request path: one niced worker process (arctrl costs
~0.7 s and ~100 MB to start, ~65 ms per small ARC, and parsing holds the GIL) takes the
newest pending content per ARC, so a burst of uploads never queues more than one check
per ARC.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import orjson

from services.store.repository import Repository

log = logging.getLogger(__name__)


def _types(node: dict[str, Any], key: str) -> list[Any]:
    value = node.get(key)
    return value if isinstance(value, list) else [value]


def sync_problem(arc_json: bytes) -> str | None:
    """Why the git sync could not take this ARC, or ``None`` (runs in the worker process)."""
    arc = orjson.loads(arc_json)
    nodes = {node.get("@id"): node for node in arc["@graph"] if isinstance(node, dict)}
    descriptor = nodes.get("ro-crate-metadata.json")
    if descriptor is None or descriptor.get("about") != {"@id": "./"}:
        return "the RO-Crate descriptor 'ro-crate-metadata.json' about './' is missing"
    root = nodes["./"]
    if "Dataset" not in _types(root, "@type"):
        return "the root './' is not a Dataset"
    if "Investigation" not in _types(root, "additionalType"):
        return "the root './' has no additionalType 'Investigation'"
    from arctrl import ARC  # imported in the worker process only

    try:
        ARC.from_rocrate_json_string(arc_json.decode("utf-8"))
    except Exception as exc:  # arctrl raises plain Exception
        return f"arctrl cannot parse the ARC: {exc}"
    return None


class GitSync:
    """Checks new and changed ARCs in the background and records the outcome as an ARC event."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self._pending: dict[str, bytes] = {}
        self._wakeup = asyncio.Event()
        self._pool: ProcessPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None

    def submit(self, arc_id: str, arc_json: bytes) -> None:
        """Queue the ARC's current content (replacing content of it still waiting)."""
        self._pending[arc_id] = arc_json
        self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="store-git-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # Niced: the check is background work and must not slow the pipeline it serves (tests, demo).
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=os.nice, initargs=(10,)
            )
        return self._pool

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                arc_id = next(iter(self._pending))
                arc_json = self._pending.pop(arc_id)
                try:
                    problem = await loop.run_in_executor(self._executor(), sync_problem, arc_json)
                except BrokenProcessPool:
                    self._pool = None  # a new worker for the next ARC
                    problem = "the sync worker died"
                if problem is None:
                    await self.repo.add_event(arc_id, "GIT_PUSH_SUCCESS", "Successfully synchronized to git")
                else:
                    log.info("git sync of ARC %s failed: %s", arc_id, problem)
                    await self.repo.add_event(arc_id, "GIT_PUSH_FAILED", f"Git sync failed: {problem}")
