"""The store's HTTP API: the FAIRagro middleware API v3 as it really behaves (``TARGET_API.md``).

Checks run in the API's order (its FastAPI dependencies first, then the body, then the
RDI): 401 no client certificate while required; 415 a body that is not
``application/json``; 406 an ``Accept`` without JSON; 422 a body the API's request models
refuse (``services.store.validation``); 404 an unknown harvest; 400 an unknown RDI; 403
an RDI the certificate does not list. Errors are ``{"detail": ...}``.

Extensions the API lacks answer 404 like the API unless switched on:
``DELETE /v3/arcs/{arc_id}`` (``store.enable_delete``); ``GET /v3/arcs``,
``GET /v3/arcs/{arc_id}`` (the stored bytes) and ``GET /_store/requests`` (every API
request with its query, identifier, status, the ``Retry-After`` a 503 named, the caller's
``traceparent``, store-side monotonic receive/answer times and, with ``store.record_bodies``, the
body) with ``store.test_hooks``.
Fault injection (503 with ``Retry-After``, latency, a body limit) is configured separately.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import orjson
from aiohttp import web

from services.common import tracing
from services.common.config import StoreSettings
from services.common.content_hash import arc_id, content_hash
from services.common.errors import ConfigError
from services.store.auth import Authorizer, ClientCertificate, peer_certificate
from services.store.faults import FaultInjector
from services.store.gitsync import GitSync
from services.store.rawjson import parse_members
from services.store.repository import ArcMeta, ConflictError, Harvest, NotFoundError, Repository
from services.store.responses import ApiError, arc_time, error_response, json_response
from services.store.validation import (
    TerminalStatus,
    body_problem,
    validate_arc_body,
    validate_harvest_body,
    validate_patch_body,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Members = dict[str, tuple[Any, str]]
_UNTIMED_PREFIXES = ("/v3/liveness", "/v3/readiness", "/v3/health", "/_store/")
_WRITE_METHODS = frozenset({"POST", "PATCH", "DELETE"})
#: Set by handlers for the request log: which ARC a request was about, the wait a 503 named, the body.
IDENTIFIER = web.RequestKey("identifier", str)
RETRY_AFTER = web.RequestKey("retry_after", float)
BODY = web.RequestKey("body", str)


def _require_json_body(request: web.Request) -> None:
    if "application/json" not in request.headers.get("Content-Type", ""):
        raise ApiError(415, "Content-Type must be application/json")


def _require_json_answer(request: web.Request) -> None:
    accept = request.headers.get("Accept")
    if accept and "*/*" not in accept and "application/json" not in accept:
        raise ApiError(406, "Accept must be application/json")


def _query_int(request: web.Request, name: str, default: int, low: int, high: int | None = None) -> int:
    """A bounded integer query parameter, refused (422) in FastAPI's words."""
    raw = request.query.get(name)
    if raw is None:
        return default
    problem: tuple[str, str] | None = None
    try:
        value = int(raw)
    except ValueError:
        problem = ("int_parsing", "Input should be a valid integer, unable to parse string as an integer")
    else:
        if value < low:
            problem = ("greater_than_equal", f"Input should be greater than or equal to {low}")
        elif high is not None and value > high:
            problem = ("less_than_equal", f"Input should be less than or equal to {high}")
    if problem is not None:
        raise ApiError(422, [{"type": problem[0], "loc": ["query", name], "msg": problem[1]}])
    return value


def _arc_answer(meta: ArcMeta, status: str, client: ClientCertificate | None, in_harvest: bool) -> dict[str, Any]:
    """The API's ArcResponse; its timestamps end in ``+00:00Z``."""
    return {
        "client_id": client.common_name if client else None,
        "message": "ARC processed successfully" + (" in harvest" if in_harvest else ""),
        "arc_id": meta.arc_id,
        "status": status,
        "metadata": {
            "arc_hash": meta.arc_hash,
            "status": "ACTIVE",
            "first_seen": arc_time(meta.first_seen),
            "last_seen": arc_time(meta.last_seen),
        },
        "events": [
            {"timestamp": arc_time(e["timestamp"]), "type": e["type"], "message": e.get("message", "")}
            for e in meta.events
        ],
    }


