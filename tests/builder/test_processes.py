"""``python -m services.builder`` as real processes: graceful SIGTERM, and two instances with one SIGKILLed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from aiokafka import TopicPartition

from services.common.config import Settings
from services.common.kafka.clients import make_consumer, start_client
from services.common.kafka.topics import ensure_topics
from tests.support import group_members, latest_titles

from .conftest import FAST_GROUP, minimal_payload, payload_message, produce, topic, wait_until


def _env(settings: Settings) -> dict[str, str]:
    return os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "ARCSTREAM_TOPICS__PREFIX": settings.topics.prefix,
        "ARCSTREAM_TOPICS__PARTITIONS": str(settings.topics.partitions),
        "ARCSTREAM_KAFKA__SESSION_TIMEOUT_MS": str(FAST_GROUP["session_timeout_ms"]),
        "ARCSTREAM_KAFKA__HEARTBEAT_INTERVAL_MS": str(FAST_GROUP["heartbeat_interval_ms"]),
    }


@contextmanager
def builder_process(settings: Settings, group: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """One builder in its own process group (so a SIGKILL takes its workers too, as a container kill would)."""
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.builder", "--group", group, "--workers", "1"],
            env=_env(settings),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def _committed(settings: Settings, group: str) -> dict[int, int | None]:
    consumer = make_consumer(settings.kafka, [], group)
    await start_client(consumer, settings.kafka)
    try:
        return {
            p: await consumer.committed(TopicPartition(settings.topics.investigations, p))
            for p in range(settings.topics.partitions)
        }
    finally:
        await consumer.stop()


def test_sigterm_finishes_commits_and_exits_zero(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = make_settings()
    payloads = [minimal_payload(f"inv-{i}") for i in range(3)]

    async def scenario() -> None:
        await produce(settings, [payload_message(p, partition=i) for i, p in enumerate(payloads)])
        with builder_process(settings, "g-term", tmp_path / "builder.log") as process:

            async def built() -> bool:
                return len(await topic(settings, settings.topics.arcs)) == 3

            await wait_until(built, "three ARCs", give_up_s=90)
            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, 30)
        assert code == 0, (tmp_path / "builder.log").read_text()
        assert await _committed(settings, "g-term") == {0: 1, 1: 1, 2: 1}

    asyncio.run(scenario())


def test_two_instances_share_partitions_and_survive_a_sigkill(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    keys = [f"inv-{i:02d}" for i in range(9)]
    first = [minimal_payload(k, title="v1") for k in keys]
    second = [minimal_payload(k, title="v2") for k in keys]

    async def scenario() -> None:
        await ensure_topics(settings)
        with (
            builder_process(settings, "g-pair", tmp_path / "a.log") as a,
            builder_process(settings, "g-pair", tmp_path / "b.log") as b,
        ):

            async def both_members() -> bool:
                return await group_members(settings, "g-pair") == 2

            await wait_until(both_members, "both instances in the group", give_up_s=90)
            await produce(settings, [payload_message(p) for p in first])

            async def running() -> bool:
                return len(await topic(settings, settings.topics.arcs)) >= 3

            await wait_until(running, "the pair to build", give_up_s=90)
            os.killpg(a.pid, signal.SIGKILL)
            await asyncio.to_thread(a.wait)
            await produce(settings, [payload_message(p) for p in second])

            async def all_latest() -> bool:
                latest = latest_titles(await topic(settings, settings.topics.arcs))
                return latest == dict.fromkeys(keys, "v2")

            await wait_until(all_latest, "the survivor to build the latest version of every key", give_up_s=120)
            b.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(b.wait, 30) == 0, (tmp_path / "b.log").read_text()

    asyncio.run(scenario())
