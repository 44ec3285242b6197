"""What runs inside a build worker process: bytes in, bytes out.

Only bytes cross the process boundary (payload JSON in, a framed result out),
so no arctrl object is ever pickled and the parent never imports arctrl. The
worker parses and validates the payload, runs the engine, hashes the result
and frames it:

- ``b"A" + <64 hex digits content hash> + <ARC JSON>`` for a built ARC,
- ``b"F" + <64 hex digits content hash> + <reason> + b"\n" + <ARC JSON>`` for an
  ARC the engine handed to the reference engine (fast engine fallback),
- ``b"E" + <JSON {"error_class", "message"[, "fallback"]}>`` for a payload or mapping failure.

Any other exception from an engine is this payload's mapping failure too: one
bad investigation must never take a worker, let alone the service, down.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from pydantic import ValidationError

from services.builder.content_hash import content_hash
from services.builder.engines import EngineFunction, load_engine
from services.builder.engines.fallback import FallbackArc, FallbackMappingError
from services.common.errors import MappingError, PayloadError, RecordError
from services.common.payload import InvestigationPayload
from services.common.records import loads

_engine: EngineFunction | None = None


def init_worker(engine: str) -> None:
    """Pool initializer: import the engine (``"module:function"``) once per worker process."""
    global _engine
    _engine = load_engine(engine)


def ready() -> bytes:
    """A no-op task: answering it proves the worker started and loaded its engine."""
    if _engine is None:
        raise RuntimeError("worker not initialised: init_worker was not called")
    return b"ok"


def parse_payload(payload_json: bytes) -> InvestigationPayload:
    """Validate a payload message; failures become :class:`PayloadError`."""
    data = loads(payload_json)
    try:
        return InvestigationPayload.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(payload)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise PayloadError(f"schema violation at {where}: {first['msg']}{more}") from exc


def build(payload_json: bytes) -> bytes:
    """Build one ARC in this worker; never raises for a bad payload (see module doc)."""
    if _engine is None:
        raise RuntimeError("worker not initialised: init_worker was not called")
    try:
        payload = parse_payload(payload_json)
        try:
            arc_json = _engine(payload)
        except RecordError:
            raise
        except Exception as exc:
            raise MappingError(f"{type(exc).__name__} while building: {exc}") from exc
        arc_bytes = arc_json.encode("utf-8")
        digest = content_hash(orjson.loads(arc_bytes)).encode("ascii")
        if isinstance(arc_json, FallbackArc):
            return b"F" + digest + arc_json.reason.encode("ascii") + b"\n" + arc_bytes
        return b"A" + digest + arc_bytes
    except RecordError as exc:
        error = {"error_class": exc.error_class, "message": str(exc)}
        if isinstance(exc, FallbackMappingError):
            error["fallback"] = exc.reason
        return b"E" + orjson.dumps(error)


@dataclass(frozen=True)
class BuildResult:
    """A worker's answer, decoded in the parent."""

    arc_json: bytes | None = None
    content_hash: str | None = None
    error_class: str | None = None
    error_message: str | None = None
    #: Reason code when the engine handed this payload to the reference engine (see engines.fallback).
    fallback: str | None = None

    @property
    def ok(self) -> bool:
        return self.arc_json is not None


def decode_result(frame: bytes) -> BuildResult:
    """Unframe what :func:`build` returned."""
    if frame[:1] == b"A":
        return BuildResult(arc_json=frame[65:], content_hash=frame[1:65].decode("ascii"))
    if frame[:1] == b"F":
        reason, _, arc_json = frame[65:].partition(b"\n")
        return BuildResult(arc_json=arc_json, content_hash=frame[1:65].decode("ascii"), fallback=reason.decode("ascii"))
    error = orjson.loads(frame[1:])
    return BuildResult(error_class=error["error_class"], error_message=error["message"], fallback=error.get("fallback"))
