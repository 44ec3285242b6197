"""Real ARCs through the source relations and the pipeline, compared fact by fact with arctrl's round trip.

    python bench/fidelity.py --json FILE...          # one JSON object per line and file
    python bench/fidelity.py --json ../shared/fixtures/real-arcs/ro-crate/*.json

FILE is an ARC RO-Crate JSON, an ISA-JSON file, or an ISA-XLSX ARC folder. Each
line holds ``file``, ``facts_original``, ``facts_arctrl_roundtrip``,
``facts_kept_fast``, ``facts_kept_arctrl``, ``mapping_errors``, ``fallbacks``,
``fast_equals_arctrl``, ``losses`` (grouped: kind, reason, count, up to ten
facts), ``warnings`` (the builder's), ``unplaced`` (what the source contract
has no place for) and ``error``. Without ``--json`` a short table is printed.

PostgreSQL: ``DATABASE_URL`` if set (the harness works in its own schema
``arcstream_fidelity``), else an embedded server started for the run. arctrl
needs seconds per real ARC: results are cached in ``--cache`` (default
``.arcstream/fidelity-cache``; ``--no-cache`` recomputes everything). See
docs/contract.md ("Checking a source with real ARCs") and
services/dev/fidelity/harness.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.dev.fidelity.harness import Cache, run_file


@contextlib.contextmanager
def database() -> Iterator[str]:
    """``DATABASE_URL``, or an embedded PostgreSQL server for the duration of the run."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    from services.dev.stack.postgres import start_postgres, stop_postgres

    with tempfile.TemporaryDirectory(prefix="arcstream-fidelity-") as directory:
        os.chmod(directory, 0o755)  # as root, the server runs as another user that must reach its data
        record = start_postgres(Path(directory))
        try:
            yield record.url
        finally:
            stop_postgres(record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--json", action="store_true", help="one JSON object per line and file")
    parser.add_argument("--cache", type=Path, default=Path(".arcstream/fidelity-cache"))
    parser.add_argument("--no-cache", action="store_true", help="recompute everything (minutes for real ARCs)")
    args = parser.parse_args()
    cache = Cache(None if args.no_cache else args.cache)
    with database() as url:
        for path in args.files:
            report = run_file(path, url, cache)
            if args.json:
                print(json.dumps(asdict(report), ensure_ascii=False), flush=True)
            else:
                print(
                    f"{path.name}: original {report.facts_original}, arctrl round trip "
                    f"{report.facts_arctrl_roundtrip}, kept fast {report.facts_kept_fast} / arctrl "
                    f"{report.facts_kept_arctrl}, fast == arctrl {report.fast_equals_arctrl}, "
                    f"fallbacks {report.fallbacks}, errors {report.mapping_errors or report.error}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
