"""Runtime subcommands every deployment has: ``config show|reference`` and ``topics ensure``."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from services.common.config import effective_settings, load_settings
from services.common.kafka.topics import ensure_topics
from services.common.logs import configure_logging


def add_commands(subparsers: Any) -> None:
    config = subparsers.add_parser("config", help="configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    config_sub.add_parser("show", help="print the effective settings (secrets masked)").set_defaults(
        handler=_config_show
    )
    config_sub.add_parser("reference", help="print the configuration reference table").set_defaults(
        handler=_config_reference
    )

    topics = subparsers.add_parser("topics", help="Kafka topics")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    topics_sub.add_parser("ensure", help="create arcstream's topics as configured (idempotent)").set_defaults(
        handler=_topics_ensure
    )


def _topics_ensure(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    result = asyncio.run(ensure_topics(settings))
    print(json.dumps(result, indent=2))
    return 0


def _config_show(args: argparse.Namespace) -> int:
    print(json.dumps(effective_settings(load_settings()), indent=2))
    return 0


def _config_reference(args: argparse.Namespace) -> int:
    from services.dev.config_reference import render_reference

    print(render_reference(), end="")
    return 0
