"""``arcstream store``: run the local ARC store (the FAIRagro middleware API v3) over a directory."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

from services.common import tracing
from services.common.config import StoreSettings, load_settings
from services.common.logs import configure_logging
from services.store.app import serve


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser("store", help="run the local ARC store (FAIRagro middleware API v3) over a directory")
    p.add_argument("--dir", type=Path, help="directory holding the ARC files (settings.store.directory)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 8080)")
    p.add_argument("--failure-rate", type=float, help="share of write requests answered 503 (0..1)")
    p.add_argument("--retry-after", type=float, help="seconds named in Retry-After of injected 503s")
    p.add_argument("--retry-after-format", choices=["seconds", "http-date"], help="form of Retry-After")
    p.add_argument("--latency-ms", type=int, help="latency added to every API request")
    p.add_argument("--max-body-bytes", type=int, help="larger request bodies are answered 413")
    p.add_argument("--seed", type=int, help="seed for the injected failures")
    p.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", type=Path, help="private key of --tls-cert")
    p.add_argument("--tls-client-ca", type=Path, help="require client certificates signed by this CA (mTLS)")
    p.add_argument(
        "--known-rdi", action="append", default=[], metavar="NAME", help="recognise this RDI too (repeatable)"
    )
    p.add_argument("--enable-delete", action="store_true", help="serve DELETE /v3/arcs/{id} (the real API has none)")
    p.add_argument(
        "--test-hooks", action="store_true", help="serve GET /v3/arcs[/{id}] and the request log /_store/requests"
    )
    p.add_argument("--record-bodies", action="store_true", help="the request log keeps request bodies too")
    p.add_argument("--no-git-sync", action="store_true", help="do not check new ARCs with arctrl in the background")
    p.set_defaults(handler=_store)


def _store(args: argparse.Namespace) -> int:
    overrides = {
        "directory": args.dir,
        "host": args.host,
        "port": args.port,
        "failure_rate": args.failure_rate,
        "retry_after_s": args.retry_after,
        "retry_after_format": args.retry_after_format,
        "latency_ms": args.latency_ms,
        "max_body_bytes": args.max_body_bytes,
        "failure_seed": args.seed,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "tls_client_ca": args.tls_client_ca,
        "enable_delete": args.enable_delete or None,
        "test_hooks": args.test_hooks or args.record_bodies or None,
        "record_bodies": args.record_bodies or None,
        "git_sync": False if args.no_git_sync else None,
    }
    base = load_settings()
    overrides["known_rdis"] = [*base.store.known_rdis, *(r for r in args.known_rdi if r not in base.store.known_rdis)]
    settings = load_settings(
        store=base.store.model_dump() | {key: value for key, value in overrides.items() if value is not None}
    )
    configure_logging(settings.log_level, settings.log_format)
    with tracing.traced(tracing.STORE):
        asyncio.run(_run(settings.store))
    return 0


async def _run(store_settings: StoreSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(store_settings, stop)
