"""A fake of the real ARC store API at capacity (admission control), named as such: the one fault kept fake.

Why a fake: the probe only reads (``GET /v3/harvests``), and the local store cannot
answer a read with 503. Its ``--failure-rate`` injects overload into write requests
only (POST, PATCH, DELETE; ``services/store/app.py`` ``_inject_overload``), whereas the
real API's admission control (``fairagro/m4.2_advanced_middleware_api``,
``api/admission_control.py``) is an ASGI middleware in front of every route but the
health probes: at capacity it answers any method 503 ``{"detail": "Service temporarily
unavailable"}`` with an integer ``Retry-After``, before the certificate or the RDI is
looked at. This fake answers exactly that, to every request, and keeps what arrived.
Every other answer of the doctor and probe tests comes from a real ``arcstream store``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus

from aiohttp import web

from tests.support import serve_app


@dataclass
class FakeOverloadedApi:
    """Answers every request as the real API at capacity does; ``requests`` holds (method, path, query) of each."""

    retry_after_s: int = 5
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    async def reject(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path, dict(request.query)))
        return web.json_response(
            {"detail": "Service temporarily unavailable"},
            status=HTTPStatus.SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(self.retry_after_s)},
        )


@asynccontextmanager
async def serving(api: FakeOverloadedApi) -> AsyncIterator[str]:
    """Serve ``api`` on a free loopback port; yield its base URL."""
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", api.reject)
    async with serve_app(app) as url:
        yield url
