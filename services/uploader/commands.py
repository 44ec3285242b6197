"""``arcstream uploader``, ``arcstream report --run RUN_ID`` and ``arcstream status``."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any

from services.common.config import Settings, load_settings
from services.common.logs import configure_logging


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser("uploader", help="deliver ARCs from arc.arcs to the ARC store, one outcome each")
    p.add_argument("--target", help="ARC store base URL (settings.uploader.target_url, ARC_STORE_URL)")
    p.add_argument("--rdi", help="research data infrastructure the ARCs belong to (settings.rdi)")
    p.add_argument("--group", help="consumer group id (settings.uploader.group_id)")
    p.add_argument("--force", action="store_true", default=None, help="deliver even when the content hash is unchanged")
    p.set_defaults(handler=_uploader)

    p = subparsers.add_parser("report", help="print a snapshot run's report as JSON-LD (schema:Action)")
    p.add_argument("--run", required=True, metavar="RUN_ID", help="run id of the snapshot run")
    p.set_defaults(handler=_report)

    p = subparsers.add_parser("status", help="live status view over arc.report (faust app: JSON and HTML)")
    p.add_argument("--port", type=int, help="HTTP port (settings.uploader.status_port)")
    p.set_defaults(handler=_status)


def _settings(args: argparse.Namespace) -> Settings:
    base = load_settings()
    uploader: dict[str, Any] = {}
    if getattr(args, "target", None):
        uploader["target_url"] = args.target
    if getattr(args, "group", None):
        uploader["group_id"] = args.group
    if getattr(args, "port", None):
        uploader["status_port"] = args.port
    return load_settings(
        rdi=getattr(args, "rdi", None),
        uploader=base.uploader.model_dump() | uploader if uploader else None,
    )


def _uploader(args: argparse.Namespace) -> int:
    from services.uploader.service import Uploader

    settings = _settings(args)
    configure_logging(settings.log_level, settings.log_format)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Uploader(settings, force=args.force).run(stop)

    asyncio.run(main())
    return 0


def _report(args: argparse.Namespace) -> int:
    from services.uploader.run_report import run_report

    settings = load_settings()
    configure_logging("WARNING", settings.log_format)
    print(json.dumps(asyncio.run(run_report(settings, args.run)), indent=2))
    return 0


def _status(args: argparse.Namespace) -> int:
    from services.uploader.status import run_status_view

    settings = _settings(args)
    run_status_view(settings)
    return 0
