"""Build engines side by side (no Kafka): ARCs/s, ms per ARC, speed-up, time per cell; prints JSON.

    python bench/build.py --engines [--n 40] [--seed 7]     (or: python bench/engines.py)

- ``mixed``: both engines build the same ``n`` payloads in one process (after a
  warm-up build); every ARC is also compared byte for byte (a differential run
  bigger than the test suite's), and fast-engine fallbacks are counted.
- ``large``: the fast engine builds ``n_large`` full ``large``-profile
  investigations (20 studies x 5 assays x 200-row tables). arctrl would take
  hours for one of them (it grows super-linearly in rows), so the speed-up is
  measured on one ``large`` investigation reduced to ``reduced_shape``, built by both.
- ``rows``: the fast engine on one study table with 10, 100 and 1,000 rows of
  every column type (plus a data table on an assay): microseconds per cell
  should stay flat (no super-linear growth).
- ``worker_costs``: what a build worker does per ``mixed`` payload besides the
  engine (validate the payload JSON, hash the ARC), in this process: with the fast
  engine these are no longer negligible next to the build itself.
- ``contract_v2``: the ``small`` corpus with every source contract v2 column
  (``generate_payloads(..., contract=2)``): both engines, byte for byte.
- ``real`` (``--real FILE...``, e.g. ``../shared/fixtures/real-arcs/ro-crate/*.json``): each real
  ARC as the extractor assembles it from the contract v2 rows the fidelity harness
  makes of it (cached in ``.arcstream/fidelity-cache``; the first run reads each file
  with arctrl, seconds each), built by both engines: ms per ARC, us per cell,
  fallbacks, byte identity.

:func:`noop_build` is an engine that returns a fixed tiny ARC: ``python
bench/build.py --engine noop`` measures the pipeline's own ceiling (Kafka, process
pool, payload validation, hashing, report) with building taken out.
The machine is shared: each timing is the best of ``repeat`` rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.builder import worker
from services.builder.engines import EngineFunction, engine_path, load_engine
from services.builder.engines.fallback import FallbackArc
from services.common.content_hash import content_hash
from services.common.errors import MappingError
from services.common.payload import (
    AnnotationTable,
    Assay,
    Cell,
    Column,
    InvestigationPayload,
    OntologyAnnotation,
    Study,
)
from services.common.records import dumps
from services.dev.generator import generate_payloads, shrink_payload

OBO = "http://purl.obolibrary.org/obo/"
#: Registry path of :func:`noop_build` (spawned workers import it from the repository root).
NOOP_ENGINE = "bench.engines:noop_build"
_NOOP_ARC = json.dumps(
    {
        "@context": "https://w3id.org/ro/crate/1.2/context",
        "@graph": [{"@id": "./", "@type": "Dataset", "additionalType": "Investigation", "identifier": "noop"}],
    }
)


def noop_build(payload: InvestigationPayload) -> str:
    """An engine that costs nothing: the pipeline's ceiling."""
    return _NOOP_ARC


