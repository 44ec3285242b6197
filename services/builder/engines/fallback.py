"""How an engine tells the worker that the reference engine built (or refused) a payload instead.

The fast engine hands payloads it cannot reproduce exactly to arctrl. The
worker reports that per payload (``engine = "arctrl-fallback"`` in the report
and ARC header) and the service counts it, so the result types carry the
reason code across the engine interface without changing what it returns.
"""

from __future__ import annotations

from services.common.errors import MappingError

#: Engine name reported for a payload the fast engine handed to arctrl.
FALLBACK_ENGINE = "arctrl-fallback"


class FallbackArc(str):
    """ARC JSON produced by the reference engine on another engine's behalf."""

    reason: str

    def __new__(cls, text: str, reason: str) -> FallbackArc:
        arc = super().__new__(cls, text)
        arc.reason = reason
        return arc


class FallbackMappingError(MappingError):
    """The reference engine's refusal of a payload handed to it; reported exactly like a MappingError."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
