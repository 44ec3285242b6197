"""A stand-in for the real ARC store API's RDI and certificate checks (a fake, named as such).

Why a fake: the local store (``services/store``) does not know RDIs or read certificates
yet, so it cannot answer 400/401/403; the real API cannot be reached from here. This
stand-in answers ``GET /v3/harvests`` exactly as the real API's ``list_harvests`` does
(``fairagro/m4.2_advanced_middleware_api``, ``api/v3/harvests.py`` with
``api/common/dependencies.py``): certificate first (401), then ``Accept`` (406), then
``validate_rdi_authorized`` (400 unknown RDI, 403 not in the certificate), then 200.
Once the store knows RDIs, the doctor and probe tests should start it with its RDI flags
instead and keep only the certificate cases here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus

from aiohttp import web

from services.dev.stack.ports import free_port


@dataclass
class ApiStandIn:
    """What the server is configured with (``known_rdis``, ``require_client_cert``) and what the proxy saw."""

    known_rdis: set[str]
    require_client_cert: bool = False
    #: RDIs the client certificate lists (after the proxy verified it); ``None``: no certificate came.
    certificate_rdis: set[str] | None = None
    #: Answer 503 with Retry-After (admission control).
    overloaded: bool = False
    #: (method, path, query) of every request, to show the probe only reads.
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    async def list_harvests(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path, dict(request.query)))
        if self.overloaded:
            return _detail(HTTPStatus.SERVICE_UNAVAILABLE, "Server overloaded", headers={"Retry-After": "5"})
        if self.require_client_cert and self.certificate_rdis is None:
            return _detail(HTTPStatus.UNAUTHORIZED, "Client certificate required")
        accept = request.headers.get("accept")
        if accept and "*/*" not in accept and "application/json" not in accept:
            return _detail(HTTPStatus.NOT_ACCEPTABLE, "Accept must be application/json")
        rdi = request.query.get("rdi")
        if rdi:
            if rdi not in self.known_rdis:
                return _detail(HTTPStatus.BAD_REQUEST, f"RDI '{rdi}' is not recognized.")
            authorized = (self.known_rdis or {"*"}) if not self.require_client_cert else self.certificate_rdis or set()
            if "*" not in authorized and rdi not in authorized:
                return _detail(HTTPStatus.FORBIDDEN, f"RDI '{rdi}' not authorized.")
        return web.json_response([])


def _detail(status: HTTPStatus, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"detail": detail}, status=status, headers=headers)


@asynccontextmanager
async def serving(api: ApiStandIn) -> AsyncIterator[str]:
    """Serve ``api`` on a free loopback port; yield its base URL."""
    app = web.Application()
    app.router.add_get("/v3/harvests", api.list_harvests)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
