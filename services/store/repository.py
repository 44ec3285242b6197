"""The store's state: ARC files under a directory, their metadata, and harvest runs.

Each ARC is the file ``arcs/<arc_id>.json`` holding exactly the bytes the client
sent, next to ``arcs/<arc_id>.meta.json`` (identifier, RDI, hash, first/last
seen). A harvest is ``harvests/<harvest_id>.json`` plus an append-only
``<harvest_id>.arcs.jsonl`` of the identifiers it received (appending keeps a
100 000-ARC harvest linear). Everything is reloaded at start, so a restarted store still
answers ``updated`` with the same hash for an
identical re-upload. Disk writes run in a worker thread (never on the loop).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from services.common.report import utc_now_iso

HarvestStatus = Literal["RUNNING", "COMPLETED", "FAILED", "CANCELLED"]
TERMINAL: frozenset[str] = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


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
    events: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Harvest:
    harvest_id: str
    rdi: str
    status: HarvestStatus
    started_at: str
    expected_datasets: int | None = None
    completed_at: str | None = None
    #: identifier -> (content hash, first result: created | updated | unchanged)
    arcs: dict[str, list[str]] = field(default_factory=dict)
    errors: int = 0

    def statistics(self) -> dict[str, Any]:
        """Counts over distinct identifiers, so a client's retry of an ARC is not counted twice."""
        results = [result for _, result in self.arcs.values()]
        return {
            "expected_datasets": self.expected_datasets,
            "arcs_submitted": len(self.arcs),
            "arcs_new": results.count("created"),
            "arcs_updated": results.count("updated"),
            "arcs_unchanged": results.count("unchanged"),
            "arcs_missing": 0,
            "errors": self.errors,
        }

    def response(self) -> dict[str, Any]:
        return {
            "harvest_id": self.harvest_id,
            "rdi": self.rdi,
            "status": self.status,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "statistics": self.statistics(),
            "client_id": None,
            "message": "",
        }


@dataclass(frozen=True)
class PutResult:
    status: Literal["created", "updated"]
    meta: ArcMeta
    changed: bool


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


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
            meta = ArcMeta(**json.loads(path.read_text(encoding="utf-8")))
            self.arcs[meta.arc_id] = meta
        for path in self.harvest_dir.glob("harvest-*[0-9a-f].json"):
            harvest = Harvest(**json.loads(path.read_text(encoding="utf-8")))
            arcs_log = path.with_suffix(".arcs.jsonl")
            if arcs_log.is_file():
                for line in arcs_log.read_text(encoding="utf-8").splitlines():
                    identifier, arc_hash, result = json.loads(line)
                    harvest.arcs.setdefault(identifier, [arc_hash, result])
            self.harvests[harvest.harvest_id] = harvest

    def arc_path(self, arc_id: str) -> Path:
        return self.arc_dir / f"{arc_id}.json"

    async def put_arc(self, arc_id: str, identifier: str, rdi: str, arc_hash: str, raw: bytes) -> PutResult:
        """Create or update one ARC; identical content is a no-op answered ``updated``."""
        async with self._write_lock:
            return await self._put_arc(arc_id, identifier, rdi, arc_hash, raw)

    async def _put_arc(self, arc_id: str, identifier: str, rdi: str, arc_hash: str, raw: bytes) -> PutResult:
        now = utc_now_iso()
        meta = self.arcs.get(arc_id)
        if meta is None:
            meta = ArcMeta(arc_id, identifier, rdi, arc_hash, now, now, [{"timestamp": now, "type": "ARC_CREATED"}])
            result = PutResult("created", meta, changed=True)
        elif meta.arc_hash != arc_hash:
            meta.arc_hash = arc_hash
            meta.last_seen = now
            meta.events.append({"timestamp": now, "type": "ARC_UPDATED"})
            result = PutResult("updated", meta, changed=True)
        else:
            meta.last_seen = now
            return PutResult("updated", meta, changed=False)
        self.arcs[arc_id] = meta
        meta_bytes = json.dumps(asdict(meta)).encode()
        await asyncio.to_thread(self._write_arc, arc_id, raw, meta_bytes)
        return result

    def _write_arc(self, arc_id: str, raw: bytes, meta_bytes: bytes) -> None:
        _write_atomic(self.arc_path(arc_id), raw)
        _write_atomic(self.arc_dir / f"{arc_id}.meta.json", meta_bytes)

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

    async def create_harvest(self, rdi: str, expected: int | None) -> Harvest:
        harvest = Harvest(f"harvest-{uuid.uuid4()}", rdi, "RUNNING", utc_now_iso(), expected)
        self.harvests[harvest.harvest_id] = harvest
        await self.save_harvest(harvest)
        return harvest

    def harvest(self, harvest_id: str) -> Harvest:
        harvest = self.harvests.get(harvest_id)
        if harvest is None:
            raise NotFoundError("Harvest not found")
        return harvest

    def check_harvest_arc(self, harvest: Harvest, identifier: str, arc_hash: str) -> None:
        """409 when the harvest is closed or already holds this identifier with other content."""
        if harvest.status != "RUNNING":
            raise ConflictError(f"Harvest {harvest.harvest_id} is {harvest.status}, not RUNNING")
        seen = harvest.arcs.get(identifier)
        if seen is not None and seen[0] != arc_hash:
            raise ConflictError(
                f"ARC '{identifier}' was already submitted in harvest {harvest.harvest_id} with different content"
            )

    async def record_harvest_arc(self, harvest: Harvest, identifier: str, arc_hash: str, result: str) -> None:
        if identifier not in harvest.arcs:
            harvest.arcs[identifier] = [arc_hash, result]
            line = (json.dumps([identifier, arc_hash, result]) + "\n").encode()
            await asyncio.to_thread(self._append, self.harvest_dir / f"{harvest.harvest_id}.arcs.jsonl", line)

    @staticmethod
    def _append(path: Path, line: bytes) -> None:
        with open(path, "ab") as log:
            log.write(line)

    async def transition(self, harvest: Harvest, status: HarvestStatus) -> Harvest:
        if harvest.status != "RUNNING":
            raise ConflictError(
                f"Harvest {harvest.harvest_id} cannot transition to {status}: current status is {harvest.status}"
            )
        harvest.status = status
        harvest.completed_at = utc_now_iso()
        await self.save_harvest(harvest)
        return harvest

    async def save_harvest(self, harvest: Harvest) -> None:
        data = json.dumps(asdict(harvest) | {"arcs": {}}).encode()
        await asyncio.to_thread(_write_atomic, self.harvest_dir / f"{harvest.harvest_id}.json", data)
