"""Development subcommands: ``dev up|down|env``, ``gen``, ``schemas write``.

They need the ``stack`` extra (embedded PostgreSQL, the dev broker) only when they
run, so the CLI lists them on every install and a production install says what to
add when one is used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from services.common.config import load_settings
from services.common.errors import StackError
from services.common.logs import configure_logging, mask_url
from services.dev.generator import PROFILES

if TYPE_CHECKING:
    from services.dev.fill import FillResult


def add_commands(subparsers: Any) -> None:
    dev = subparsers.add_parser("dev", help="the single-machine stack (PostgreSQL, broker, ARC store)")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True, metavar="ACTION")
    p = dev_sub.add_parser("up", help="start the stack on free loopback ports and record where it is")
    p.add_argument("--no-store", action="store_true", help="do not start the local ARC store")
    p.set_defaults(handler=_dev_up)
    dev_sub.add_parser("down", help="stop what 'dev up' started").set_defaults(handler=_dev_down)
    dev_sub.add_parser("env", help="print the stack's settings as shell export lines").set_defaults(handler=_dev_env)

    gen = subparsers.add_parser("gen", help="fill the configured database with deterministic demo data")
    gen.add_argument("--investigations", "-n", type=int, required=True)
    gen.add_argument("--seed", type=int, default=1)
    gen.add_argument("--profile", choices=PROFILES, default="small")
    gen.add_argument(
        "--contract", type=int, choices=(1, 2), default=1, help="2: fill the optional v2 columns too (docs/contract.md)"
    )
    where = gen.add_mutually_exclusive_group()
    where.add_argument(
        "--append", action="store_true", help="add after the generated investigations already in the database"
    )
    where.add_argument("--start", type=int, help="index of the first investigation (must not exist yet)")
    gen.set_defaults(handler=_gen)

    schemas = subparsers.add_parser("schemas", help="JSON Schemas in schemas/")
    schemas_sub = schemas.add_subparsers(dest="schemas_command", required=True, metavar="ACTION")
    schemas_sub.add_parser("write", help="regenerate the JSON Schemas from the models").set_defaults(
        handler=_schemas_write
    )


def _dev_up(args: argparse.Namespace) -> int:
    from services.dev.stack import stack

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    state = stack.up(settings.state_dir, with_store=not args.no_store, known_rdis=(settings.rdi,))
    for name, value in state.env().items():
        print(f"{name}={mask_url(value)}")
    print(f"stack recorded in {settings.state_dir / 'stack.json'}; 'arcstream dev env' prints export lines")
    return 0


def _dev_down(args: argparse.Namespace) -> int:
    from services.dev.stack import stack

    stopped = stack.down(load_settings().state_dir)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing (no stack recorded)"))
    return 0


def _dev_env(args: argparse.Namespace) -> int:
    from services.dev.stack import stack
    from services.dev.stack.state import read_state

    state = read_state(load_settings().state_dir)
    if state is None:
        raise StackError("no stack recorded here: run 'arcstream dev up' first")
    print("\n".join(stack.env_lines(state)))
    return 0


def _gen(args: argparse.Namespace) -> int:
    from services.dev.fill import fill
    from services.extractor.source.schema import connect

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)

    async def run() -> FillResult:
        conn = await connect(settings.database_url.get_secret_value())
        try:
            return await fill(
                conn,
                args.investigations,
                args.seed,
                args.profile,
                start=args.start,
                append=args.append,
                contract=args.contract,
            )
        finally:
            await conn.close()

    started = time.monotonic()
    result = asyncio.run(run())
    print(
        json.dumps(
            {
                "investigations": result.written,
                "first": result.start,
                "profile": args.profile,
                "contract": args.contract,
                "seed": args.seed,
                "duration_s": round(time.monotonic() - started, 2),
            }
        )
    )
    return 0


def _schemas_write(args: argparse.Namespace) -> int:
    from services.dev.schemas import write_schemas

    for path in write_schemas():
        print(path)
    return 0
