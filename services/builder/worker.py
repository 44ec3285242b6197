"""What runs inside a build worker process: bytes in, bytes out.

Only bytes cross the process boundary (payload JSON in, a framed result out),
so no arctrl object is ever pickled and the parent never imports arctrl. The
worker parses and validates the payload, runs the engine, hashes the result
and frames it:

- ``b"A" + <64 hex digits content hash> + <ARC JSON>`` for a built ARC,
- ``b"W" + <64 hex digits content hash> + <JSON {"fallback", "warnings"}> + b"\n" + <ARC JSON>``
  for an ARC with warnings (values that did not reach it as the source gave them,
  :mod:`services.builder.decisions`) or that the engine handed to the reference
  engine (fast engine fallback, reason in ``fallback``),
- ``b"E" + <JSON {"code", "message"[, "fallback"]}>`` for a payload or mapping failure.

The message key travels with the payload: a payload whose identifier differs from
its key fails (``key-mismatch``) instead of overwriting another investigation's ARC.

The parent counts the warnings by kind as it decodes them (``arcstream_build_warnings_total``).

Any other exception from an engine is this payload's mapping failure too: one
bad investigation must never take a worker, let alone the service, down.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass

import orjson
from pydantic import ValidationError

from services.builder import metrics as builder_metrics
from services.builder.engines import EngineFunction, load_engine
from services.builder.engines.fallback import FallbackArc, FallbackMappingError, warnings_of
from services.common.content_hash import content_hash_of_json
from services.common.errors import ErrorCode, MappingError, PayloadError, RecordError
from services.common.payload import InvestigationPayload

#: Exit status of a worker that retires itself (memory above the limit) before starting a build:
#: the pool hands that untouched build to a fresh worker.
RETIRE_EXIT_CODE = 75

_engine: EngineFunction | None = None
_max_rss_kib = 0
_retire = False


def init_worker(engine: str, max_rss_mb: int = 0) -> None:
    """Pool initializer: import the engine (``"module:function"``) once per worker process."""
    global _engine, _max_rss_kib
    _engine = load_engine(engine)
    _max_rss_kib = max_rss_mb * 1024


def _check_memory() -> None:
    """After a build: note that this worker's peak RSS passed the limit (it retires before the next build).

    Retiring right here would lose the result being returned; exiting at the start of the
    next task loses nothing, because that task has not begun.
    """
    global _retire
    if _max_rss_kib and resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > _max_rss_kib:
        _retire = True


def build_many(jobs: list[tuple[bytes, str | None]]) -> list[tuple[bytes, float]]:
    """Pool task: build each (payload, key) in turn; per payload its framed result and build seconds."""
    if _retire:
        os._exit(RETIRE_EXIT_CODE)
    results = []
    for payload_json, key in jobs:
        started = time.perf_counter()
        frame = build(payload_json, key)
        results.append((frame, time.perf_counter() - started))
        _check_memory()
    return results


def ready() -> bytes:
    """A no-op task: answering it proves the worker started and loaded its engine."""
    if _engine is None:
        raise RuntimeError("worker not initialised: init_worker was not called")
    return b"ok"


def parse_payload(payload_json: bytes) -> InvestigationPayload:
    """Validate a payload message; failures become :class:`PayloadError`.

    pydantic parses and validates the bytes in one pass (no intermediate dicts):
    with fast builds that is a sizeable share of a worker's time per payload.
    """
    try:
        return InvestigationPayload.model_validate_json(payload_json)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            message = f"malformed JSON: {first['ctx'].get('error', first['msg'])}"
            raise PayloadError(message, code="malformed-json") from exc
        where = ".".join(str(part) for part in first["loc"]) or "(payload)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise PayloadError(f"schema violation at {where}: {first['msg']}{more}") from exc


def build(payload_json: bytes, key: str | None = None) -> bytes:
    """Build one ARC in this worker; never raises for a bad payload (see module doc).

    ``key`` is the message key; ``None`` skips the check (a caller without a message).
    """
    if _engine is None:
        raise RuntimeError("worker not initialised: init_worker was not called")
    try:
        payload = parse_payload(payload_json)
        if key is not None and payload.identifier != key:
            raise PayloadError(
                f"the message key {key!r} differs from the payload's identifier {payload.identifier!r}",
                code="key-mismatch",
            )
        try:
            arc_json = _engine(payload)
        except RecordError:
            raise
        except Exception as exc:
            raise MappingError(f"{type(exc).__name__} while building: {exc}") from exc
        arc_bytes = arc_json.encode("utf-8")
        digest = content_hash_of_json(arc_bytes).encode("ascii")
        fallback = arc_json.reason if isinstance(arc_json, FallbackArc) else None
        warnings = warnings_of(arc_json)
        if fallback is None and not warnings:
            return b"A" + digest + arc_bytes
        return b"W" + digest + orjson.dumps({"fallback": fallback, "warnings": warnings}) + b"\n" + arc_bytes
    except RecordError as exc:
        error = {"code": exc.code, "message": str(exc)}
        if isinstance(exc, FallbackMappingError):
            error["fallback"] = exc.reason
        return b"E" + orjson.dumps(error)


@dataclass(frozen=True)
class BuildResult:
    """A worker's answer, decoded in the parent."""

    arc_json: bytes | None = None
    content_hash: str | None = None
    error_code: ErrorCode | None = None
    error_message: str | None = None
    #: Reason code when the engine handed this payload to the reference engine (see engines.fallback).
    fallback: str | None = None
    #: Seconds the worker spent on this build (``None`` when it did not finish, e.g. a timeout).
    build_s: float | None = None
    #: ``"<kind>: <message>"`` per value that did not reach the ARC as the source gave it.
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.arc_json is not None


def decode_result(frame: bytes, build_s: float | None = None) -> BuildResult:
    """Unframe what :func:`build` returned (in the parent), counting its warnings by kind."""
    if frame[:1] == b"A":
        return BuildResult(arc_json=frame[65:], content_hash=frame[1:65].decode("ascii"), build_s=build_s)
    if frame[:1] == b"W":
        header, _, arc_json = frame[65:].partition(b"\n")
        details = orjson.loads(header)
        warnings = tuple(details["warnings"])
        builder_metrics.build_warnings(warnings)
        return BuildResult(
            arc_json=arc_json,
            content_hash=frame[1:65].decode("ascii"),
            fallback=details["fallback"],
            build_s=build_s,
            warnings=warnings,
        )
    error = orjson.loads(frame[1:])
    return BuildResult(
        error_code=error["code"],
        error_message=error["message"],
        fallback=error.get("fallback"),
        build_s=build_s,
    )
