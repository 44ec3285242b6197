"""The fast engine: the reference engine's RO-Crate JSON-LD, written directly from the payload.

Same output as :mod:`services.builder.engines.arctrl` (``json.loads``
equal, so the content hash never changes between engines) at a fraction of the
cost: no arctrl object graph, no pairwise node de-duplication, no per-study
person rebuilds. Payloads outside the checked feature set
(:mod:`~services.builder.engines.fast.support`) are built by the reference
engine instead and marked as fallbacks (:mod:`services.builder.engines.fallback`);
arctrl is imported only then.
"""

from __future__ import annotations

import orjson

from services.builder.decisions import prepare
from services.builder.engines.fallback import BuiltArc, FallbackArc, FallbackMappingError, warnings_of
from services.builder.engines.fast.document import rocrate
from services.builder.engines.fast.support import Unsupported, check
from services.common.errors import MappingError
from services.common.payload import InvestigationPayload


def build_arc_json(payload: InvestigationPayload) -> str:
    """RO-Crate JSON-LD for one payload; a :class:`FallbackArc` when arctrl had to build it.

    Both engines apply the builder's decisions (:func:`prepare`) to the payload as
    given, so the fallback hands arctrl the original payload, not the prepared one.
    """
    prepared = prepare(payload)
    try:
        plan = check(prepared.payload)
    except Unsupported as unsupported:
        return _fallback(payload, str(unsupported))
    return BuiltArc(orjson.dumps(rocrate(prepared.payload, plan)).decode("utf-8"), prepared.warnings)


def _fallback(payload: InvestigationPayload, reason: str) -> str:
    from services.builder.engines.arctrl import build_arc_json as reference

    try:
        arc = reference(payload)
        return FallbackArc(arc, reason, warnings_of(arc))
    except MappingError as exc:
        raise FallbackMappingError(str(exc), reason) from exc
    except Exception as exc:  # arctrl's plain exceptions, worded as the worker words them for any engine
        raise FallbackMappingError(f"{type(exc).__name__} while building: {exc}", reason) from exc
