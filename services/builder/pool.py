"""The build process pool: per-build timeout that kills the hung worker, and worker recycling.

pebble's ``ProcessPool`` does both (``schedule(timeout=...)`` terminates and
replaces the worker of a build past its deadline; ``max_tasks`` retires a
worker after that many builds to bound memory), so the service only sees an
awaitable per build. Workers are *spawned*, not forked: the parent runs an
asyncio loop and Kafka client threads that must not be duplicated, and it never
imports arctrl itself. A build slot semaphore keeps the pool's own queue empty,
so a build's timeout counts from when it really starts and the service can skip
a superseded payload right before it would start.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pebble import ProcessExpired, ProcessPool

from services.builder.worker import BuildResult, build, decode_result, init_worker, ready
from services.common.errors import BuildTimeoutError, ConfigError

#: Spawning a worker and importing an engine (arctrl ~0.5 s) on a loaded machine.
STARTUP_TIMEOUT_S = 120.0


class BuildPool:
    """``workers`` processes running one engine (``"module:function"``)."""

    def __init__(self, workers: int, engine: str, timeout_s: float, max_builds_per_worker: int) -> None:
        self.workers = workers
        self.timeout_s = timeout_s
        self._slots = asyncio.Semaphore(workers)
        self._pool = ProcessPool(
            max_workers=workers,
            max_tasks=max_builds_per_worker,
            initializer=init_worker,
            initargs=(engine,),
            context=multiprocessing.get_context("spawn"),
        )

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a worker slot: take it, re-check the payload is still wanted, then :meth:`build`."""
        async with self._slots:
            yield

    async def build(self, payload_json: bytes) -> BuildResult:
        """Run one build in a worker (call inside :meth:`slot`); a hung build raises BuildTimeoutError."""
        future = self._pool.schedule(build, args=(payload_json,), timeout=self.timeout_s)
        try:
            frame: bytes = await asyncio.wrap_future(future)
        except TimeoutError as exc:
            raise BuildTimeoutError(f"build ran past {self.timeout_s:g} s; its worker was killed and replaced") from exc
        except ProcessExpired as exc:
            return BuildResult(error_class="WorkerExited", error_message=f"build worker died: {exc}")
        return decode_result(frame)

    async def check(self) -> None:
        """Make sure workers can load the engine before consuming; a broken engine is a config error."""
        try:
            await asyncio.wrap_future(self._pool.schedule(ready, timeout=STARTUP_TIMEOUT_S))
        except Exception as exc:
            raise ConfigError(f"build workers cannot start the engine: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        """Stop the workers (running builds are abandoned) and wait for them to exit."""
        self._pool.stop()
        await asyncio.to_thread(self._pool.join, 10)