class StoreApp:
    """Request handlers bound to one :class:`Repository`, one :class:`FaultInjector` and one :class:`Authorizer`."""

    def __init__(self, repo: Repository, settings: StoreSettings) -> None:
        self.repo = repo
        self.settings = settings
        self.faults = FaultInjector(settings)
        self.auth = Authorizer(settings.known_rdis, require_client_cert=settings.tls_client_ca is not None)
        self.git_sync = GitSync(repo) if settings.git_sync else None
        #: The request log (``GET /_store/requests``); kept only with ``test_hooks``.
        self.requests: list[dict[str, Any]] = []

    def build(self) -> web.Application:
        # aiohttp's own limit sits above ours so an oversized body gets our 413 with the hint.
        app = web.Application(client_max_size=self.faults.max_body_bytes + 1, middlewares=[self._middleware])
        app.router.add_post("/v3/arcs", self.post_arc)
        # The API has no /v3/arcs/{arc_id} at all (404 for any method); both extensions answer so when off.
        app.router.add_delete("/v3/arcs/{arc_id}", self.delete_arc)
        app.router.add_get("/v3/arcs/{arc_id}", self.get_arc)
        app.router.add_post("/v3/harvests", self.create_harvest)
        app.router.add_get("/v3/harvests", self.list_harvests)
        app.router.add_get("/v3/harvests/{harvest_id}", self.get_harvest)
        app.router.add_patch("/v3/harvests/{harvest_id}", self.patch_harvest)
        app.router.add_delete("/v3/harvests/{harvest_id}", self.cancel_harvest)
        app.router.add_post("/v3/harvests/{harvest_id}/arcs", self.post_harvest_arc)
        app.router.add_post("/v3/harvests/{harvest_id}/complete", self.complete_harvest)
        for name in ("liveness", "readiness", "health"):
            app.router.add_get(f"/v3/{name}", self.health)
        if self.settings.test_hooks:
            app.router.add_get("/v3/arcs", self.list_arcs)
            app.router.add_get("/_store/requests", self.request_log)
        if self.git_sync is not None:
            app.on_startup.append(self._start_git_sync)
            app.on_cleanup.append(self._stop_git_sync)
        return app

    async def _start_git_sync(self, app: web.Application) -> None:
        assert self.git_sync is not None
        self.git_sync.start()

    async def _stop_git_sync(self, app: web.Application) -> None:
        assert self.git_sync is not None
        await self.git_sync.stop()

    # -- cross-cutting: latency, body limit, errors, request log -------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        received = time.monotonic()
        timed = not request.path.startswith(_UNTIMED_PREFIXES)
        if timed and self.faults.latency_s:
            await asyncio.sleep(self.faults.latency_s)
        length = request.content_length
        try:
            if length is not None and length > self.faults.max_body_bytes:
                raise ApiError(
                    413,
                    f"request body of {length} bytes exceeds this server's limit of {self.faults.max_body_bytes} bytes",
                )
            response = await handler(request)
        except ApiError as exc:
            response = error_response(exc)
        except web.HTTPException as exc:
            response = error_response(ApiError(exc.status, exc.reason))
        if timed and self.settings.test_hooks:
            self._log(request, response.status, received)
        return response

    def _log(self, request: web.Request, status: int, received: float) -> None:
        certificate = peer_certificate(request)
        entry = {
            "client": certificate.common_name if certificate else None,
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "identifier": request.get(IDENTIFIER),
            "status": status,
            "retry_after": request.get(RETRY_AFTER),
            "traceparent": request.headers.get(tracing.TRACEPARENT),
            "received": received,
            "answered": time.monotonic(),
        }
        if self.settings.record_bodies:
            entry["body"] = request.get(BODY)
        self.requests.append(entry)

    def _inject_overload(self, request: web.Request) -> None:
        """The API's admission control (503 + integer ``Retry-After``), on demand."""
        if request.method not in _WRITE_METHODS or not self.faults.should_fail():
            return
        header, seconds = self.faults.retry_after()
        request[RETRY_AFTER] = seconds
        raise ApiError(503, "injected overload, retry later", {"Retry-After": header})

    async def _members(self, request: web.Request) -> Members:
        """The JSON object body with each member's raw text (so an ARC is kept byte for byte); else 422."""
        text = (await request.read()).decode("utf-8", errors="replace")
        if self.settings.record_bodies:
            request[BODY] = text
        if not text.strip():
            raise ApiError(422, [body_problem("missing")])
        try:
            return await asyncio.to_thread(parse_members, text)
        except ValueError:
            try:
                orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise ApiError(422, [body_problem("json_invalid", exc.pos)]) from None
            raise ApiError(422, [body_problem("model_attributes_type")]) from None

    def _harvest(self, request: web.Request) -> Harvest:
        try:
            return self.repo.harvest(request.match_info["harvest_id"])
        except NotFoundError as exc:
            raise ApiError(404, str(exc)) from exc

    # -- ARCs ----------------------------------------------------------------------------------

    async def post_arc(self, request: web.Request) -> web.Response:
        client = self.auth.client(request)
        _require_json_body(request)
        _require_json_answer(request)
        members = await self._members(request)
        rdi, identifier = validate_arc_body({key: value for key, (value, _) in members.items()}, with_rdi=True)
        assert rdi is not None
        request[IDENTIFIER] = identifier
        self.auth.authorize(rdi, client)
        return await self._submit(request, client, members["arc"], rdi, identifier, harvest_id=None)

    async def post_harvest_arc(self, request: web.Request) -> web.Response:
        client = self.auth.client(request)
        _require_json_body(request)
        _require_json_answer(request)
        members = await self._members(request)
        _, identifier = validate_arc_body({key: value for key, (value, _) in members.items()}, with_rdi=False)
        request[IDENTIFIER] = identifier
        harvest = self._harvest(request)
        self.auth.authorize(harvest.rdi, client)
        return await self._submit(request, client, members["arc"], harvest.rdi, identifier, harvest.harvest_id)

    async def _submit(
        self,
        request: web.Request,
        client: ClientCertificate | None,
        arc: tuple[Any, str],
        rdi: str,
        identifier: str,
        harvest_id: str | None,
    ) -> web.Response:
        self._inject_overload(request)
        arc_json = arc[1].encode("utf-8")
        arc_hash = await asyncio.to_thread(content_hash, arc[0])
        the_id = arc_id(identifier, rdi)
        try:
            result = await self.repo.put_arc(the_id, identifier, rdi, arc_hash, arc_json, harvest_id)
        except ConflictError as exc:
            raise ApiError(409, str(exc)) from exc
        if result.changed and self.git_sync is not None:
            self.git_sync.submit(the_id, arc_json)
        return json_response(_arc_answer(result.meta, result.status, client, in_harvest=harvest_id is not None))

    async def delete_arc(self, request: web.Request) -> web.Response:
        if not self.settings.enable_delete:
            raise ApiError(404, "Not Found")  # the API has no such route
        self._inject_overload(request)
        try:
            meta = await self.repo.delete_arc(request.match_info["arc_id"])
        except NotFoundError as exc:
            raise ApiError(404, str(exc)) from exc
        request[IDENTIFIER] = meta.identifier
        return json_response({"arc_id": meta.arc_id, "status": "deleted", "message": "ARC deleted"})

    # -- harvests ------------------------------------------------------------------------------

    async def create_harvest(self, request: web.Request) -> web.Response:
        client = self.auth.client(request)
        _require_json_body(request)
        _require_json_answer(request)
        members = await self._members(request)
        rdi, expected = validate_harvest_body({key: value for key, (value, _) in members.items()})
        self.auth.authorize(rdi, client)
        self._inject_overload(request)
        harvest = await self.repo.create_harvest(rdi, expected, client.common_name if client else None)
        return json_response(harvest.response())

    async def list_harvests(self, request: web.Request) -> web.Response:
        client = self.auth.client(request)
        _require_json_answer(request)
        skip = _query_int(request, "skip", 0, 0)
        limit = _query_int(request, "limit", 100, 1, 1000)
        rdi = request.query.get("rdi") or None
        if rdi is not None:
            self.auth.authorize(rdi, client)
        return json_response([h.response() for h in self.repo.harvests_of(rdi, skip, limit)])

    async def get_harvest(self, request: web.Request) -> web.Response:
        client = self.auth.client(request)
        _require_json_answer(request)
        harvest = self._harvest(request)
        try:
            self.auth.authorize(harvest.rdi, client)
        except ApiError as exc:
            if exc.status in (401, 403):  # the API does not reveal that a harvest exists
                raise ApiError(404, "Harvest not found") from exc
            raise
        return json_response(harvest.response())

    async def patch_harvest(self, request: web.Request) -> web.Response:
        client = self.auth.client(request)
        _require_json_body(request)
        _require_json_answer(request)
        status = validate_patch_body({key: value for key, (value, _) in (await self._members(request)).items()})
        return await self._transition(request, client, status)

    async def complete_harvest(self, request: web.Request) -> web.Response:
        """``POST /v3/harvests/{id}/complete`` (deprecated, used by the official client 12.3.0): PATCH COMPLETED."""
        client = self.auth.client(request)
        _require_json_answer(request)
        return await self._transition(request, client, "COMPLETED")

    async def _transition(
        self, request: web.Request, client: ClientCertificate | None, status: TerminalStatus
    ) -> web.Response:
        harvest = self._harvest(request)
        self.auth.authorize(harvest.rdi, client)
        self._inject_overload(request)
        try:
            harvest = await self.repo.transition(harvest, status)
        except ConflictError as exc:
            raise ApiError(409, str(exc)) from exc
        return json_response(harvest.response())

    async def cancel_harvest(self, request: web.Request) -> web.Response:
        """``DELETE /v3/harvests/{id}`` (deprecated): cancels, whatever the current status (as the API does)."""
        client = self.auth.client(request)
        harvest = self._harvest(request)
        self.auth.authorize(harvest.rdi, client)
        self._inject_overload(request)
        await self.repo.cancel(harvest)
        return web.Response(status=204)

    # -- health and test hooks -----------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return json_response({"status": "ok", "services": {"store_directory": self.repo.arc_dir.is_dir()}})

    async def list_arcs(self, request: web.Request) -> web.Response:
        rdi = request.query.get("rdi")
        return json_response([asdict(meta) for meta in self.repo.arcs.values() if rdi is None or meta.rdi == rdi])

    async def get_arc(self, request: web.Request) -> web.Response:
        if not self.settings.test_hooks:
            raise ApiError(404, "Not Found")
        try:
            raw = await self.repo.read_arc(request.match_info["arc_id"])
        except NotFoundError as exc:
            raise ApiError(404, str(exc)) from exc
        return web.Response(body=raw, content_type="application/json")

    async def request_log(self, request: web.Request) -> web.Response:
        return json_response(self.requests)


def server_ssl_context(settings: StoreSettings) -> ssl.SSLContext | None:
    """HTTPS when a certificate is configured; with a client CA, a certificate a client sends must verify.

    A client without certificate still completes the handshake (``CERT_OPTIONAL``) and gets
    the API's 401 ``Client certificate required``.
    """
    if settings.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key) if settings.tls_key else None)
        if settings.tls_client_ca is not None:
            context.load_verify_locations(cafile=str(settings.tls_client_ca))
            context.verify_mode = ssl.CERT_OPTIONAL
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"store TLS material cannot be loaded: {exc}") from exc
    return context


async def serve(settings: StoreSettings, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set."""
    repo = await Repository.open(settings.directory)
    context = server_ssl_context(settings)
    tracing.instrument_http_server()
    runner = web.AppRunner(StoreApp(repo, settings).build(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, shutdown_timeout=5.0, ssl_context=context)
    await site.start()
    scheme = "https" if context else "http"
    log.info(
        "ARC store on %s://%s:%d serving %s (known RDIs: %s)",
        scheme,
        settings.host,
        settings.port,
        settings.directory,
        ", ".join(sorted(settings.known_rdis)),
    )
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
