"""How the store answers: JSON bodies, API errors and the API's two timestamp formats.

The reference API is FastAPI: errors are ``{"detail": "..."}`` (or, for a request body
that fails validation, ``{"detail": [{"type", "loc", "msg"}, ...]}``). Its ARC responses
write timestamps as ``datetime.isoformat() + "Z"`` (``...+00:00Z``, offset *and* Z) and its
harvest responses as ``isoformat().replace("+00:00", "Z")``; a client that parses one must
cope with both, so the store reproduces both exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web


class ApiError(Exception):
    """An error answer: status, ``detail`` (a message or validation errors) and extra headers."""

    def __init__(self, status: int, detail: str | list[dict[str, Any]], headers: dict[str, str] | None = None) -> None:
        super().__init__(detail if isinstance(detail, str) else f"{len(detail)} validation error(s)")
        self.status = status
        self.detail = detail
        self.headers = headers


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def error_response(error: ApiError) -> web.Response:
    return json_response({"detail": error.detail}, error.status, error.headers)


def now() -> str:
    """The current time as stored: ISO 8601 with the ``+00:00`` offset."""
    return datetime.now(UTC).isoformat()


def _parsed(stored: str) -> datetime:
    # Older store files wrote ``...Z``; fromisoformat reads both forms.
    return datetime.fromisoformat(stored).astimezone(UTC)


def arc_time(stored: str) -> str:
    """An ARC response timestamp: ``2026-01-01T00:00:00.123456+00:00Z``."""
    return _parsed(stored).isoformat() + "Z"


def harvest_time(stored: str | None) -> str | None:
    """A harvest response timestamp: ``2026-01-01T00:00:00.123456Z``."""
    return None if stored is None else _parsed(stored).isoformat().replace("+00:00", "Z")
