"""A real ARC store process per test (same code as ``arcstream dev up``) and tiny ``arc.arcs`` input.

ARC messages are produced here directly (the builder is not needed to test the
uploader): small valid RO-Crates like ``fixtures/example_arc_payload.json`` with
varying identifiers, serialised with spaces so byte-equality at the store proves
the uploader does not re-serialise.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common.config import Settings
from services.common.content_hash import content_hash
from services.common.kafka.clients import make_producer, start_client
from services.common.kafka.reading import read_topic
from services.common.kafka.topics import ensure_topics
from services.common.records import (
    H_CONTENT_HASH,
    H_KIND,
    H_RUN_ID,
    H_SOURCE_TS,
    RunMarker,
    loads,
    make_headers,
)
from services.common.report import OutcomeRecord, utc_now_iso
from services.dev.stack import stack
from services.dev.stack.processes import terminate
from services.uploader.service import Uploader


@dataclass
class StoreProcess:
    url: str
    directory: Path
    pid: int | None

    def get(self, path: str) -> Any:
        return httpx.get(self.url + path, timeout=10).json()

    def arc_file(self, arc_id: str) -> bytes:
        return (self.directory / "arcs" / f"{arc_id}.json").read_bytes()

    def requests(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/_store/requests")
        return result


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[Callable[..., StoreProcess]]:
    """Start ``arcstream store`` processes on free ports; flags are ``arcstream store`` options."""
    started: list[StoreProcess] = []

    def factory(*flags: str) -> StoreProcess:
        data_dir = tmp_path / f"store-{len(started)}"
        record = stack.start_store(data_dir, extra_args=flags, known_rdis=("test-rdi",))
        assert record.data_dir is not None
        process = StoreProcess(record.url, Path(record.data_dir), record.pid)
        started.append(process)
        return process

    yield factory
    for process in started:
        terminate(process.pid)


def arc_document(identifier: str, title: str = "") -> dict[str, Any]:
    return {
        "@context": "https://w3id.org/ro/crate/1.1/context",
        "@graph": [
            {
                "@id": "./",
                "@type": "Dataset",
                "additionalType": "Investigation",
                "identifier": identifier,
                "name": title or f"Investigation {identifier}",
                "sdDatePublished": utc_now_iso(),
            },
            {
                "@id": "ro-crate-metadata.json",
                "@type": "CreativeWork",
                "conformsTo": {"@id": "https://w3id.org/ro/crate/1.1"},
                "about": {"@id": "./"},
            },
        ],
    }


def arc_bytes(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


@dataclass
class Produced:
    identifier: str
    value: bytes | None
    partition: int
    offset: int


class ArcsTopic:
    """Writes ``arc.arcs`` messages the way the builder does (headers, markers on every partition)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def _send(
        self, items: list[tuple[bytes, bytes | None, list[tuple[str, bytes]], int | None]]
    ) -> list[Produced]:
        await ensure_topics(self.settings)
        producer = make_producer(self.settings.kafka)
        await start_client(producer, self.settings.kafka)
        try:
            futures = [
                await producer.send(
                    self.settings.topics.arcs, key=key, value=value, headers=headers, partition=partition
                )
                for key, value, headers, partition in items
            ]
            sent = [await future for future in futures]
        finally:
            await producer.stop()
        return [
            Produced(key.decode(), value, meta.partition, meta.offset)
            for (key, value, _, _), meta in zip(items, sent, strict=True)
        ]

    async def arcs(
        self,
        documents: list[dict[str, Any] | bytes | None],
        run_id: str | None = None,
        keys: list[str] | None = None,
        partition: int | None = None,
    ) -> list[Produced]:
        items = []
        for index, document in enumerate(documents):
            if isinstance(document, dict):
                identifier = keys[index] if keys else document["@graph"][0]["identifier"]
                value: bytes | None = arc_bytes(document)
                digest: str | None = content_hash(document)
            else:
                assert keys is not None
                identifier, value, digest = keys[index], document, None
            headers = make_headers(
                {
                    H_KIND: "arc" if value is not None else None,
                    H_RUN_ID: run_id,
                    H_CONTENT_HASH: digest,
                    H_SOURCE_TS: datetime.now(UTC).isoformat(),
                }
            )
            items.append((identifier.encode(), value, headers, partition))
        return await self._send(items)

    async def raw(self, items: list[tuple[str, bytes | None, list[tuple[str, bytes]]]]) -> list[Produced]:
        """Messages exactly as given (key, value, headers): what a faulty producer might write."""
        return await self._send([(key.encode(), value, headers, None) for key, value, headers in items])

    async def markers(self, kind: str, run_id: str, expected: int, published: dict[int, int] | None = None) -> None:
        partitions = self.settings.topics.partitions
        items = []
        for partition in range(partitions):
            marker = RunMarker(
                kind=kind,  # type: ignore[arg-type]
                run_id=run_id,
                partition=partition,
                partitions=partitions,
                expected=expected,
                published=(published or {}).get(partition, 0),
                started_at=utc_now_iso(),
                finished_at=utc_now_iso() if kind == "run-end" else None,
            )
            items.append(
                (
                    marker.key,
                    marker.model_dump_json().encode(),
                    make_headers({H_KIND: kind, H_RUN_ID: run_id}),
                    partition,
                )
            )
        await self._send(items)

    async def snapshot_run(
        self, documents: list[dict[str, Any]], run_id: str | None = None
    ) -> tuple[str, list[Produced]]:
        """run-start, the ARCs, run-end with per-partition counts: what the builder passes through."""
        run_id = run_id or f"run-{uuid.uuid4().hex[:8]}"
        await self.markers("run-start", run_id, len(documents))
        produced = await self.arcs(documents, run_id)
        published: dict[int, int] = {}
        for item in produced:
            published[item.partition] = published.get(item.partition, 0) + 1
        await self.markers("run-end", run_id, len(documents), published)
        return run_id, produced


