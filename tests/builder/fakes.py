"""Test-only build engine for faults that real arctrl cannot be made to show on demand.

``fake_slow_build_arc_json`` is registered under a test engine name and runs in
the real worker processes (``fake_fast_build_arc_json`` likewise, building with the
fast engine). The payload's description tells it what to do before building:
``sleep:<seconds>`` (a hung or slow build), or
``gate:<path>`` (touch ``<path>.started``, then wait until ``<path>`` exists), or
``pid:<dir>`` (touch ``<dir>/<worker pid>``, to see which worker built it).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from services.builder.engines.arctrl import build_arc_json
from services.builder.engines.fast import build_arc_json as fast_build_arc_json
from services.common.payload import InvestigationPayload


def _obey(payload: InvestigationPayload) -> None:
    instruction = payload.description_text or ""
    if instruction.startswith("sleep:"):
        time.sleep(float(instruction.removeprefix("sleep:")))
    elif instruction.startswith("gate:"):
        gate = Path(instruction.removeprefix("gate:"))
        Path(f"{gate}.started").touch()
        while not gate.exists():
            time.sleep(0.05)
    elif instruction.startswith("pid:"):
        (Path(instruction.removeprefix("pid:")) / str(os.getpid())).touch()


def fake_slow_build_arc_json(payload: InvestigationPayload) -> str:
    _obey(payload)
    return build_arc_json(payload)


def fake_fast_build_arc_json(payload: InvestigationPayload) -> str:
    """The same instructions, then the fast engine (millisecond builds, as batched in the pool)."""
    _obey(payload)
    return fast_build_arc_json(payload)
