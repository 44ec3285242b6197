"""The store's state: ARC files under a directory, their metadata, and harvest runs.

Each ARC is the file ``arcs/<arc_id>.json`` holding exactly the bytes the client
sent, next to ``arcs/<arc_id>.meta.json`` (identifier, RDI, hash, first/last seen,
the harvests that saw and changed it, the event log). A harvest is
``harvests/<harvest_id>.json``. Everything is reloaded at start, so a restarted store
still answers ``updated`` with the same hash for an identical re-upload. Disk writes
run in a worker thread (never on the loop).

The harvest bookkeeping is the API's: an ARC records ``first_harvest_id``,
``last_harvest_id`` and ``last_changed_harvest_id``; a harvest's statistics are
derived from those when it is finalised (nothing is counted per request), which is
why an ARC sent into a harvest that is already COMPLETED is accepted but not counted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from services.store.responses import harvest_time, now

HarvestStatus = Literal["RUNNING", "COMPLETED", "FAILED", "CANCELLED"]


class ConflictError(Exception):
    """The request contradicts what the store holds (HTTP 409)."""


class NotFoundError(Exception):
    """No such ARC or harvest (HTTP 404)."""


@dataclass
class ArcMeta:
    arc_id: str
    identifier: str
    rdi: str
    arc_hash: str
    first_seen: str
    last_seen: str
    last_changed: str = ""
    first_harvest_id: str | None = None
    last_harvest_id: str | None = None
    last_changed_harvest_id: str | None = None
    #: ``{timestamp, type, message, harvest_id}``: ARC_CREATED / ARC_UPDATED, GIT_PUSH_SUCCESS / _FAILED.
    events: list[dict[str, Any]] = field(default_factory=list)

    def event(self, kind: str, message: str, harvest_id: str | None = None) -> None:
        self.events.append({"timestamp": now(), "type": kind, "message": message, "harvest_id": harvest_id})


def _statistics(expected: int | None, new: int = 0, updated: int = 0, unchanged: int = 0) -> dict[str, Any]:
    return {
        "expected_datasets": expected,
        "arcs_submitted": new + updated + unchanged,
        "arcs_new": new,
        "arcs_updated": updated,
        "arcs_unchanged": unchanged,
        "arcs_missing": 0,
        "errors": 0,
    }


@dataclass
class Harvest:
    harvest_id: str
    rdi: str
    status: HarvestStatus
    started_at: str
    expected_datasets: int | None = None
    completed_at: str | None = None
    #: Common name of the client certificate that created it (the API's owner check), ``None`` without mTLS.
    client_id: str | None = None
    #: Set when the harvest is finalised; a RUNNING harvest reports zeros.
    statistics: dict[str, Any] | None = None

    def response(self) -> dict[str, Any]:
        return {
            "client_id": None,
            "message": "",
            "harvest_id": self.harvest_id,
            "rdi": self.rdi,
            "status": self.status,
            "started_at": harvest_time(self.started_at),
            "completed_at": harvest_time(self.completed_at),
            "statistics": self.statistics or _statistics(self.expected_datasets),
        }


@dataclass(frozen=True)
class PutResult:
    status: Literal["created", "updated"]
    meta: ArcMeta
    #: New or changed content: what the API hands to its git sync.
    changed: bool


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _known_fields[T](cls: type[T], data: dict[str, Any]) -> T:
    """Build a record from a file written by this or an older store (unknown keys are dropped)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{key: value for key, value in data.items() if key in names})


