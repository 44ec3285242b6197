"""Two "mappings" for the replay recipes, run by the builder's real worker processes.

``v1`` is arctrl with a gap: it cannot map an investigation whose description
says ``needs-v2`` (a MappingError, so the payload is dead-lettered). ``v2`` is
the fixed mapping: it maps everything and marks titles, so a test sees which
mapping built an ARC. ``slow`` is arctrl after a pause (work in flight at SIGTERM).
"""

from __future__ import annotations

import time

from services.builder.engines.arctrl import build_arc_json
from services.common.errors import MappingError
from services.common.payload import InvestigationPayload

V2_MARK = " [mapping v2]"


def build_v1(payload: InvestigationPayload) -> str:
    if payload.description_text == "needs-v2":
        raise MappingError("mapping v1 cannot take this investigation")
    return build_arc_json(payload)


def build_v2(payload: InvestigationPayload) -> str:
    return build_arc_json(payload.model_copy(update={"title": f"{payload.title}{V2_MARK}"}))


def build_slow(payload: InvestigationPayload) -> str:
    """arctrl after a pause, so a stop signal finds builds in flight."""
    time.sleep(0.4)
    return build_arc_json(payload)
