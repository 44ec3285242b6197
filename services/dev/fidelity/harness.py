"""Real ARCs through the real pipeline, compared fact by fact with arctrl's own round trip.

For one file (ARC RO-Crate JSON, ISA-JSON, or an ISA-XLSX ARC folder):

1. arctrl reads it: the *original* facts (:mod:`.facts`).
2. arctrl's own round trip: write it as RO-Crate, read it back; the facts kept.
3. The ARC becomes rows of the source relations (:mod:`.arc_rows`, contract v2),
   written to PostgreSQL; the snapshot's read path (contract check, batched
   loader, assembly, validation - what ``extract snapshot`` publishes) makes the
   payload; the builder worker's build function (validation, decisions, engine,
   content hash) builds it with the ``fast`` and the ``arctrl`` engine. Only
   the Kafka transport between them is left out (tested on its own).
4. arctrl reads each produced ARC: the facts kept by arcstream, and each
   original fact missing from it is a loss with its kind and reason.

arctrl needs seconds to read or write a real ARC, so results that depend only
on their inputs are cached on disk when a cache directory is given: the
original and round-trip facts and the rows by the file's bytes, the arctrl
engine's ARC by the payload's bytes, the facts of a produced ARC by its bytes -
each key also holds the arctrl version and the source code that computes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from psycopg import sql

from services.builder import worker
from services.builder.engines import engine_path
from services.dev.generator import SourceRows
from services.dev.writer import write_rows
from services.extractor.source.loader import PayloadLoader
from services.extractor.source.schema import check_source_contract, connect, ensure_source_schema

ROOT = Path(__file__).resolve().parents[3]
#: Schema the harness creates its source relations in (dropped and created again per run).
SCHEMA = "arcstream_fidelity"
#: Why arctrl's own RO-Crate round trip loses facts of these kinds (arcstream's ARC goes through the same writer).
ROUNDTRIP_REASONS = {
    "column": (
        "equal headers repeated in one table: arctrl's RO-Crate identifies a property value by header and "
        "value on the (shared) sample node, so repeated columns with the same values come back as fewer columns"
    ),
}
GENERIC_ROUNDTRIP_REASON = "arctrl's own RO-Crate round trip loses it too"


def _source_hash(*globs: str) -> str:
    digest = hashlib.sha256(importlib.metadata.version("arctrl").encode())
    for pattern in globs:
        for path in sorted(ROOT.glob(pattern)):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class Cache:
    """JSON values on disk by key; a ``None`` directory caches nothing."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def get(self, key: str, compute: Callable[[], Any]) -> Any:
        if self.directory is None:
            return compute()
        path = self.directory / f"{key}.json"
        if path.exists():
            return orjson.loads(path.read_bytes())
        value = compute()
        # Written aside and renamed: a reader (another test process, a re-run after Ctrl-C) sees a whole
        # entry or none.
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        partial.write_bytes(orjson.dumps(value))
        partial.replace(path)
        return value


def _key(kind: str, data: bytes, code: str) -> str:
    return f"{kind}-{hashlib.sha256(data).hexdigest()[:24]}-{code}"


def read_arc(path: Path) -> Any:
    """An arctrl ``ARC`` from RO-Crate JSON, ISA-JSON, or an ISA-XLSX ARC folder."""
    from arctrl import ARC, JsonController

    if path.is_dir():
        return ARC.load(str(path))
    text = path.read_text(encoding="utf-8")
    if "@graph" in orjson.loads(text):
        return ARC.from_rocrate_json_string(text)
    return ARC.from_arc_investigation(JsonController.Investigation.from_isajson_string(text))


def _facts_of_rocrate(text: str) -> list[str]:
    from arctrl import ARC

    from services.dev.fidelity.facts import arc_facts

    return sorted(orjson.dumps(fact).decode() for fact in arc_facts(ARC.from_rocrate_json_string(text)))


def _original(path: Path) -> dict[str, Any]:
    """What arctrl alone makes of the file: original facts, round-trip facts, and the source rows."""
    from arctrl import ARC

    from services.dev.fidelity.arc_rows import arc_rows
    from services.dev.fidelity.facts import arc_facts

    arc = read_arc(path)
    original = sorted(orjson.dumps(fact).decode() for fact in arc_facts(arc))
    conversion = arc_rows(arc)  # before the round trip: arctrl's writer rewrites the ARC's data paths in place
    roundtrip = sorted(
        orjson.dumps(fact).decode() for fact in arc_facts(ARC.from_rocrate_json_string(arc.ToROCrateJsonString()))
    )
    return {
        "original": original,
        "roundtrip": roundtrip,
        "rows": asdict(conversion.rows),
        "unplaced": [asdict(item) for item in conversion.unplaced],
    }


def _fidelity_code() -> str:
    return _source_hash("services/dev/fidelity/*.py", "services/builder/decisions.py")


def original_of(path: Path, cache: Cache) -> dict[str, Any]:
    """Original facts, round-trip facts, source rows and what has no place in them (cached by the file's bytes)."""
    data = path.read_bytes() if path.is_file() else b"".join(p.read_bytes() for p in sorted(path.rglob("*.xlsx")))
    original: dict[str, Any] = cache.get(_key("original", data, _fidelity_code()), lambda: _original(path))
    return original


def reference_build(payload_json: bytes, cache: Cache) -> dict[str, Any]:
    """The arctrl engine's result for a payload (cached by the payload and the builder's code)."""
    builder_code = _source_hash("services/builder/**/*.py", "services/common/payload.py")
    result: dict[str, Any] = cache.get(
        _key("arctrl-engine", payload_json, builder_code), lambda: _result_dict(build(payload_json, "arctrl"))
    )
    return result


