"""The build process pool: per-build timeout that kills the hung worker, worker recycling, batches.

pebble's ``ProcessPool`` does the process work (``schedule(timeout=...)``
terminates and replaces the worker of a task past its deadline; ``max_tasks``
retires a worker after that many tasks), so the service only sees an awaitable
per build. Workers are *spawned*, not forked: the parent runs an asyncio loop and
Kafka client threads that must not be duplicated, and it never imports arctrl itself.

The pool's own queue stays empty: builds wait here, and a pool task starts only
when a worker is free, so a build's timeout counts from when it really starts and
a superseded payload is skipped right before it would start (``wanted``).

Batches (``batch_size`` > 1, for fast engines whose builds take milliseconds): a
free worker takes up to ``batch_size`` waiting payloads in one task, which saves a
pool round trip per build. Per-build semantics are kept: a batch gets the
timeout of *one* build; if it runs past it (or its worker dies), its worker is
gone and every payload of the batch is built again on its own, so only the
build that really hangs (or crashes) is killed and reported, after its own
timeout. Memory: a worker whose peak RSS passed ``max_worker_rss_mb`` after a
build exits at the start of its next task (:data:`RETIRE_EXIT_CODE`); that
untouched task is handed to a fresh worker.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pebble import ProcessExpired, ProcessPool

from services.builder.worker import RETIRE_EXIT_CODE, BuildResult, build_many, decode_result, init_worker, ready
from services.common.errors import BuildTimeoutError, ConfigError

#: Spawning a worker and importing an engine (arctrl ~0.5 s) on a loaded machine.
STARTUP_TIMEOUT_S = 120.0


@dataclass
class _Waiting:
    payload_json: bytes
    key: str | None
    wanted: Callable[[], bool]
    result: asyncio.Future[BuildResult | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class BuildPool:
    """``workers`` processes running one engine (``"module:function"``)."""

    def __init__(
        self,
        workers: int,
        engine: str,
        timeout_s: float,
        max_builds_per_worker: int,
        *,
        batch_size: int = 1,
        max_worker_rss_mb: int = 0,
    ) -> None:
        self.workers = workers
        self.timeout_s = timeout_s
        self.batch_size = batch_size
        self._waiting: deque[_Waiting] = deque()
        self._running: set[asyncio.Task[None]] = set()
        self._closed = False
        self._pool = ProcessPool(
            max_workers=workers,
            # pebble counts tasks; a batch holds up to batch_size builds.
            max_tasks=max(1, max_builds_per_worker // batch_size),
            initializer=init_worker,
            initargs=(engine, max_worker_rss_mb),
            context=multiprocessing.get_context("spawn"),
        )

    async def build(
        self, payload_json: bytes, key: str | None = None, wanted: Callable[[], bool] = lambda: True
    ) -> BuildResult | None:
        """Build one payload in a worker once one is free; ``None`` if it was no longer ``wanted`` then.

        ``key`` is the message key the payload's identifier must equal (``None``: unchecked).
        A hung build is reported as a :class:`BuildTimeoutError` result (its worker is killed and replaced).
        """
        waiting = _Waiting(payload_json, key, wanted)
        self._waiting.append(waiting)
        self._start_batches()
        try:
            return await asyncio.shield(waiting.result)
        except asyncio.CancelledError:
            waiting.wanted = lambda: False  # not started yet: skip it; started: its result is dropped
            raise

    def _start_batches(self) -> None:
        while self._waiting and len(self._running) < self.workers and not self._closed:
            batch = self._take_batch()
            if batch:
                task = asyncio.create_task(self._run_batch(batch))
                self._running.add(task)
                task.add_done_callback(self._batch_done)

    def _take_batch(self) -> list[_Waiting]:
        batch: list[_Waiting] = []
        while self._waiting and len(batch) < self.batch_size:
            waiting = self._waiting.popleft()
            if waiting.wanted():
                batch.append(waiting)
            elif not waiting.result.done():
                waiting.result.set_result(None)
        return batch

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._start_batches()

    async def _run_batch(self, batch: list[_Waiting]) -> None:
        try:
            jobs = [(w.payload_json, w.key) for w in batch]
            results = await self._schedule(jobs) if len(batch) > 1 else None
            if results is None:  # one payload, or the batch hung or lost its worker: each on its own
                results = [await self._build_alone(job) for job in jobs]
        except BaseException as exc:
            for waiting in batch:
                if waiting.result.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    waiting.result.cancel()
                else:
                    waiting.result.set_exception(exc)
            raise
        for waiting, result in zip(batch, results, strict=True):
            if not waiting.result.done():
                waiting.result.set_result(result)

    async def _build_alone(self, job: tuple[bytes, str | None]) -> BuildResult:
        try:
            results = await self._schedule([job], alone=True)
        except TimeoutError:
            error = BuildTimeoutError(f"build ran past {self.timeout_s:g} s; its worker was killed and replaced")
            return BuildResult(error_code=error.code, error_message=str(error))
        except ProcessExpired as exc:
            return BuildResult(error_code="worker-died", error_message=f"build worker died: {exc}")
        assert results is not None
        return results[0]

    async def _schedule(self, jobs: list[tuple[bytes, str | None]], *, alone: bool = False) -> list[BuildResult] | None:
        """One pool task; ``None`` if a batch of several hung or lost its worker (``alone``: raise instead)."""
        while True:
            future = self._pool.schedule(build_many, args=(jobs,), timeout=self.timeout_s)
            try:
                frames: list[tuple[bytes, float]] = await asyncio.wrap_future(future)
            except ProcessExpired as exc:
                if exc.exitcode == RETIRE_EXIT_CODE:
                    continue  # the worker retired before starting this task: a fresh one takes it
                if alone:
                    raise
                return None
            except TimeoutError:
                if alone:
                    raise
                return None
            except asyncio.CancelledError:
                future.cancel()
                raise
            return [decode_result(frame, seconds) for frame, seconds in frames]

    async def check(self) -> None:
        """Make sure workers can load the engine before consuming; a broken engine is a config error."""
        try:
            await asyncio.wrap_future(self._pool.schedule(ready, timeout=STARTUP_TIMEOUT_S))
        except Exception as exc:
            raise ConfigError(f"build workers cannot start the engine: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        """Stop the workers (running builds are abandoned) and wait for them to exit."""
        self._closed = True
        for task in self._running:
            task.cancel()
        self._pool.stop()
        await asyncio.to_thread(self._pool.join, 10)
