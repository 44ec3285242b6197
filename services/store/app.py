"""The store's HTTP API: the FAIRagro v3 subset (arcs, harvests, health) plus ARC delete and test hooks.

Reference semantics kept (see ``docs/uploader.md``): ARC id = sha256("identifier:rdi");
identical content answers ``updated`` with the unchanged hash; a harvest answers
409 for an identifier it already holds with different content and for a closed
harvest; a payload without the RO-Crate root answers 422. Errors are
``{"detail": ...}`` like the reference (FastAPI) implementation.

Additions for tests and demos: ``DELETE /v3/arcs/{arc_id}``, ``GET /v3/arcs/{arc_id}``
(the stored bytes), ``GET /_store/requests`` (every API request with its
identifier, status and store-side monotonic receive/answer times, so a test can
check that no retry came before ``Retry-After`` allowed) and fault injection.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from services.common.config import StoreSettings
from services.common.content_hash import arc_id, content_hash
from services.common.errors import ConfigError
from services.store.faults import FaultInjector
from services.store.rawjson import parse_members
from services.store.repository import TERMINAL, ConflictError, NotFoundError, Repository
from services.store.rocrate import InvalidArcError, arc_identifier

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_UNTIMED_PREFIXES = ("/v3/liveness", "/v3/readiness", "/v3/health", "/_store/")
_WRITE_METHODS = frozenset({"POST", "PATCH", "DELETE"})
#: Set by handlers for the request log: which ARC a request was about, and the wait a 503 named.
IDENTIFIER = web.RequestKey("identifier", str)
RETRY_AFTER = web.RequestKey("retry_after", float)


def _client_cn(request: web.Request) -> str | None:
    """Common name of the verified client certificate (mTLS), as the reference API's client id."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    certificate = ssl_object.getpeercert() if ssl_object is not None else None
    for rdn in (certificate or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    return _json({"detail": detail}, status, headers)


class StoreApp:
    """Request handlers bound to one :class:`Repository` and one :class:`FaultInjector`."""

    def __init__(self, repo: Repository, settings: StoreSettings) -> None:
        self.repo = repo
        self.faults = FaultInjector(settings)
        self.requests: list[dict[str, Any]] = []

    def build(self) -> web.Application:
        # aiohttp's own limit sits above ours so an oversized body gets our 413 with the hint.
        app = web.Application(client_max_size=self.faults.max_body_bytes + 1, middlewares=[self._middleware])
        app.router.add_post("/v3/arcs", self.post_arc)
        app.router.add_get("/v3/arcs", self.list_arcs)
        app.router.add_get("/v3/arcs/{arc_id}", self.get_arc)
        app.router.add_delete("/v3/arcs/{arc_id}", self.delete_arc)
        app.router.add_post("/v3/harvests", self.create_harvest)
        app.router.add_get("/v3/harvests", self.list_harvests)
        app.router.add_get("/v3/harvests/{harvest_id}", self.get_harvest)
        app.router.add_patch("/v3/harvests/{harvest_id}", self.patch_harvest)
        app.router.add_delete("/v3/harvests/{harvest_id}", self.cancel_harvest)
        app.router.add_post("/v3/harvests/{harvest_id}/arcs", self.post_harvest_arc)
        for name in ("liveness", "readiness", "health"):
            app.router.add_get(f"/v3/{name}", self.health)
        app.router.add_get("/_store/requests", self.request_log)
        return app

    # -- cross-cutting: latency, body limit, injected 503, request log -------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        received = time.monotonic()
        timed = not request.path.startswith(_UNTIMED_PREFIXES)
        if timed and self.faults.latency_s:
            await asyncio.sleep(self.faults.latency_s)
        length = request.content_length
        if length is not None and length > self.faults.max_body_bytes:
            response: web.StreamResponse = _error(
                413,
                f"request body of {length} bytes exceeds this server's limit of {self.faults.max_body_bytes} bytes",
            )
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = _error(exc.status, exc.reason)
        if timed:
            entry = {
                "client": _client_cn(request),
                "method": request.method,
                "path": request.path,
                "identifier": request.get(IDENTIFIER),
                "status": response.status,
                "retry_after": request.get(RETRY_AFTER),
                "received": received,
                "answered": time.monotonic(),
            }
            self.requests.append(entry)
        return response

    def _injected_failure(self, request: web.Request) -> web.Response | None:
        if request.method not in _WRITE_METHODS or not self.faults.should_fail():
            return None
        header, seconds = self.faults.retry_after()
        request[RETRY_AFTER] = seconds
        return _error(503, "injected overload, retry later", {"Retry-After": header})

    async def _body(self, request: web.Request) -> dict[str, tuple[Any, str]]:
        raw = await request.read()
        try:
            return await asyncio.to_thread(parse_members, raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise web.HTTPBadRequest(reason=f"request body is not a JSON object: {exc}") from exc

    # -- ARCs ----------------------------------------------------------------------------------

    async def post_arc(self, request: web.Request) -> web.Response:
        members = await self._body(request)
        rdi = members.get("rdi", (None, ""))[0]
        if not isinstance(rdi, str) or not rdi:
            return _error(422, "field 'rdi' is required")
        return await self._submit(request, members, rdi, harvest_id=None)

    async def post_harvest_arc(self, request: web.Request) -> web.Response:
        members = await self._body(request)
        try:
            harvest = self.repo.harvest(request.match_info["harvest_id"])
        except NotFoundError as exc:
            return _error(404, str(exc))
        return await self._submit(request, members, harvest.rdi, harvest_id=harvest.harvest_id)

    async def _submit(
        self, request: web.Request, members: dict[str, tuple[Any, str]], rdi: str, harvest_id: str | None
    ) -> web.Response:
        if "arc" not in members:
            return _error(422, "field 'arc' is required")
        arc, raw = members["arc"]
        try:
            identifier = arc_identifier(arc)
        except InvalidArcError as exc:
            if harvest_id is not None:
                self.repo.harvest(harvest_id).errors += 1
            return _error(422, f"invalid ARC RO-Crate: {exc}")
        request[IDENTIFIER] = identifier
        failure = self._injected_failure(request)
        if failure is not None:
            return failure
        arc_hash = await asyncio.to_thread(content_hash, arc)
        the_id = arc_id(identifier, rdi)
        if harvest_id is not None:
            harvest = self.repo.harvest(harvest_id)
            try:
                self.repo.check_harvest_arc(harvest, identifier, arc_hash)
            except ConflictError as exc:
                return _error(409, str(exc))
        result = await self.repo.put_arc(the_id, identifier, rdi, arc_hash, raw.encode("utf-8"))
        if harvest_id is not None:
            first = result.status if result.changed else "unchanged"
            await self.repo.record_harvest_arc(self.repo.harvest(harvest_id), identifier, arc_hash, first)
        meta = result.meta
        return _json(
            {
                "client_id": None,
                "message": "ARC processed successfully" + (" in harvest" if harvest_id else ""),
                "arc_id": the_id,
                "status": result.status,
                "metadata": {
                    "arc_hash": meta.arc_hash,
                    "status": "ACTIVE",
                    "first_seen": meta.first_seen,
                    "last_seen": meta.last_seen,
                },
                "events": [
                    {"timestamp": event["timestamp"], "type": event["type"], "message": ""} for event in meta.events
                ],
            }
        )

    async def list_arcs(self, request: web.Request) -> web.Response:
        rdi = request.query.get("rdi")
        return _json(
            [
                {
                    "arc_id": meta.arc_id,
                    "identifier": meta.identifier,
                    "rdi": meta.rdi,
                    "arc_hash": meta.arc_hash,
                }
                for meta in self.repo.arcs.values()
                if rdi is None or meta.rdi == rdi
            ]
        )

    async def get_arc(self, request: web.Request) -> web.Response:
        try:
            raw = await self.repo.read_arc(request.match_info["arc_id"])
        except NotFoundError as exc:
            return _error(404, str(exc))
        return web.Response(body=raw, content_type="application/json")

    async def delete_arc(self, request: web.Request) -> web.Response:
        failure = self._injected_failure(request)
        if failure is not None:
            return failure
        try:
            meta = await self.repo.delete_arc(request.match_info["arc_id"])
        except NotFoundError as exc:
            return _error(404, str(exc))
        request[IDENTIFIER] = meta.identifier
        return _json({"arc_id": meta.arc_id, "status": "deleted", "message": "ARC deleted"})

    # -- harvests ------------------------------------------------------------------------------

    async def create_harvest(self, request: web.Request) -> web.Response:
        members = await self._body(request)
        rdi = members.get("rdi", (None, ""))[0]
        expected = members.get("expected_datasets", (None, ""))[0]
        if not isinstance(rdi, str) or not rdi:
            return _error(422, "field 'rdi' is required")
        if expected is not None and not isinstance(expected, int):
            return _error(422, "field 'expected_datasets' must be an integer")
        failure = self._injected_failure(request)
        if failure is not None:
            return failure
        harvest = await self.repo.create_harvest(rdi, expected)
        return _json(harvest.response())

    async def list_harvests(self, request: web.Request) -> web.Response:
        rdi = request.query.get("rdi")
        return _json([h.response() for h in self.repo.harvests.values() if rdi is None or h.rdi == rdi])

    async def get_harvest(self, request: web.Request) -> web.Response:
        try:
            return _json(self.repo.harvest(request.match_info["harvest_id"]).response())
        except NotFoundError as exc:
            return _error(404, str(exc))

    async def patch_harvest(self, request: web.Request) -> web.Response:
        members = await self._body(request)
        status = members.get("status", (None, ""))[0]
        if status not in TERMINAL:
            return _error(422, "field 'status' must be one of COMPLETED, CANCELLED, FAILED")
        failure = self._injected_failure(request)
        if failure is not None:
            return failure
        try:
            harvest = self.repo.harvest(request.match_info["harvest_id"])
            harvest = await self.repo.transition(harvest, status)
        except NotFoundError as exc:
            return _error(404, str(exc))
        except ConflictError as exc:
            return _error(409, str(exc))
        return _json(harvest.response())

    async def cancel_harvest(self, request: web.Request) -> web.Response:
        try:
            harvest = self.repo.harvest(request.match_info["harvest_id"])
            await self.repo.transition(harvest, "CANCELLED")
        except NotFoundError as exc:
            return _error(404, str(exc))
        except ConflictError as exc:
            return _error(409, str(exc))
        return web.Response(status=204)

    # -- health and test hooks -----------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return _json({"status": "ok", "services": {"store_directory": self.repo.arc_dir.is_dir()}})

    async def request_log(self, request: web.Request) -> web.Response:
        return _json(self.requests)


def server_ssl_context(settings: StoreSettings) -> ssl.SSLContext | None:
    """HTTPS when a certificate is configured; a client CA makes client certificates mandatory (mTLS)."""
    if settings.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key) if settings.tls_key else None)
        if settings.tls_client_ca is not None:
            context.load_verify_locations(cafile=str(settings.tls_client_ca))
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"store TLS material cannot be loaded: {exc}") from exc
    return context


async def serve(settings: StoreSettings, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set."""
    repo = await Repository.open(settings.directory)
    context = server_ssl_context(settings)
    runner = web.AppRunner(StoreApp(repo, settings).build(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, shutdown_timeout=5.0, ssl_context=context)
    await site.start()
    scheme = "https" if context else "http"
    log.info("ARC store on %s://%s:%d serving %s", scheme, settings.host, settings.port, settings.directory)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
