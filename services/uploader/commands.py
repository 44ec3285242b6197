"""``arcstream uploader``: run the uploader service (settings from config, flags override)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from services.common import tracing
from services.common.config import Settings, load_settings
from services.common.logs import configure_logging


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser("uploader", help="deliver ARCs from arc.arcs to the ARC store, one outcome each")
    p.add_argument("--target", help="ARC store base URL (settings.uploader.target_url, ARC_STORE_URL)")
    p.add_argument("--rdi", help="research data infrastructure the ARCs belong to (settings.rdi)")
    p.add_argument("--group", help="consumer group id (settings.uploader.group_id)")
    p.add_argument("--force", action="store_true", default=None, help="deliver even when the content hash is unchanged")
    p.set_defaults(handler=_uploader)


def _settings(args: argparse.Namespace) -> Settings:
    base = load_settings()
    uploader: dict[str, Any] = {}
    if getattr(args, "target", None):
        uploader["target_url"] = args.target
    if getattr(args, "group", None):
        uploader["group_id"] = args.group
    return load_settings(
        rdi=getattr(args, "rdi", None),
        uploader=base.uploader.model_dump() | uploader if uploader else None,
    )


def _uploader(args: argparse.Namespace) -> int:
    from services.uploader.service import run_uploader

    settings = _settings(args)
    configure_logging(settings.log_level, settings.log_format)
    with tracing.traced(tracing.UPLOADER):
        asyncio.run(run_uploader(settings, force=args.force))
    return 0
