"""``arcstream demo [--exit]``."""

from __future__ import annotations

import argparse
from typing import Any

from services.common.config import load_settings
from services.common.logs import configure_logging
from services.demo.runner import DemoOptions, run_demo
from services.dev.generator import PROFILES


def add_commands(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo", help="run the whole pipeline on the single-machine stack: snapshot, build, upload, live changes"
    )
    demo.add_argument("--investigations", "-n", type=int, default=DemoOptions.investigations)
    demo.add_argument("--profile", choices=PROFILES, default=DemoOptions.profile)
    demo.add_argument("--seed", type=int, default=DemoOptions.seed)
    demo.add_argument("--exit", action="store_true", help="stop everything after the summary")
    demo.add_argument("--timeout", type=float, default=DemoOptions.timeout_s, help="seconds per stage and change")
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging("WARNING", settings.log_format)
    return run_demo(
        DemoOptions(
            investigations=args.investigations,
            profile=args.profile,
            seed=args.seed,
            exit_after_summary=args.exit,
            timeout_s=args.timeout,
        )
    )
