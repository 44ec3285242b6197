"""Snapshot runs as harvests: one harvest per run and target, opened and closed exactly once.

A snapshot run writes a run-start marker to every partition before its payloads and
a run-end marker after them; the builder keeps them in place on ``arc.arcs``. With
several uploaders in one group each sees only its partitions' markers, so the work
is split:

- every member records, per partition it owns, that the run started there and, once
  every earlier message of the partition has its outcome, that it ended there (with
  the counts of the run-end marker) — ``runpart`` records in the state topic;
- the **leader** — the member that owns partition 0 of ``arc.arcs``; a rebalance
  hands the role on — does everything a harvest needs, from what the state topic
  says: it creates the harvest when a run first appears (``POST /v3/harvests``),
  completes it when every partition's run-end is recorded (``PATCH COMPLETED``),
  cancels it when a newer run started on a partition before this one ended there
  (its extraction was aborted), or when no marker or ARC of the run came for
  ``run_idle_timeout_s`` (its extractor died), and records the run's status.

ARCs of a run wait until its harvest exists, then go into it; ARCs of a run whose
harvest is closed (or could not be created) are still the newest content of their
identifiers and are delivered on their own. Because the leader acts from the state
topic in a task of its own, it never waits for a marker behind paused partitions.
A harvest the old leader created just before it died, without recording it, stays
RUNNING at the target (the API cannot tell whose it is); the run gets a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from services.common.config import UploaderSettings
from services.common.records import RunMarker, dumps
from services.common.report import utc_now_iso
from services.uploader.state import RunPartition, RunRecord, RunStatus, UploaderState
from services.uploader.target import AttemptError, TargetClient

log = logging.getLogger(__name__)

#: The leader re-examines the runs at least this often (and whenever the state changes).
LEADER_INTERVAL_S = 5.0
#: A partition's owner records activity of a run at most this often.
ACTIVITY_INTERVAL_S = 60.0


class RunCoordinator:
    """Run markers in, harvests out; see the module docstring."""

    def __init__(
        self,
        state: UploaderState,
        client: TargetClient,
        rdi: str,
        settings: UploaderSettings,
        is_leader: Callable[[], bool],
    ) -> None:
        self._state = state
        self._client = client
        self._rdi = rdi
        self._settings = settings
        self._is_leader = is_leader
        self._lead_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        state.on_change(self._wake.set)

    # -- what partition owners call ------------------------------------------------------------------

    async def started(self, marker: RunMarker) -> None:
        """A run-start marker was handled on ``marker.partition``."""
        if self._part(marker.run_id, marker.partition) is None:
            await self._state.put_part(
                RunPartition(
                    run_id=marker.run_id,
                    partition=marker.partition,
                    partitions=marker.partitions,
                    expected=marker.expected,
                    started_at=marker.started_at,
                )
            )

    async def ended(self, marker: RunMarker) -> None:
        """A run-end marker was handled: every earlier message of its partition has its outcome."""
        part = self._part(marker.run_id, marker.partition) or RunPartition(
            run_id=marker.run_id,
            partition=marker.partition,
            partitions=marker.partitions,
            expected=marker.expected,
            started_at=marker.started_at,
        )
        if not part.ended:
            update = {"ended": True, "published": marker.published, "extract_failed": marker.failed}
            await self._state.put_part(part.model_copy(update=update | {"last_activity": time.time()}))

    async def activity(self, run_id: str, partition: int) -> None:
        """An ARC of the run was handled on ``partition`` (keeps the run from looking abandoned)."""
        part = self._part(run_id, partition)
        if part is not None and not part.ended and time.time() - part.last_activity > ACTIVITY_INTERVAL_S:
            await self._state.put_part(part.model_copy(update={"last_activity": time.time()}))

    async def harvest(self, run_id: str) -> RunRecord | None:
        """The run once its harvest exists or it is closed; ``None`` for a run no partition started."""
        if run_id not in self._state.parts and run_id not in self._state.runs:
            return None

        def decided() -> bool:
            record = self._state.runs.get(run_id)
            return record is not None and (record.harvest_id is not None or record.status != "RUNNING")

        await self._state.wait_for(decided)
        return self._state.runs[run_id]

    def _part(self, run_id: str, partition: int) -> RunPartition | None:
        return self._state.parts.get(run_id, {}).get(partition)

    # -- the leader ------------------------------------------------------------------------------------

    def start(self) -> None:
        self._lead_task = asyncio.create_task(self._lead())

    async def close(self) -> None:
        if self._lead_task is not None:
            self._lead_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lead_task

    async def _lead(self) -> None:
        while True:
            self._wake.clear()
            if self._is_leader():
                try:
                    await self.step()
                except asyncio.CancelledError:
                    raise
                except Exception:  # a bug here must not stop delivery; say it and try again later
                    log.exception("managing snapshot runs failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=LEADER_INTERVAL_S)

    async def step(self) -> None:
        """One pass over the open runs: create, complete or cancel harvests as the state says."""
        for run_id, parts in list(self._state.parts.items()):
            record = self._state.runs.get(run_id)
            if record is not None and record.status != "RUNNING":
                continue
            first = next(iter(parts.values()))
            if record is None:
                await self._open(run_id, first)
                continue
            ended = [part for part in parts.values() if part.ended]
            if len(ended) >= record.partitions:
                await self._close(record, "COMPLETED", None)
            elif reason := self._abandoned(run_id, parts):
                await self._close(record, "CANCELLED", reason)

    async def _open(self, run_id: str, first: RunPartition) -> None:
        record = RunRecord(
            run_id=run_id, expected=first.expected, partitions=first.partitions, started_at=first.started_at
        )
        body = dumps({"rdi": self._rdi, "expected_datasets": first.expected})
        try:
            reply = await self._client.call("POST", "/v3/harvests", body)
            record = record.model_copy(update={"harvest_id": str(reply.body["harvest_id"])})
            log.info("run %s: harvest %s created", run_id, record.harvest_id)
        except (AttemptError, KeyError, TypeError) as exc:
            record = record.model_copy(
                update={"status": "FAILED", "error": f"cannot create the harvest: {exc}", "finished_at": utc_now_iso()}
            )
            log.error("run %s: %s; its ARCs are delivered on their own", run_id, record.error)
        await self._state.put_run(record)

    def _abandoned(self, run_id: str, parts: dict[int, RunPartition]) -> str | None:
        """Why the run will never end, or ``None``: a newer run started on one of its open partitions,
        or nothing of it came for ``run_idle_timeout_s``."""
        for partition, part in parts.items():
            if part.ended:
                continue
            for other_id, other_parts in self._state.parts.items():
                other = other_parts.get(partition)
                if other_id != run_id and other is not None and other.started_at > part.started_at:
                    return f"run {other_id} started on partition {partition} before this run ended there"
        idle = time.time() - max(part.last_activity for part in parts.values())
        if idle > self._settings.run_idle_timeout_s:
            return (
                f"no marker or ARC of this run for {idle:.0f}s (run_idle_timeout_s="
                f"{self._settings.run_idle_timeout_s:g}): its extraction stopped"
            )
        return None

    async def _close(self, record: RunRecord, status: RunStatus, reason: str | None) -> None:
        error = reason
        if record.harvest_id is not None:
            try:
                await self._client.call("PATCH", f"/v3/harvests/{record.harvest_id}", dumps({"status": status}))
            except AttemptError as exc:
                if exc.status != 409:  # 409: not RUNNING any more (closed by an earlier leader)
                    error = f"cannot set harvest {record.harvest_id} to {status}: {exc}"
                    log.error("run %s: %s", record.run_id, error)
        if reason:
            log.warning("run %s %s: %s", record.run_id, status, reason)
        log.info("run %s: harvest %s %s", record.run_id, record.harvest_id, status)
        await self._state.put_run(
            record.model_copy(update={"status": status, "error": error, "finished_at": utc_now_iso()})
        )
