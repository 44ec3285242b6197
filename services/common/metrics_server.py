"""A tiny HTTP server for ``/metrics``, ``/healthz`` and ``/readyz``.

It runs in a daemon thread so a busy (or stuck) asyncio loop never delays a
Prometheus scrape, and a scrape never blocks the loop:

- ``/metrics``: the series of :mod:`services.common.metrics` in text format.
- ``/healthz``: the process is alive; when given the service's event loop, also
  that the loop still runs callbacks (a loop blocked for seconds is not healthy).
- ``/readyz``: the service's own readiness callback, e.g. "consumer has an
  assignment and the broker answered". It answers 200 or 503 with JSON naming
  each check, so an operator sees *what* is not ready.

``settings.metrics.port = 0`` disables the server unless ``ephemeral_port`` is
set, which binds a free port chosen by the OS and reports it (tests, several
services on one machine).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.common.config import MetricsSettings
from services.common.errors import ConfigError
from services.common.metrics import REGISTRY

log = logging.getLogger(__name__)

#: Returns ``True``/``False`` or named checks (all must be true). Called from the server thread,
#: so it must be cheap and only read state the service keeps up to date (see :class:`Readiness`).
ReadinessCallback = Callable[[], bool | Mapping[str, bool]]

#: How long ``/healthz`` waits for the event loop to run a no-op callback.
LOOP_CHECK_TIMEOUT_S = 2.0


class Readiness:
    """Named readiness checks a service flips from its loop; thread-safe to read.

    ``Readiness("assigned", "broker")`` starts with both false; the service calls
    ``set("assigned", True)`` in its rebalance listener and so on, and passes the
    instance as the readiness callback.
    """

    def __init__(self, *checks: str) -> None:
        self._lock = threading.Lock()
        self._checks = dict.fromkeys(checks, False)

    def set(self, check: str, ok: bool) -> None:
        with self._lock:
            self._checks[check] = ok

    def __call__(self) -> dict[str, bool]:
        with self._lock:
            return dict(self._checks)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        readiness: ReadinessCallback | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        super().__init__(address, _Handler)
        self.readiness = readiness
        self.loop = loop


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))
        elif path == "/healthz":
            self._json(*self._health())
        elif path == "/readyz":
            self._json(*self._ready())
        else:
            self._json(404, {"error": "not found", "paths": ["/metrics", "/healthz", "/readyz"]})

    def _health(self) -> tuple[int, dict[str, Any]]:
        loop = self.server.loop
        if loop is None:
            return 200, {"status": "ok"}
        answered: concurrent.futures.Future[None] = concurrent.futures.Future()
        try:
            loop.call_soon_threadsafe(answered.set_result, None)
            answered.result(LOOP_CHECK_TIMEOUT_S)
        except (concurrent.futures.TimeoutError, RuntimeError) as exc:  # RuntimeError: loop closed
            return 503, {"status": "event loop unresponsive", "error": type(exc).__name__}
        return 200, {"status": "ok"}

    def _ready(self) -> tuple[int, dict[str, Any]]:
        callback = self.server.readiness
        if callback is None:
            return 200, {"ready": True, "checks": {}}
        try:
            result = callback()
        except Exception as exc:  # a broken check means "not ready", never a crashed server thread
            return 503, {"ready": False, "error": f"{type(exc).__name__}: {exc}"}
        checks = dict(result) if isinstance(result, Mapping) else {"ready": bool(result)}
        ready = all(checks.values())
        return (200 if ready else 503), {"ready": ready, "checks": checks}

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, "application/json", json.dumps(body).encode())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Scrapes every few seconds would drown the service's own log.
        log.debug("metrics http: " + format, *args)


class MetricsServer:
    """The running server; ``url`` and ``port`` report where it listens (also for port 0)."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop serving and close the socket (blocks up to half a second)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def start_metrics_server(
    metrics: MetricsSettings,
    readiness: ReadinessCallback | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> MetricsServer | None:
    """Start serving in a background thread, or return ``None`` when disabled (port 0)."""
    if metrics.port == 0 and not metrics.ephemeral_port:
        return None
    port = 0 if metrics.ephemeral_port else metrics.port
    try:
        server = _Server((metrics.host, port), readiness, loop)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {metrics.host}:{port}: {exc.strerror}") from exc
    running = MetricsServer(server)
    log.info("metrics, health and readiness on %s (/metrics /healthz /readyz)", running.url)
    return running


@asynccontextmanager
async def serve_metrics(
    metrics: MetricsSettings, readiness: ReadinessCallback | None = None
) -> AsyncIterator[MetricsServer | None]:
    """``async with serve_metrics(settings.metrics, ready) as server:`` for an asyncio service.

    ``/healthz`` then also checks that the running loop is responsive.
    """
    server = start_metrics_server(metrics, readiness, asyncio.get_running_loop())
    try:
        yield server
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)
