"""What an engine hands the worker besides the JSON: warnings, and whether the reference engine built it.

Engines return ARC JSON as a string. :class:`BuiltArc` carries the warnings of
the builder's decisions (:mod:`services.builder.decisions`) along with it;
:class:`FallbackArc` marks ARC JSON the fast engine handed to arctrl (the worker
reports ``engine = "arctrl-fallback"`` and the service counts the reason). So
the result types carry these across the engine interface without changing what
it returns: any string is still a valid result.
"""

from __future__ import annotations

from services.common.errors import MappingError

#: Engine name reported for a payload the fast engine handed to arctrl.
FALLBACK_ENGINE = "arctrl-fallback"


class BuiltArc(str):
    """ARC JSON with the warnings about values that did not reach it as the source gave them."""

    warnings: tuple[str, ...]

    def __new__(cls, text: str, warnings: tuple[str, ...] = ()) -> BuiltArc:
        arc = super().__new__(cls, text)
        arc.warnings = warnings
        return arc


class FallbackArc(BuiltArc):
    """ARC JSON produced by the reference engine on another engine's behalf."""

    reason: str

    def __new__(cls, text: str, reason: str, warnings: tuple[str, ...] = ()) -> FallbackArc:
        arc = str.__new__(cls, text)
        arc.warnings = warnings
        arc.reason = reason
        return arc


def warnings_of(arc_json: str) -> tuple[str, ...]:
    """The warnings an engine attached to its result (none for a plain string)."""
    return arc_json.warnings if isinstance(arc_json, BuiltArc) else ()


class FallbackMappingError(MappingError):
    """The reference engine's refusal of a payload handed to it; reported exactly like a MappingError."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