def _best_round(build: EngineFunction, payloads: list[InvestigationPayload], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for payload in payloads:
            with contextlib.suppress(MappingError):
                build(payload)
        best = min(best, time.perf_counter() - started)
    return best


def _rate(seconds: float, arcs: int) -> dict[str, Any]:
    return {
        "arcs": arcs,
        "seconds": round(seconds, 4),
        "arcs_per_s": round(arcs / seconds, 2),
        "ms_per_arc": round(seconds * 1000 / arcs, 3),
    }


def _identical(fast: EngineFunction, arctrl: EngineFunction, payloads: list[InvestigationPayload]) -> dict[str, int]:
    """Byte-for-byte comparison of both engines' output; fallbacks are arctrl's output by construction."""
    same = fallbacks = refused = 0
    for payload in payloads:
        try:
            expected = arctrl(payload)
        except MappingError:
            refused += 1
            continue
        actual = fast(payload)
        fallbacks += isinstance(actual, FallbackArc)
        same += actual == expected
    return {"payloads": len(payloads), "identical": same, "refused_by_both": refused, "fast_fallbacks": fallbacks}


def rows_payload(rows: int) -> InvestigationPayload:
    """One study table with every column type and one assay data table, ``rows`` rows each."""

    def column(kind: str, header: str | None = None, io: str | None = None, **cell: Any) -> Column:
        return Column(
            column_type=kind,  # type: ignore[arg-type]
            column_value=header,
            column_io_type=io,  # type: ignore[arg-type]
            cells=[
                Cell(row_index=i, **{k: (v(i) if callable(v) else v) for k, v in cell.items()}) for i in range(rows)
            ],
        )

    organism = OntologyAnnotation(term="Zea mays", uri=f"{OBO}NCBITaxon_4577")
    centimeter = OntologyAnnotation(term="centimeter", uri=f"{OBO}UO_0000015")
    study_table = AnnotationTable(
        target_type="study",
        target_ref="s1",
        table_name="sampling",
        columns=[
            column("input", io="source_name", value=lambda i: f"plot {i}"),
            column("characteristic", "organism", value="Zea mays", annotation=organism),
            column("parameter", "depth", value=lambda i: str(i % 50), annotation=centimeter),
            column("factor", "treatment", value=lambda i: ("drought", "control")[i % 2]),
            column("component", "auger", value="steel"),
            column("comment", "weather", value=lambda i: f"day {i % 7}"),
            column("date", value=lambda i: f"2021-05-{1 + i % 28:02d}"),
            column("performer", value="J. Doe"),
            column("output", io="sample_name", value=lambda i: f"sample {i}"),
        ],
    )
    assay_table = AnnotationTable(
        target_type="assay",
        target_ref="a1",
        table_name="sequencing",
        columns=[
            column("input", io="sample_name", value=lambda i: f"sample {i}"),
            column("parameter", "run", value=lambda i: str(i % 4)),
            column("output", io="data", value=lambda i: f"reads_{i}.fastq"),
        ],
    )
    return InvestigationPayload(
        identifier=f"rows-{rows}",
        title="Row scaling",
        studies=[Study(identifier="s1")],
        assays=[Assay(identifier="a1", study_refs=["s1"])],
        annotation_tables=[study_table, assay_table],
    )


def _cells(payload: InvestigationPayload) -> int:
    return sum(len(column.cells) for table in payload.annotation_tables for column in table.columns)


def _ms_per_arc(step: Any, items: list[Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for item in items:
            step(item)
        best = min(best, time.perf_counter() - started)
    return round(best * 1000 / len(items), 3)


def worker_costs(payloads: list[InvestigationPayload], repeat: int) -> dict[str, Any]:
    """Milliseconds per payload of each step a fast-engine build worker runs (in this process)."""
    fast = load_engine(engine_path("fast"))
    raw = [dumps(payload.model_dump(mode="json")) for payload in payloads]
    arcs = [fast(payload).encode() for payload in payloads]
    worker.init_worker(engine_path("fast"))
    return {
        "engine": "fast",
        "validate_payload_ms": _ms_per_arc(worker.parse_payload, raw, repeat),
        "build_ms": _ms_per_arc(fast, payloads, repeat),
        "content_hash_ms": _ms_per_arc(lambda arc: content_hash(json.loads(arc)), arcs, repeat),
        "worker_build_ms": _ms_per_arc(worker.build, raw, repeat),
        "note": "worker_build = validate + build + hash + framing: the per-payload work the service's worker does",
    }


def rows_scaling(fast: EngineFunction, repeat: int) -> dict[str, Any]:
    """Fast-engine time per table cell at 10, 100 and 1,000 rows."""
    rows = {}
    for count in (10, 100, 1000):
        payload = rows_payload(count)
        seconds = _best_round(fast, [payload], repeat)
        rows[str(count)] = {
            "cells": _cells(payload),
            "ms": round(seconds * 1000, 3),
            "us_per_cell": round(seconds * 1e6 / _cells(payload), 3),
        }
    return {"engine": "fast", "by_rows": rows}


def real_payloads(paths: list[Path]) -> list[InvestigationPayload]:
    """Real ARCs as payloads: the harness's contract v2 rows of each, assembled as the extractor does."""
    from services.dev.fidelity.harness import Cache, original_of
    from services.dev.generator import SourceRows

    cache = Cache(Path(".arcstream/fidelity-cache"))
    return [SourceRows(**original_of(path, cache)["rows"]).payload() for path in paths]


def real(fast: EngineFunction, arctrl: EngineFunction, payloads: list[InvestigationPayload], repeat: int) -> Any:
    """Per real ARC: fast ms (best of ``repeat``), us per cell, arctrl seconds (one build), fallback, identity."""
    found = []
    for payload in payloads:
        fast_s = _best_round(fast, [payload], repeat)
        started = time.perf_counter()
        expected = arctrl(payload)
        arctrl_s = time.perf_counter() - started
        actual = fast(payload)
        found.append(
            {
                "identifier": payload.identifier,
                "cells": _cells(payload),
                "fast_ms": round(fast_s * 1000, 3),
                "fast_us_per_cell": round(fast_s * 1e6 / max(_cells(payload), 1), 3),
                "arctrl_s": round(arctrl_s, 3),
                "speedup": round(arctrl_s / fast_s, 1),
                "fast_fallback": getattr(actual, "reason", None),
                "identical": actual == expected,
            }
        )
    return found


def compare(n: int, seed: int, n_large: int, repeat: int, real_files: list[Path] | None = None) -> dict[str, Any]:
    """Fast-engine figures first, in a process without arctrl (like a fast build worker), then arctrl's."""
    fast = load_engine(engine_path("fast"))
    real_arcs = real_payloads(real_files) if real_files else []
    mixed = generate_payloads(n, seed, "mixed")
    v2 = generate_payloads(n, seed, "small", contract=2)
    large = generate_payloads(n_large, seed, "large")
    shape = {"studies": 3, "assays": 3, "rows": 20}
    reduced = [shrink_payload(large[0], **shape)]
    fast(mixed[0])  # warm-up: imports and first-call costs are not per-ARC costs
    mixed_fast = _best_round(fast, mixed, repeat)
    large_fast = _best_round(fast, large, repeat)
    reduced_fast = _best_round(fast, reduced, repeat)
    v2_fast = _best_round(fast, v2, repeat)
    rows = rows_scaling(fast, repeat)
    costs = worker_costs(mixed, repeat)

    arctrl = load_engine(engine_path("arctrl"))
    arctrl(mixed[0])
    mixed_arctrl = _best_round(arctrl, mixed, 1)  # seconds per round: one is enough to be stable
    reduced_arctrl = _best_round(arctrl, reduced, 1)
    return {
        "benchmark": "build-engines",
        "arctrl_version": importlib.metadata.version("arctrl"),
        "cpu_count": os.cpu_count(),
        "mixed": {
            "corpus": {"profile": "mixed", "n": n, "seed": seed},
            "fast": _rate(mixed_fast, n),
            "arctrl": _rate(mixed_arctrl, n),
            "speedup": round(mixed_arctrl / mixed_fast, 1),
            "output": _identical(fast, arctrl, mixed),
        },
        "large": {
            "corpus": {"profile": "large", "n": n_large, "seed": seed, "cells": sum(map(_cells, large))},
            "fast": _rate(large_fast, n_large),
            "reduced": {
                "note": "arctrl needs hours for one full large investigation: both engines build the first one "
                "reduced to this shape",
                "shape": shape,
                "cells": _cells(reduced[0]),
                "fast": _rate(reduced_fast, 1),
                "arctrl": _rate(reduced_arctrl, 1),
                "speedup": round(reduced_arctrl / reduced_fast, 1),
                "output": _identical(fast, arctrl, reduced),
            },
        },
        "rows": rows,
        "worker_costs": costs,
        "contract_v2": {
            "corpus": {"profile": "small", "n": n, "seed": seed, "contract": 2},
            "fast": _rate(v2_fast, n),
            "output": _identical(fast, arctrl, v2),
        },
        "real": real(fast, arctrl, real_arcs, repeat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args()
    print(json.dumps(run(args), indent=2))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-large", type=int, default=3, help="full large investigations for the fast engine")
    parser.add_argument("--best-of", type=int, default=3, help="timed rounds of the fast engine; the best counts")
    parser.add_argument("--real", type=Path, nargs="*", default=[], help="real ARC files (see bench/fidelity.py)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    return compare(
        getattr(args, "n", 40), getattr(args, "seed", 7), args.n_large, args.best_of, getattr(args, "real", [])
    )


if __name__ == "__main__":
    main()
