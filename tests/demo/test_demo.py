"""``arcstream demo --exit`` end to end: stack, snapshot, build, upload, live CDC changes, summary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from services.dev.stack.state import StackState


def test_demo_runs_end_to_end_and_stops(dev_stack: StackState, tmp_path: Path) -> None:
    assert dev_stack.postgres is not None and dev_stack.broker is not None
    env = {
        **os.environ,
        # use the session's PostgreSQL and broker (with the timings 'dev up' records for it);
        # the demo starts its own ARC store
        **dev_stack.env(),
        "ARCSTREAM_STATE_DIR": str(tmp_path / "state"),
    }
    env.pop("ARC_STORE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "demo", "--exit", "-n", "4", "--profile", "small", "--timeout", "240"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr[-3000:] + out[-3000:]
    assert "generated 4 investigations" in out
    assert "update INV-000000: arrived after" in out and "(present in the store)" in out
    assert "insert INV-000004: arrived after" in out
    assert "delete INV-000001: arrived after" in out and "(gone from the store)" in out
    summary = out[out.index("summary") :]
    assert "4 payloads, 0 failed" in summary
    # the pipeline's figures, with the consumer-group joins reported apart from them
    assert "services ready" in summary and "first ARC in store" in summary
    assert "4 ARCs built and uploaded" in summary
    assert "upload   created 5, deleted 1, updated 1" in summary
    assert "status page: http://127.0.0.1:" in summary
    # --exit stopped what the demo started: the store recorded in the state dir is gone
    assert not (tmp_path / "state" / "stack.json").exists()
