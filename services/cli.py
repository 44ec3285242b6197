"""The one ``arcstream`` command: a subcommand per service and per operation.

Each service package contributes its subcommands through a module with an
``add_commands(subparsers)`` function (listed in :data:`COMMAND_MODULES`); each
subcommand sets ``handler``, a function taking the parsed arguments and
returning the exit code. A :class:`FatalError` anywhere ends the process with
one line on stderr saying what to fix, and exit code 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from services.common.config import register_fallback_source
from services.common.errors import FatalError
from services.dev.stack.state import settings_from_stack

#: Modules contributing subcommands, in help order.
COMMAND_MODULES = (
    "services.common.commands",
    "services.dev.commands",
    "services.extractor.commands",
    "services.extractor.cdc.commands",
    "services.builder.commands",
    "services.ops.commands",
    "services.uploader.commands",
    "services.store.commands",
    "services.demo.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arcstream",
        description="Keep ARCs in sync with a research-metadata database, through Kafka.",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML settings file (also ARCSTREAM_CONFIG)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Services started from the CLI find the servers 'arcstream dev up' recorded under state_dir.
    register_fallback_source(settings_from_stack)
    if args.config:
        os.environ["ARCSTREAM_CONFIG"] = args.config
    try:
        code: int = args.handler(args)
    except FatalError as exc:
        print(f"arcstream {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
