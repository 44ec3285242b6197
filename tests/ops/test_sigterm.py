"""SIGTERM on the real service processes: exit 0, and the committed offsets are exactly the completed work.

"Completed" is what the stage recorded an outcome for on ``arc.report``. Per
partition the committed offset must equal the first input without an outcome
(or the end): lower would leave completed work uncommitted (done twice after a
restart), higher would commit work that was never done (lost).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
from aiokafka import TopicPartition

from services.common.config import WELL_KNOWN_ENV, Settings
from services.common.kafka.clients import make_admin, make_producer, start_client
from services.common.kafka.reading import read_topic
from services.common.kafka.topics import ensure_topics
from services.common.payload import InvestigationPayload
from services.common.records import H_KIND, H_SOURCE_TS, make_headers
from services.common.report import OutcomeRecord, utc_now_iso
from services.dev.stack.state import ServerRecord

from .pipeline import FAST_GROUP, publish, run, until

#: Bounds a hung process only; how fast it stops is not asserted here.
STOP_LIMIT_S = 120


def service_env(settings: Settings, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment a deployed service gets: only these settings, nothing from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCSTREAM_") and k not in WELL_KNOWN_ENV}
    return env | {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "ARCSTREAM_TOPICS__PREFIX": settings.topics.prefix,
        "ARCSTREAM_TOPICS__PARTITIONS": str(settings.topics.partitions),
        "ARCSTREAM_KAFKA__SESSION_TIMEOUT_MS": str(FAST_GROUP["session_timeout_ms"]),
        "ARCSTREAM_KAFKA__HEARTBEAT_INTERVAL_MS": str(FAST_GROUP["heartbeat_interval_ms"]),
        "ARCSTREAM_STATE_DIR": str(tmp_path / "service-state"),
        **extra,
    }


async def inputs(settings: Settings, topic: str) -> dict[int, list[tuple[int, str]]]:
    """(offset, key) of every message per partition."""
    per_partition: dict[int, list[tuple[int, str]]] = {}
    for record in await read_topic(settings.kafka, topic):
        per_partition.setdefault(record.partition, []).append((record.offset, (record.key or b"").decode()))
    return per_partition


async def outcomes(settings: Settings, stage: str) -> set[str]:
    """Identifiers with an outcome of ``stage`` on the report topic."""
    records = await read_topic(settings.kafka, settings.topics.report)
    parsed = [OutcomeRecord.model_validate(orjson.loads(r.value)) for r in records if r.value is not None]
    return {outcome.identifier for outcome in parsed if outcome.stage == stage}


async def committed(settings: Settings, group: str, topic: str) -> dict[int, int]:
    admin = make_admin(settings.kafka)
    await start_client(admin, settings.kafka)
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topics.partitions)]
        offsets = await admin.list_consumer_group_offsets(group, partitions=tps)
        # Where the group resumes: no commit (-1) means the beginning, like a commit of 0.
        return {tp.partition: max(meta.offset, 0) for tp, meta in offsets.items()}
    finally:
        await admin.close()


def completion_points(
    per_partition: dict[int, list[tuple[int, str]]], done: set[str], partitions: int
) -> dict[int, int]:
    """Per partition: the first offset whose message has no outcome, or one past the last message."""
    points = {}
    for partition in range(partitions):
        messages = sorted(per_partition.get(partition, []))
        pending = [offset for offset, key in messages if key not in done]
        points[partition] = pending[0] if pending else (messages[-1][0] + 1 if messages else 0)
    return points


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=STOP_LIMIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError("service did not exit after SIGTERM") from None


def test_builder_sigterm_commits_exactly_the_completed_builds(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(kafka=FAST_GROUP)
    group = f"builder-{settings.topics.prefix}"
    run(publish(settings, *(InvestigationPayload(identifier=f"inv-{n:02d}", title=f"T {n}") for n in range(9))))
    # The service's own entry point (signal handlers included), with a build engine that takes a while.
    script = (
        "import asyncio; from services.builder.engines import register_engine; "
        "from services.builder.service import run_builder; from services.common.config import load_settings; "
        "register_engine('slow', 'tests.ops.engines:build_slow'); "
        "asyncio.run(run_builder(load_settings(), engine='slow', workers=2))"
    )
    env = service_env(settings, tmp_path, ARCSTREAM_BUILDER__GROUP_ID=group)
    process = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=Path(__file__).resolve().parents[2])
    try:

        async def some_built() -> bool:
            return len(await outcomes(settings, "build")) >= 2

        run(until(some_built, "two builds reported"))
    finally:
        code = stop(process)
    assert code == 0

    done = run(outcomes(settings, "build"))
    per_partition = run(inputs(settings, settings.topics.investigations))
    expected = completion_points(per_partition, done, settings.topics.partitions)
    assert run(committed(settings, group, settings.topics.investigations)) == expected, (done, per_partition)


def arc_document(identifier: str) -> bytes:
    graph = [
        {
            "@id": "./",
            "@type": "Dataset",
            "additionalType": "Investigation",
            "identifier": identifier,
            "name": f"Investigation {identifier}",
        },
        {
            "@id": "ro-crate-metadata.json",
            "@type": "CreativeWork",
            "conformsTo": {"@id": "https://w3id.org/ro/crate/1.1"},
            "about": {"@id": "./"},
        },
    ]
    return orjson.dumps({"@context": "https://w3id.org/ro/crate/1.1/context", "@graph": graph})


async def publish_arcs(settings: Settings, identifiers: list[str]) -> None:
    await ensure_topics(settings)
    producer = make_producer(settings.kafka)
    await start_client(producer, settings.kafka)
    try:
        for identifier in identifiers:
            await producer.send_and_wait(
                settings.topics.arcs,
                arc_document(identifier),
                key=identifier.encode(),
                headers=make_headers({H_KIND: "arc", H_SOURCE_TS: utc_now_iso()}),
            )
    finally:
        await producer.stop()


def test_uploader_sigterm_commits_exactly_the_completed_uploads(
    make_settings: Callable[..., Settings], tmp_path: Path, start_store: Callable[..., ServerRecord]
) -> None:
    # Latency: uploads are in flight when the signal comes.
    store = start_store("store", "--latency-ms", "300", "--known-rdi", "sigterm-rdi")
    settings = make_settings(kafka=FAST_GROUP)
    group = f"uploader-{settings.topics.prefix}"
    run(publish_arcs(settings, [f"inv-{n:02d}" for n in range(12)]))
    env = service_env(
        settings,
        tmp_path,
        ARC_STORE_URL=store.url,
        ARCSTREAM_RDI="sigterm-rdi",
        ARCSTREAM_UPLOADER__GROUP_ID=group,
        ARCSTREAM_UPLOADER__MAX_CONCURRENT_UPLOADS="2",
        # A short grace period: some uploads are handed back unfinished, and must stay uncommitted.
        ARCSTREAM_UPLOADER__SHUTDOWN_GRACE_MS="500",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "uploader"], env=env, cwd=Path(__file__).resolve().parents[2]
    )
    try:

        async def some_uploaded() -> bool:
            return len(await outcomes(settings, "upload")) >= 2

        run(until(some_uploaded, "two uploads reported"))
    finally:
        code = stop(process)
    assert code == 0

    done = run(outcomes(settings, "upload"))
    per_partition = run(inputs(settings, settings.topics.arcs))
    expected = completion_points(per_partition, done, settings.topics.partitions)
    assert run(committed(settings, group, settings.topics.arcs)) == expected, (done, per_partition)
