"""``arcstream extract snapshot`` (``extract cdc`` comes from :mod:`services.extractor.cdc.commands`)."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from services.common import tracing
from services.common.config import load_settings
from services.common.logs import configure_logging
from services.common.metrics_server import serve_metrics
from services.extractor.cdc.commands import add_extract_cdc
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


def _snapshot(args: argparse.Namespace) -> int:
    settings = load_settings(db_batch_size=args.batch_size)
    configure_logging(settings.log_level, settings.log_format)
    workers = args.workers or settings.extractor_workers

    async def snapshot() -> SnapshotSummary:
        async with serve_metrics(settings.metrics):
            return await run_snapshot(settings, progress=False if args.no_progress else None, workers=workers)

    with tracing.traced(tracing.EXTRACTOR):
        summary = asyncio.run(snapshot())
    print(json.dumps(summary.as_dict()))
    return 0
