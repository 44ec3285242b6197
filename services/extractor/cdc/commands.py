"""``arcstream cdc setup|capture|reset`` and ``arcstream extract cdc``."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import psycopg

from services.common import tracing
from services.common.config import Settings, load_settings
from services.common.kafka.clients import check_broker
from services.common.kafka.stage import run_until_signalled
from services.common.logs import configure_logging
from services.extractor.source.schema import connect


def add_commands(subparsers: Any) -> None:
    cdc = subparsers.add_parser("cdc", help="change data capture (Debezium PostgreSQL connector)")
    cdc_sub = cdc.add_subparsers(dest="cdc_command", required=True, metavar="ACTION")
    cdc_sub.add_parser("setup", help="publication, REPLICA IDENTITY FULL, wal_level check (idempotent)").set_defaults(
        handler=_setup
    )
    capture = cdc_sub.add_parser("capture", help="run the Debezium connector embedded, publishing to Kafka")
    capture.add_argument("--slot", help="replication slot name (cdc.slot_name)")
    capture.add_argument("--topic-prefix", help="change topic prefix (cdc.topic_prefix)")
    capture.set_defaults(handler=_capture)
    slot_metrics = cdc_sub.add_parser(
        "slot-metrics", help="serve the replication slot's health on /metrics (when Kafka Connect runs the connector)"
    )
    slot_metrics.add_argument("--slot", help="replication slot name (cdc.slot_name)")
    slot_metrics.set_defaults(handler=_slot_metrics)
    reset = cdc_sub.add_parser(
        "reset",
        help="recover from a stale CDC position: new replication slot, old offsets set aside (a snapshot must follow)",
        description="For a position capture cannot resume (slot dropped, database recreated or restored, WAL "
        "removed): drops the slot, moves the offsets file aside and creates the slot again, so every change "
        "from now on is kept. Changes before now reach Kafka only through 'arcstream extract snapshot'.",
    )
    reset.add_argument("--slot", help="replication slot name (cdc.slot_name)")
    reset.add_argument("--force", action="store_true", help="reset even a valid position (a snapshot must follow)")
    reset.set_defaults(handler=_reset)


def add_extract_cdc(extract_sub: Any) -> None:
    """``arcstream extract cdc``, added to the ``extract`` group by :mod:`services.extractor.commands`."""
    extract_cdc = extract_sub.add_parser(
        "cdc", help="incremental extraction: change topics -> whole payloads of touched investigations"
    )
    extract_cdc.add_argument("--group-id", help="consumer group (cdc.group_id)")
    extract_cdc.add_argument("--topic-prefix", help="change topic prefix (cdc.topic_prefix)")
    extract_cdc.set_defaults(handler=_extract_cdc)


def _cdc_settings(args: argparse.Namespace, **cdc: Any) -> Settings:
    overrides = {key: value for key, value in cdc.items() if value is not None}
    settings = load_settings()
    if overrides:
        settings = load_settings(cdc=settings.cdc.model_dump() | overrides)
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _setup(args: argparse.Namespace) -> int:
    from services.extractor.cdc.capture.setup import setup_cdc

    settings = _cdc_settings(args)
    return _print_lines(settings, lambda conn: setup_cdc(conn, settings))


def _capture(args: argparse.Namespace) -> int:
    from services.extractor.cdc.capture.jvm import start_jvm
    from services.extractor.cdc.capture.runner import captured_tables, run_capture

    settings = _cdc_settings(args, slot_name=args.slot, topic_prefix=args.topic_prefix)
    # Fail fast, before the JVM starts: broker, tables, stored position.
    asyncio.run(check_broker(settings.kafka))
    tables = asyncio.run(captured_tables(settings))
    start_jvm(settings.log_level, settings.cdc.java_options)
    asyncio.run(run_until_signalled(lambda stop: run_capture(settings, tables, stop)))
    return 0


def _slot_metrics(args: argparse.Namespace) -> int:
    from services.extractor.cdc.capture.health import run_slot_metrics

    settings = _cdc_settings(args, slot_name=args.slot)
    asyncio.run(run_until_signalled(lambda stop: run_slot_metrics(settings, stop)))
    return 0


def _reset(args: argparse.Namespace) -> int:
    from services.extractor.cdc.capture.position import reset_position

    settings = _cdc_settings(args, slot_name=args.slot)
    return _print_lines(settings, lambda conn: reset_position(conn, settings, force=args.force))


def _extract_cdc(args: argparse.Namespace) -> int:
    from services.extractor.cdc.extractor import run_cdc_extractor

    settings = _cdc_settings(args, group_id=args.group_id, topic_prefix=args.topic_prefix)
    with tracing.traced(tracing.CDC_EXTRACTOR):
        asyncio.run(run_until_signalled(lambda stop: run_cdc_extractor(settings, stop)))
    return 0


def _print_lines(
    settings: Settings, work: Callable[[psycopg.AsyncConnection[Any]], Coroutine[Any, Any, list[str]]]
) -> int:
    """Run ``work`` on an autocommit connection to the source database and print what it reports."""

    async def run() -> list[str]:
        conn = await connect(settings.database_url.get_secret_value(), autocommit=True)
        try:
            return await work(conn)
        finally:
            await conn.close()

    for line in asyncio.run(run()):
        print(line)
    return 0
