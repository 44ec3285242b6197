"""``arcstream builder``: run the builder service (settings from config, flags override)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from services.builder.engines import ENGINES
from services.builder.service import run_builder
from services.common import tracing
from services.common.config import load_settings
from services.common.logs import configure_logging


def add_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser("builder", help="build ARCs: arc.investigations -> arc.arcs")
    parser.add_argument("--group", metavar="ID", help="consumer group id (builder.group_id)")
    parser.add_argument("--workers", type=int, metavar="N", help="build worker processes (max_concurrent_arc_builds)")
    parser.add_argument("--engine", choices=sorted({"arctrl", "fast", *ENGINES}), help="build engine")
    parser.set_defaults(handler=_builder)


def _builder(args: argparse.Namespace) -> int:
    builder = {key: value for key, value in (("group_id", args.group), ("engine", args.engine)) if value}
    settings = load_settings(builder=builder or None, max_concurrent_arc_builds=args.workers)
    configure_logging(settings.log_level, settings.log_format)
    with tracing.traced(tracing.BUILDER):
        asyncio.run(run_builder(settings))
    return 0
