"""Failover measured: one of two builder processes is killed with SIGKILL mid-run, the other takes over.

Asserted: every key ends with its newest ARC, built by the survivor, which still stops
cleanly. Measured, not asserted: how long after the kill the killed member's partitions
produced again (the takeover) and when the group showed one member, printed and recorded
as test properties (``--junitxml`` keeps them). With the dev broker's timings that
``arcstream dev up`` records (3 s session timeout) the takeover is about 1.5 x the session
timeout: the broker drops the silent member after the session timeout, then the
survivor's rejoin is answered after half of it (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from services.common.config import WELL_KNOWN_ENV, Settings
from services.common.kafka.clients import make_producer, start_client
from services.common.kafka.reading import read_topic
from services.common.kafka.topics import ensure_topics
from services.common.payload import InvestigationPayload
from services.common.records import H_KIND, H_SCHEMA_VERSION, make_headers
from tests.support import group_members, latest_titles

from .pipeline import until

KEYS = [f"fo-{i:02d}" for i in range(12)]


def service_env(settings: Settings) -> dict[str, str]:
    """A deployed builder's environment: these settings only (the group timings included)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCSTREAM_") and k not in WELL_KNOWN_ENV}
    kafka = settings.kafka
    timings = {
        "ARCSTREAM_KAFKA__SESSION_TIMEOUT_MS": str(kafka.session_timeout_ms),
        "ARCSTREAM_KAFKA__HEARTBEAT_INTERVAL_MS": str(kafka.heartbeat_interval_ms),
    }
    if kafka.rebalance_timeout_ms is not None:
        timings["ARCSTREAM_KAFKA__REBALANCE_TIMEOUT_MS"] = str(kafka.rebalance_timeout_ms)
    return (
        env
        | timings
        | {
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "ARCSTREAM_TOPICS__PREFIX": settings.topics.prefix,
            "ARCSTREAM_TOPICS__PARTITIONS": str(settings.topics.partitions),
            "ARCSTREAM_STATE_DIR": str(settings.state_dir),
        }
    )


@contextmanager
def builder(settings: Settings, group: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A builder in its own process group, so SIGKILL takes its workers too (as a container kill would)."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "builder", "--group", group, "--workers", "1"],
            env=service_env(settings),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def produce(settings: Settings, version: str) -> dict[str, int]:
    """Payloads of every key titled ``version``; returns each key's partition."""
    await ensure_topics(settings)
    producer = make_producer(settings.kafka)
    await start_client(producer, settings.kafka)
    try:
        partitions = {}
        for key in KEYS:
            payload = InvestigationPayload(identifier=key, title=version)
            meta = await producer.send_and_wait(
                settings.topics.investigations,
                orjson.dumps(payload.model_dump(mode="json")),
                key=key.encode(),
                headers=make_headers({H_KIND: "payload", H_SCHEMA_VERSION: "1"}),
            )
            partitions[key] = meta.partition
        return partitions
    finally:
        await producer.stop()


def test_a_killed_builders_partitions_are_taken_over_and_every_key_completes(
    make_settings: Callable[..., Settings], tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    settings = make_settings(topics={"partitions": 4})
    arcs_topic = settings.topics.arcs
    group = f"failover-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        await ensure_topics(settings)
        with builder(settings, group, tmp_path / "a.log") as a, builder(settings, group, tmp_path / "b.log") as b:

            async def pair_joined() -> bool:
                return await group_members(settings, group) == 2

            async def built_v1() -> bool:
                return latest_titles(await read_topic(settings.kafka, arcs_topic)) == dict.fromkeys(KEYS, "v1")

            await until(pair_joined, "both builders in the group")
            await produce(settings, "v1")
            await until(built_v1, "every key built by the pair")

            os.killpg(a.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            await asyncio.to_thread(a.wait)
            partitions = await produce(settings, "v2")

            seen: dict[str, float] = {}
            one_member_after: float | None = None
            while len(seen) < len(KEYS):
                assert time.monotonic() - killed_at < 120, f"not taken over: {sorted(set(KEYS) - set(seen))}"
                now = time.monotonic() - killed_at
                for key, title in latest_titles(await read_topic(settings.kafka, arcs_topic)).items():
                    if title == "v2":
                        seen.setdefault(key, now)
                if one_member_after is None and await group_members(settings, group) == 1:
                    one_member_after = now
                await asyncio.sleep(0.1)

            assert latest_titles(await read_topic(settings.kafka, arcs_topic)) == dict.fromkeys(KEYS, "v2")
            assert b.poll() is None, "the survivor kept running"
            b.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(b.wait, 60) == 0, (tmp_path / "b.log").read_text()

        per_partition = {p: max(seen[k] for k in KEYS if partitions[k] == p) for p in set(partitions.values())}
        takeover = max(per_partition.values())
        print(
            f"\nkill -9 takeover (session {settings.kafka.session_timeout_ms} ms): the killed builder's partitions "
            f"produced again {takeover:.1f} s after the kill; group showed one member after "
            f"{one_member_after if one_member_after is None else round(one_member_after, 1)} s; "
            f"per partition {dict(sorted((p, round(s, 1)) for p, s in per_partition.items()))}"
        )
        record_property("takeover_s", round(takeover, 2))
        record_property("one_member_after_s", one_member_after)
        record_property("session_timeout_ms", settings.kafka.session_timeout_ms)

    asyncio.run(scenario())
