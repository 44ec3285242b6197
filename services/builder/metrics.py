"""Builder-only Prometheus series (the shared per-stage series live in :mod:`services.common.metrics`).

A rising fallback count means payloads reach features the fast engine does not
model; they are still built, by arctrl, just slower - the reason label says which.
A rising warning count means source values that do not reach the ARC as the
source gave them (each named in the ``built`` outcome's ``warnings``); the kind
label is the decision taken (docs/builder.md, "Values arctrl cannot take").
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter

from services.common.metrics import REGISTRY

ENGINE_FALLBACKS = Counter(
    "arcstream_build_engine_fallbacks_total",
    "Payloads the configured engine handed to the reference engine (arctrl), by reason code.",
    ["reason"],
    registry=REGISTRY,
)
BUILD_WARNINGS = Counter(
    "arcstream_build_warnings_total",
    "Source values that did not reach the ARC as given (named in the outcome's warnings), by decision kind.",
    ["kind"],
    registry=REGISTRY,
)


def engine_fallback(reason: str) -> None:
    ENGINE_FALLBACKS.labels(reason=reason).inc()


def build_warnings(warnings: Iterable[str]) -> None:
    """Count warnings of the form ``"<kind>: <message>"`` by kind."""
    for warning in warnings:
        BUILD_WARNINGS.labels(kind=warning.partition(":")[0]).inc()