@pytest.fixture
def arcs_topic(settings: Settings) -> ArcsTopic:
    return ArcsTopic(settings)


async def outcomes(settings: Settings) -> list[OutcomeRecord]:
    records = await read_topic(settings.kafka, settings.topics.report)
    return [OutcomeRecord.model_validate(loads(r.value)) for r in records if r.value is not None]


@asynccontextmanager
async def running_uploader(settings: Settings, **kwargs: Any) -> Any:
    """The uploader as a task of this event loop; stopped (SIGTERM path) on exit."""
    stop = asyncio.Event()
    uploader = Uploader(settings, **kwargs)
    task = asyncio.create_task(uploader.run(stop))
    try:
        yield uploader
    finally:
        stop.set()
        await task


def upload_settings(make_settings: Callable[..., Settings], store: StoreProcess, **uploader: Any) -> Settings:
    """Settings for an uploader test: the store as target, quick retries (and the dev stack's short group timings).

    The group is the test's own (named after its topic prefix): a member left behind by a killed
    process must not delay another test's join.
    """
    prefix = make_settings().topics.prefix
    return make_settings(
        rdi="test-rdi",
        uploader={
            "target_url": store.url,
            "backoff_initial_s": 0.05,
            "backoff_max_s": 0.5,
            "group_id": f"uploader-{prefix}",
            **uploader,
        },
    )


def spawn_uploader(settings: Settings, log_file: Path) -> subprocess.Popen[bytes]:
    """``arcstream uploader`` as its own process with these settings (a deployed member of the group)."""
    env = os.environ | {
        "ARCSTREAM_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "ARCSTREAM_KAFKA__SESSION_TIMEOUT_MS": str(settings.kafka.session_timeout_ms),
        "ARCSTREAM_KAFKA__HEARTBEAT_INTERVAL_MS": str(settings.kafka.heartbeat_interval_ms),
        "ARCSTREAM_TOPICS__PREFIX": settings.topics.prefix,
        "ARCSTREAM_TOPICS__PARTITIONS": str(settings.topics.partitions),
        "ARCSTREAM_RDI": settings.rdi,
        "ARCSTREAM_UPLOADER__MAX_CONCURRENT_UPLOADS": "4",
        "ARCSTREAM_UPLOADER__GROUP_ID": settings.uploader.group_id,
        "ARC_STORE_URL": settings.uploader.target_url,
    }
    if settings.kafka.rebalance_timeout_ms is not None:
        env["ARCSTREAM_KAFKA__REBALANCE_TIMEOUT_MS"] = str(settings.kafka.rebalance_timeout_ms)
    with open(log_file, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli", "uploader"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