async def load_payload(database_url: str, rows: SourceRows) -> tuple[bytes | None, str | None]:
    """Write the rows to fresh source relations and load them as the snapshot does: (payload JSON, error)."""
    conn = await connect(database_url, options=f"-c search_path={SCHEMA}")
    try:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
        await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
        await ensure_source_schema(conn)
        await conn.commit()
        await write_rows(conn, [rows])
        loader = PayloadLoader(await check_source_contract(conn))
        result = (await loader.load_payloads(conn, [str(rows.investigation["identifier"])]))[
            str(rows.investigation["identifier"])
        ]
        return result.payload_json, result.error
    finally:
        await conn.close()


def build(payload_json: bytes, engine: str) -> worker.BuildResult:
    """One build as a builder worker does it (``worker.build`` with the named engine)."""
    worker.init_worker(engine_path(engine))
    started = time.perf_counter()
    frame = worker.build(payload_json)
    return worker.decode_result(frame, time.perf_counter() - started)


@dataclass
class FileReport:
    """One line of ``bench/fidelity.py --json``."""

    file: str
    facts_original: int = 0
    facts_arctrl_roundtrip: int = 0
    facts_kept_fast: int = 0
    facts_kept_arctrl: int = 0
    mapping_errors: list[str] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    fast_equals_arctrl: bool | None = None
    losses: list[dict[str, Any]] = field(default_factory=list)
    #: The builder's warnings for this ARC (each names a value that did not reach it as given).
    warnings: list[str] = field(default_factory=list)
    #: What of the ARC the source contract has no place for, by reason (so its facts cannot be kept).
    unplaced: dict[str, int] = field(default_factory=dict)
    fast_build_ms: float | None = None
    error: str | None = None


def _losses(original: set[str], kept: set[str], roundtrip: set[str]) -> list[dict[str, Any]]:
    """Original facts missing from arcstream's ARC, grouped by kind and reason (with up to ten of them)."""
    groups: dict[tuple[str, str], list[str]] = {}
    lost = [orjson.loads(fact) for fact in sorted(original - kept)]
    lost_cell_columns = {(str(f[1]), f[2], f[3]) for f in lost if f[0] == "cell"}
    for fact in lost:
        kind = fact[0]
        text = orjson.dumps(fact).decode()
        if text in roundtrip:
            reason = "not carried from the source relations into the ARC"
        elif kind == "column" and (str(fact[1]), fact[2], fact[3]) not in lost_cell_columns:
            reason = ROUNDTRIP_REASONS["column"] + " (every cell value of these columns is kept)"
        else:
            reason = ROUNDTRIP_REASONS.get(kind, GENERIC_ROUNDTRIP_REASON)
        groups.setdefault((kind, reason), []).append(text)
    return [
        {"kind": kind, "reason": reason, "count": len(facts), "facts": facts[:10]}
        for (kind, reason), facts in sorted(groups.items())
    ]


def run_file(path: Path, database_url: str, cache: Cache) -> FileReport:
    """The fidelity report of one file (blocking: arctrl needs seconds per real ARC)."""
    report = FileReport(file=str(path))
    try:
        original = original_of(path, cache)
    except Exception as exc:  # arctrl cannot read it: that is the whole report
        report.error = f"arctrl cannot read the file: {type(exc).__name__}: {str(exc)[:300]}"
        return report
    original_facts, roundtrip_facts = set(original["original"]), set(original["roundtrip"])
    report.unplaced = dict(Counter(item["reason"] for item in original["unplaced"]))
    report.facts_original = len(original_facts)
    report.facts_arctrl_roundtrip = len(original_facts & roundtrip_facts)
    payload_json, error = asyncio.run(load_payload(database_url, SourceRows(**original["rows"])))
    if payload_json is None:
        report.error = f"the snapshot could not assemble the investigation: {error}"
        return report
    fast = build(payload_json, "fast")
    report.fast_build_ms = round((fast.build_s or 0.0) * 1000, 3)
    reference = reference_build(payload_json, cache)
    for name, result in (("fast", _result_dict(fast)), ("arctrl", reference)):
        if result["error_code"] is not None:
            report.mapping_errors.append(f"{name}: {result['error_code']}: {result['error_message']}")
    if fast.fallback is not None:
        report.fallbacks.append(fast.fallback)
    report.warnings = list(fast.warnings)
    if fast.arc_json is None or reference["arc_json"] is None:
        return report
    report.fast_equals_arctrl = fast.arc_json.decode() == reference["arc_json"]
    kept: dict[str, set[str]] = {}
    for name, arc_json in (("fast", fast.arc_json.decode()), ("arctrl", reference["arc_json"])):
        kept[name] = set(
            cache.get(_key("facts", arc_json.encode(), _fidelity_code()), partial(_facts_of_rocrate, arc_json))
        )
    report.facts_kept_fast = len(original_facts & kept["fast"])
    report.facts_kept_arctrl = len(original_facts & kept["arctrl"])
    report.losses = _losses(original_facts, kept["fast"], roundtrip_facts)
    return report


def _result_dict(result: worker.BuildResult) -> dict[str, Any]:
    return {
        "arc_json": result.arc_json.decode() if result.arc_json is not None else None,
        "error_code": result.error_code,
        "error_message": result.error_message,
    }
