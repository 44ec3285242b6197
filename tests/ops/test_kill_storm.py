"""A kill -9 storm: builder and uploader processes killed mid-run, again and again, and restarted.

Asserted: every investigation ends in the store, and the report topic holds exactly one
outcome per identifier, stage and version (the input message the outcome is about: its
topic, partition and offset) — the promise a restarted member keeps by finding the
outcomes it already wrote (services/common/kafka/recovery.py) instead of writing them again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from services.common.config import WELL_KNOWN_ENV, Settings
from services.common.kafka.reading import read_topic
from services.common.payload import InvestigationPayload
from services.common.records import H_ORIGIN_OFFSET, H_ORIGIN_PARTITION, H_ORIGIN_TOPIC, header_dict
from services.common.report import OutcomeRecord
from services.dev.stack.state import ServerRecord

from .pipeline import publish, run, stored, until

N = 240
KILLS = 3
DELIVERED = {"created", "updated", "unchanged"}


def env_for(settings: Settings, store: ServerRecord) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCSTREAM_") and k not in WELL_KNOWN_ENV}
    kafka = settings.kafka
    return env | {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "ARCSTREAM_KAFKA__SESSION_TIMEOUT_MS": str(kafka.session_timeout_ms),
        "ARCSTREAM_KAFKA__HEARTBEAT_INTERVAL_MS": str(kafka.heartbeat_interval_ms),
        "ARCSTREAM_TOPICS__PREFIX": settings.topics.prefix,
        "ARCSTREAM_TOPICS__PARTITIONS": str(settings.topics.partitions),
        "ARCSTREAM_STATE_DIR": str(settings.state_dir),
        "ARCSTREAM_RDI": "storm-rdi",
        "ARC_STORE_URL": store.url,
        "ARCSTREAM_BUILDER__GROUP_ID": f"builder-{settings.topics.prefix}",
        "ARCSTREAM_UPLOADER__GROUP_ID": f"uploader-{settings.topics.prefix}",
        # Small in-flight bounds and frequent commits: more work in flight and half-committed at each kill.
        "ARCSTREAM_BUILDER__MAX_IN_FLIGHT": "8",
        "ARCSTREAM_UPLOADER__MAX_IN_FLIGHT": "8",
    }


@contextmanager
def service(args: list[str], env: dict[str, str], log: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """A restartable service process (its own process group: a kill takes its build workers too)."""
    current: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", *args],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        current.append(process)
        return process

    try:
        yield start
    finally:
        for process in current:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def kill(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


async def report(settings: Settings) -> list[tuple[OutcomeRecord, tuple[str, ...]]]:
    records = await read_topic(settings.kafka, settings.topics.report)
    out = []
    for record in records:
        if record.value is None:
            continue
        headers = header_dict(record.headers)
        origin = (
            headers.get(H_ORIGIN_TOPIC, ""),
            headers.get(H_ORIGIN_PARTITION, ""),
            headers.get(H_ORIGIN_OFFSET, ""),
        )
        out.append((OutcomeRecord.model_validate(orjson.loads(record.value)), origin))
    return out


def test_builder_and_uploader_killed_mid_run_give_exactly_one_outcome_per_identifier_stage_and_version(
    make_settings: Callable[..., Settings], tmp_path: Path, start_store: Callable[..., ServerRecord]
) -> None:
    store = start_store("storm", "--latency-ms", "15", "--known-rdi", "storm-rdi")
    settings = make_settings()
    run(publish(settings, *(InvestigationPayload(identifier=f"storm-{n:03d}", title=f"T {n}") for n in range(N))))
    env = env_for(settings, store)

    async def storm() -> None:
        with (
            service(["builder", "--engine", "fast", "--workers", "1"], env, tmp_path / "builder.log") as builder,
            service(["uploader"], env, tmp_path / "uploader.log") as uploader,
        ):
            building, uploading = builder(), uploader()
            for round_ in range(KILLS):
                seen = len(await report(settings))

                async def progressed(seen: int = seen) -> bool:
                    return len(await report(settings)) > seen + 20

                await until(progressed, f"progress before kill {round_ + 1}")
                kill(building)
                building = builder()
                await until(progressed, f"progress before the uploader's kill {round_ + 1}")
                kill(uploading)
                uploading = uploader()

            async def complete() -> bool:
                # Delivered: "created", or "updated" for one whose first attempt's uploader was killed
                # after the request and before its outcome (the repeat finds it at the target).
                outcomes = await report(settings)
                delivered = {o.identifier for o, _ in outcomes if o.stage == "upload" and o.status in DELIVERED}
                return delivered >= {f"storm-{n:03d}" for n in range(N)}

            await until(complete, "every investigation delivered after the storm", limit_s=300)
            for process in (building, uploading):
                process.send_signal(signal.SIGTERM)
                assert process.wait(timeout=120) == 0

    asyncio.run(storm())
    outcomes = run(report(settings))
    per_version = Counter((o.identifier, o.stage, origin) for o, origin in outcomes)
    repeated = {key: count for key, count in per_version.items() if count > 1}
    assert not repeated, f"outcomes written twice for one version: {repeated}"
    built = {o.identifier for o, _ in outcomes if o.stage == "build" and o.status == "built"}
    assert len(built) == N
    assert len(stored(store)) == N
