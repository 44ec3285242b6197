"""The uploader process killed with SIGKILL mid-run and started again: nothing lost, nothing reported twice."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from services.common.config import Settings
from services.common.content_hash import arc_id
from tests.support import until

from .conftest import ArcsTopic, StoreProcess, arc_document, outcomes, spawn_uploader, upload_settings

TERMINAL = {"created", "updated", "unchanged", "failed", "superseded", "deleted", "retained"}


def test_sigkill_mid_run_then_restart_gives_exactly_one_outcome_per_arc(
    make_settings: Callable[..., Settings],
    make_store: Callable[..., StoreProcess],
    arcs_topic: ArcsTopic,
    tmp_path: Path,
) -> None:
    # Latency keeps the run long enough to be killed in the middle of it.
    store = make_store("--latency-ms", "40")
    settings = upload_settings(make_settings, store)
    documents = [arc_document(f"kill-{i:03d}") for i in range(200)]
    log_file = tmp_path / "uploader.log"

    async def scenario() -> None:
        run_id, produced = await arcs_topic.snapshot_run(documents)

        first = spawn_uploader(settings, log_file)
        try:

            async def some_reported() -> bool:
                return len(await outcomes(settings)) >= 40

            await until(some_reported, what="first outcomes")
            first.send_signal(signal.SIGKILL)
            first.wait()
        finally:
            if first.poll() is None:
                first.kill()
        reported_before_kill = len(await outcomes(settings))
        assert reported_before_kill < len(documents)

        second = spawn_uploader(settings, log_file)
        try:

            async def closed() -> bool:
                harvests = store.get("/v3/harvests")
                return bool(harvests) and all(h["status"] != "RUNNING" for h in harvests)

            await until(closed, what="harvest closed after restart")
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=60) == 0
        finally:
            if second.poll() is None:
                second.kill()

        results = [o for o in await outcomes(settings) if o.run_id == run_id and o.status in TERMINAL]
        per_version = Counter((o.identifier, o.content_hash) for o in results)
        assert len(per_version) == len(documents)
        assert set(per_version.values()) == {1}, [k for k, n in per_version.items() if n > 1]
        assert {o.status for o in results} <= {"created", "updated"}
        for item in produced:
            assert store.arc_file(arc_id(item.identifier, "test-rdi")) == item.value
        [harvest] = store.get("/v3/harvests")
        assert harvest["status"] == "COMPLETED"
        assert harvest["statistics"]["arcs_submitted"] == len(documents)

    asyncio.run(scenario())
