"""Builder-only Prometheus series (the shared per-stage series live in :mod:`services.common.metrics`).

A rising fallback count means payloads reach features the fast engine does not
model; they are still built, by arctrl, just slower - the reason label says which.
"""

from __future__ import annotations

from prometheus_client import Counter

from services.common.metrics import REGISTRY

ENGINE_FALLBACKS = Counter(
    "arcstream_build_engine_fallbacks_total",
    "Payloads the configured engine handed to the reference engine (arctrl), by reason code.",
    ["reason"],
    registry=REGISTRY,
)


def engine_fallback(reason: str) -> None:
    ENGINE_FALLBACKS.labels(reason=reason).inc()
