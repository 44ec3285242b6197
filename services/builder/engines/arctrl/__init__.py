"""The reference engine: arctrl builds the ARC and writes its RO-Crate."""

from __future__ import annotations

from services.builder.decisions import prepare
from services.builder.engines.arctrl.mapping import build_arc
from services.builder.engines.arctrl.rocrate import to_rocrate_json
from services.builder.engines.fallback import BuiltArc
from services.common.payload import InvestigationPayload


def build_arc_json(payload: InvestigationPayload) -> str:
    """Deterministic RO-Crate JSON-LD for one payload, with the warnings of the builder's decisions."""
    prepared = prepare(payload)
    return BuiltArc(to_rocrate_json(build_arc(prepared.payload), prepared.payload), prepared.warnings)
