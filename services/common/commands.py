"""Subcommands for the single-machine stack and topics: ``dev up|down|env``, ``topics ensure``."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from services.common.config import load_settings
from services.common.config_reference import effective_settings, render_reference
from services.common.devstack import stack
from services.common.devstack.state import read_state
from services.common.errors import StackError
from services.common.kafka.topics import ensure_topics
from services.common.logs import configure_logging, mask_url
from services.common.schemas import write_schemas


def add_commands(subparsers: Any) -> None:
    dev = subparsers.add_parser("dev", help="the single-machine stack (PostgreSQL, broker, ARC store)")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True, metavar="ACTION")
    p = dev_sub.add_parser("up", help="start the stack on free loopback ports and record where it is")
    p.add_argument("--no-store", action="store_true", help="do not start the local ARC store")
    p.set_defaults(handler=_dev_up)
    dev_sub.add_parser("down", help="stop what 'dev up' started").set_defaults(handler=_dev_down)
    dev_sub.add_parser("env", help="print the stack's settings as shell export lines").set_defaults(handler=_dev_env)

    config = subparsers.add_parser("config", help="configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    config_sub.add_parser("show", help="print the effective settings (secrets masked)").set_defaults(
        handler=_config_show
    )
    config_sub.add_parser("reference", help="print the configuration reference table").set_defaults(
        handler=_config_reference
    )

    schemas = subparsers.add_parser("schemas", help="JSON Schemas in schemas/")
    schemas_sub = schemas.add_subparsers(dest="schemas_command", required=True, metavar="ACTION")
    schemas_sub.add_parser("write", help="regenerate the JSON Schemas from the models").set_defaults(
        handler=_schemas_write
    )

    topics = subparsers.add_parser("topics", help="Kafka topics")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    topics_sub.add_parser("ensure", help="create arcstream's topics as configured (idempotent)").set_defaults(
        handler=_topics_ensure
    )


def _state_dir() -> Path:
    return load_settings().state_dir


def _dev_up(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    state = stack.up(settings.state_dir, with_store=not args.no_store)
    for name, value in state.env().items():
        print(f"{name}={mask_url(value)}")
    print(f"stack recorded in {settings.state_dir / 'stack.json'}; 'arcstream dev env' prints export lines")
    return 0


def _dev_down(args: argparse.Namespace) -> int:
    stopped = stack.down(_state_dir())
    print("stopped: " + (", ".join(stopped) if stopped else "nothing (no stack recorded)"))
    return 0


def _dev_env(args: argparse.Namespace) -> int:
    state = read_state(_state_dir())
    if state is None:
        raise StackError("no stack recorded here: run 'arcstream dev up' first")
    print("\n".join(stack.env_lines(state)))
    return 0


def _topics_ensure(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    result = asyncio.run(ensure_topics(settings))
    print(json.dumps(result, indent=2))
    return 0


def _schemas_write(args: argparse.Namespace) -> int:
    for path in write_schemas():
        print(path)
    return 0


def _config_show(args: argparse.Namespace) -> int:
    print(json.dumps(effective_settings(load_settings()), indent=2))
    return 0


def _config_reference(args: argparse.Namespace) -> int:
    print(render_reference(), end="")
    return 0
