"""Operator subcommands: ``replay``, ``replay-dlq``, ``connect register``, ``report``, ``doctor`` and ``status``."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.common.config import load_settings
from services.common.logs import configure_logging
from services.ops.connect import load_connector, register
from services.ops.dlq import DEFAULT_GROUP, DlqItem, replay_dlq
from services.ops.replay import PartitionReset, parse_target, replay


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "replay",
        help="reset a consumer group's committed offsets so its stage re-reads a topic",
        description="Move a stopped consumer group's offsets; prints before/after per partition. "
        "Refuses while the group has members.",
    )
    p.add_argument("--group", required=True, help="consumer group, e.g. arcstream-builder")
    p.add_argument(
        "--to",
        required=True,
        metavar="earliest|latest|ISO-TIME|FILE.json",
        help='where to: earliest, latest, a time (2026-11-22T08:00:00Z), or {"topic": {"partition": offset}}',
    )
    p.add_argument(
        "--topic",
        action="append",
        help="topic to reset (repeatable; default: every topic the group has committed offsets on)",
    )
    p.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    p.add_argument("--json", action="store_true", help="print JSON (the offsets-file shape under 'after')")
    p.set_defaults(handler=_replay)

    d = subparsers.add_parser(
        "replay-dlq",
        help="republish dead-lettered records to their origin topic after a fix",
        description="Republish arc.dlq records not handled by an earlier run; records whose key was "
        "written to the origin topic again since are skipped as superseded.",
    )
    d.add_argument("--to-topic", help="republish everything to this topic instead of each record's origin")
    d.add_argument("--group", default=DEFAULT_GROUP, help=f"progress-tracking group (default {DEFAULT_GROUP})")
    d.add_argument("--dry-run", action="store_true", help="print what would be republished, send nothing")
    d.add_argument("--json", action="store_true", help="print one JSON object per record")
    d.set_defaults(handler=_replay_dlq)

    connect = subparsers.add_parser("connect", help="Kafka Connect (the compose deployment's Debezium)")
    connect_sub = connect.add_subparsers(dest="connect_command", required=True, metavar="ACTION")
    r = connect_sub.add_parser("register", help="create or update a connector from a JSON file and wait until it runs")
    r.add_argument("file", type=Path, help='connector file: {"name": ..., "config": {...}}')
    r.add_argument("--url", default="http://127.0.0.1:8083", help="Kafka Connect REST URL")
    r.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for RUNNING")
    r.set_defaults(handler=_connect_register)

    p = subparsers.add_parser("report", help="print a snapshot run's report at one target as JSON-LD (schema:Action)")
    p.add_argument("--run", required=True, metavar="RUN_ID", help="run id of the snapshot run")
    p.add_argument("--target", help="ARC store base URL (default: uploader.target_url)")
    p.add_argument("--rdi", help="RDI (default: the rdi setting)")
    p.add_argument("--group", help="uploader consumer group (default: uploader.group_id)")
    p.set_defaults(handler=_report)

    p = subparsers.add_parser(
        "doctor",
        help="check a configured deployment end to end (database, source contract, CDC, broker, topics, target)",
        description="One line per check with what to fix; exit code 1 when something blocks the pipeline.",
    )
    p.add_argument("--no-cdc", action="store_true", help="skip the CDC checks (snapshot-only deployments)")
    p.set_defaults(handler=_doctor)

    p = subparsers.add_parser("status", help="live status view over arc.report (faust app: JSON and HTML)")
    p.add_argument("--port", type=int, help="HTTP port (settings.uploader.status_port)")
    p.set_defaults(handler=_status)


def _report(args: argparse.Namespace) -> int:
    from services.ops.run_report import ReportScope, run_report

    settings = load_settings()
    if args.target or args.rdi:
        uploader = settings.uploader.model_dump() | ({"target_url": args.target} if args.target else {})
        settings = load_settings(rdi=args.rdi, uploader=uploader)
    configure_logging("WARNING", settings.log_format)
    scope = ReportScope.from_settings(settings, args.run, args.group)
    print(json.dumps(asyncio.run(run_report(settings, scope)), indent=2))
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from services.ops.doctor import blocking, render, run_doctor

    settings = load_settings()
    configure_logging("ERROR", settings.log_format)
    checks = asyncio.run(run_doctor(settings, cdc=not args.no_cdc))
    print("\n".join(render(checks)))
    return 1 if blocking(checks) else 0


def _status(args: argparse.Namespace) -> int:
    from services.ops.status import run_status_view

    settings = load_settings()
    if args.port:
        settings = load_settings(uploader=settings.uploader.model_dump() | {"status_port": args.port})
    run_status_view(settings)
    return 0


def _replay(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    target = parse_target(args.to)
    resets = asyncio.run(replay(settings, args.group, target, args.topic, dry_run=args.dry_run))
    if args.json:
        print(json.dumps(resets_json(resets), indent=2))
    else:
        print("\n".join(format_resets(resets, dry_run=args.dry_run)))
    return 0


def format_resets(resets: Sequence[PartitionReset], *, dry_run: bool = False) -> list[str]:
    """A table: topic, partition, before, after, end, and how many messages will be re-read."""
    rows = [("topic", "partition", "before", "after", "end", "to re-read")]
    rows += [
        (
            r.topic,
            str(r.partition),
            "-" if r.before is None else str(r.before),
            str(r.after),
            str(r.end),
            str(max(0, r.end - r.after)),
        )
        for r in resets
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    if dry_run:
        lines.append("dry run: nothing changed")
    return lines


def resets_json(resets: Sequence[PartitionReset]) -> dict[str, dict[str, dict[str, int | None]]]:
    """``{"before": {topic: {partition: offset}}, "after": {...}}``; ``after`` is a valid offsets file."""
    out: dict[str, dict[str, dict[str, int | None]]] = {"before": {}, "after": {}}
    for r in resets:
        out["before"].setdefault(r.topic, {})[str(r.partition)] = r.before
        out["after"].setdefault(r.topic, {})[str(r.partition)] = r.after
    return out


def _replay_dlq(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    items = asyncio.run(replay_dlq(settings, to_topic=args.to_topic, group=args.group, dry_run=args.dry_run))
    if args.json:
        for item in items:
            print(json.dumps(_item_json(item)))
    else:
        for item in items:
            origin = f"{item.origin.topic}/{item.origin.partition}/{item.origin_offset}" if item.origin else "-"
            where = f" -> {item.to_topic}" if item.to_topic else ""
            print(f"{item.action:<11}  {item.key}  origin {origin}  error {item.error_code or '-'}{where}")
        counts = Counter(item.action for item in items)
        summary = (
            f"{len(items)} DLQ record(s): {counts['republished']} republished, "
            f"{counts['superseded']} superseded, {counts['no-origin']} without origin (use --to-topic)"
        )
        print(summary + (" (dry run: nothing sent)" if args.dry_run else ""))
    return 0


def _connect_register(args: argparse.Namespace) -> int:
    name, config = load_connector(args.file)
    action, status = register(args.url, name, config, timeout_s=args.timeout)
    tasks = len(status.get("tasks", []))
    print(f"connector {name} {action}: RUNNING with {tasks} task(s) at {args.url}")
    return 0


def _item_json(item: DlqItem) -> dict[str, Any]:
    return {
        "dlq_partition": item.dlq_partition,
        "dlq_offset": item.dlq_offset,
        "key": item.key,
        "error_code": item.error_code,
        "origin_topic": item.origin.topic if item.origin else None,
        "origin_partition": item.origin.partition if item.origin else None,
        "origin_offset": item.origin_offset,
        "action": item.action,
        "to_topic": item.to_topic,
    }