class Repository:
    """ARCs and harvests of one store directory. All mutations happen on the event loop thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.arc_dir = directory / "arcs"
        self.harvest_dir = directory / "harvests"
        self.arcs: dict[str, ArcMeta] = {}
        self.harvests: dict[str, Harvest] = {}
        #: Serialises ARC writes so two uploads of one ARC can never land on disk out of order.
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, directory: Path) -> Repository:
        repo = cls(directory)
        await asyncio.to_thread(repo._load)
        return repo

    def _load(self) -> None:
        self.arc_dir.mkdir(parents=True, exist_ok=True)
        self.harvest_dir.mkdir(parents=True, exist_ok=True)
        for path in self.arc_dir.glob("*.meta.json"):
            meta = _known_fields(ArcMeta, json.loads(path.read_text(encoding="utf-8")))
            self.arcs[meta.arc_id] = meta
        harvests = [
            _known_fields(Harvest, json.loads(path.read_text(encoding="utf-8")))
            for path in self.harvest_dir.glob("harvest-*[0-9a-f].json")
        ]
        self.harvests = {h.harvest_id: h for h in sorted(harvests, key=lambda h: h.started_at)}

    def arc_path(self, arc_id: str) -> Path:
        return self.arc_dir / f"{arc_id}.json"

    # -- ARCs ----------------------------------------------------------------------------------

    async def put_arc(
        self, arc_id: str, identifier: str, rdi: str, arc_hash: str, raw: bytes, harvest_id: str | None
    ) -> PutResult:
        """Create or update one ARC, as the API's document store does.

        Identical content is answered ``updated`` and only moves ``last_seen`` (and
        ``last_harvest_id``). Within one harvest an identifier is immutable: other
        content for an ARC this harvest already saw is a :class:`ConflictError`.
        """
        async with self._write_lock:
            meta = self.arcs.get(arc_id)
            stamp = now()
            if meta is None:
                meta = ArcMeta(arc_id, identifier, rdi, arc_hash, first_seen=stamp, last_seen=stamp, last_changed=stamp)
                meta.first_harvest_id = meta.last_harvest_id = meta.last_changed_harvest_id = harvest_id
                meta.event("ARC_CREATED", "ARC first seen", harvest_id)
                result = PutResult("created", meta, changed=True)
            elif harvest_id is not None and meta.last_harvest_id == harvest_id and meta.arc_hash != arc_hash:
                raise ConflictError(
                    f"ARC '{identifier}' was already submitted in harvest '{harvest_id}' with different content."
                )
            elif meta.arc_hash != arc_hash:
                meta.arc_hash, meta.last_seen, meta.last_changed = arc_hash, stamp, stamp
                if harvest_id is not None:
                    meta.last_harvest_id = meta.last_changed_harvest_id = harvest_id
                meta.event("ARC_UPDATED", "ARC content changed", harvest_id)
                result = PutResult("updated", meta, changed=True)
            else:
                meta.last_seen = stamp
                if harvest_id is not None:
                    meta.last_harvest_id = harvest_id
                result = PutResult("updated", meta, changed=False)
            self.arcs[arc_id] = meta
            await asyncio.to_thread(self._write_arc, arc_id, raw if result.changed else None, self._meta_bytes(meta))
            return result

    @staticmethod
    def _meta_bytes(meta: ArcMeta) -> bytes:
        return json.dumps(asdict(meta)).encode()

    def _write_arc(self, arc_id: str, raw: bytes | None, meta_bytes: bytes) -> None:
        if raw is not None:
            _write_atomic(self.arc_path(arc_id), raw)
        _write_atomic(self.arc_dir / f"{arc_id}.meta.json", meta_bytes)

    async def add_event(self, arc_id: str, kind: str, message: str) -> None:
        """Append an event to an ARC's log (the git sync's outcome); gone ARCs are ignored."""
        async with self._write_lock:
            meta = self.arcs.get(arc_id)
            if meta is None:
                return
            meta.event(kind, message)
            await asyncio.to_thread(_write_atomic, self.arc_dir / f"{arc_id}.meta.json", self._meta_bytes(meta))

    async def delete_arc(self, arc_id: str) -> ArcMeta:
        async with self._write_lock:
            meta = self.arcs.pop(arc_id, None)
            if meta is None:
                raise NotFoundError(f"ARC {arc_id} not found")
            await asyncio.to_thread(self._remove_arc, arc_id)
            return meta

    def _remove_arc(self, arc_id: str) -> None:
        self.arc_path(arc_id).unlink(missing_ok=True)
        (self.arc_dir / f"{arc_id}.meta.json").unlink(missing_ok=True)

    async def read_arc(self, arc_id: str) -> bytes:
        if arc_id not in self.arcs:
            raise NotFoundError(f"ARC {arc_id} not found")
        return await asyncio.to_thread(self.arc_path(arc_id).read_bytes)

    # -- harvests ------------------------------------------------------------------------------

    async def create_harvest(self, rdi: str, expected: int | None, client_id: str | None) -> Harvest:
        harvest = Harvest(f"harvest-{uuid.uuid4()}", rdi, "RUNNING", now(), expected, client_id=client_id)
        self.harvests[harvest.harvest_id] = harvest
        await self.save_harvest(harvest)
        return harvest

    def harvest(self, harvest_id: str) -> Harvest:
        harvest = self.harvests.get(harvest_id)
        if harvest is None:
            raise NotFoundError("Harvest not found")
        return harvest

    def harvests_of(self, rdi: str | None, skip: int, limit: int) -> list[Harvest]:
        chosen = [h for h in self.harvests.values() if rdi is None or h.rdi == rdi]
        return chosen[skip : skip + limit]

    def _finalised_statistics(self, harvest: Harvest) -> dict[str, Any]:
        """Counts over the ARCs whose last harvest is this one, classified by where they were first seen and changed."""
        new = updated = unchanged = 0
        for meta in self.arcs.values():
            if meta.last_harvest_id != harvest.harvest_id:
                continue
            if meta.first_harvest_id == harvest.harvest_id:
                new += 1
            elif meta.last_changed_harvest_id == harvest.harvest_id:
                updated += 1
            else:
                unchanged += 1
        return _statistics(harvest.expected_datasets, new, updated, unchanged)

    async def transition(self, harvest: Harvest, status: HarvestStatus) -> Harvest:
        """Finalise a RUNNING harvest (PATCH, ``/complete``); any other current status is a conflict."""
        if harvest.status != "RUNNING":
            raise ConflictError(
                f"Harvest {harvest.harvest_id} cannot transition to {status}: current status is {harvest.status}"
            )
        return await self._finalise(harvest, status)

    async def cancel(self, harvest: Harvest) -> Harvest:
        """``DELETE /v3/harvests/{id}``: the API cancels whatever the current status is."""
        return await self._finalise(harvest, "CANCELLED")

    async def _finalise(self, harvest: Harvest, status: HarvestStatus) -> Harvest:
        harvest.status = status
        harvest.completed_at = now()
        harvest.statistics = self._finalised_statistics(harvest)
        await self.save_harvest(harvest)
        return harvest

    async def save_harvest(self, harvest: Harvest) -> None:
        data = json.dumps(asdict(harvest)).encode()
        await asyncio.to_thread(_write_atomic, self.harvest_dir / f"{harvest.harvest_id}.json", data)
