"""``arcstream extract snapshot`` and ``arcstream gen``."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from services.common.config import load_settings
from services.common.logs import configure_logging
from services.common.metrics_server import serve_metrics
from services.common.source.generator import PROFILES, generate
from services.common.source.schema import connect, ensure_source_schema
from services.common.source.writer import write_rows
from services.extractor.cdc_commands import add_extract_cdc
from services.extractor.snapshot import SnapshotSummary, run_snapshot


def add_commands(subparsers: Any) -> None:
    extract = subparsers.add_parser("extract", help="extract investigations from the database to Kafka")
    extract_sub = extract.add_subparsers(dest="extract_command", required=True, metavar="MODE")
    snapshot = extract_sub.add_parser("snapshot", help="one consistent full export (one harvest downstream)")
    snapshot.add_argument("--batch-size", type=int, help="investigations per batch (db_batch_size)")
    snapshot.add_argument("--workers", type=int, help="extraction processes (extractor_workers)")
    snapshot.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    snapshot.set_defaults(handler=_snapshot)
    add_extract_cdc(extract_sub)

    gen = subparsers.add_parser("gen", help="fill the configured database with deterministic demo data")
    gen.add_argument("--investigations", "-n", type=int, required=True)
    gen.add_argument("--seed", type=int, default=1)
    gen.add_argument("--profile", choices=PROFILES, default="small")
    gen.add_argument("--start", type=int, default=0, help="index of the first investigation (to append)")
    gen.set_defaults(handler=_gen)


def _snapshot(args: argparse.Namespace) -> int:
    settings = load_settings(db_batch_size=args.batch_size)
    configure_logging(settings.log_level, settings.log_format)
    workers = args.workers or settings.extractor_workers

    async def snapshot() -> SnapshotSummary:
        async with serve_metrics(settings.metrics):
            return await run_snapshot(settings, progress=False if args.no_progress else None, workers=workers)

    summary = asyncio.run(snapshot())
    print(json.dumps(summary.as_dict()))
    return 0


def _gen(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)

    async def fill() -> int:
        conn = await connect(settings.database_url.get_secret_value())
        try:
            await ensure_source_schema(conn)
            await conn.commit()
            rows = (
                row
                for index, row in enumerate(generate(args.start + args.investigations, args.seed, args.profile))
                if index >= args.start
            )
            return await write_rows(conn, rows)
        finally:
            await conn.close()

    started = time.monotonic()
    count = asyncio.run(fill())
    print(
        json.dumps(
            {
                "investigations": count,
                "profile": args.profile,
                "seed": args.seed,
                "duration_s": round(time.monotonic() - started, 2),
            }
        )
    )
    return 0
