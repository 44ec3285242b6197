"""``arcstream_target_up`` after each kind of answer from a real HTTP server (and from none)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

from aiohttp import web

from services.common.config import UploaderSettings
from services.common.metrics import REGISTRY
from services.dev.stack.ports import free_port
from services.uploader.target import AttemptError, TargetClient
from tests.observability.scrape import parse, value
from tests.support import serve_app

ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def answering_server() -> AsyncIterator[str]:
    """``GET /status/N`` answers N; ``GET /slow`` answers after longer than the client waits."""

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="{}")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="{}")

    app = web.Application()
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/slow", slow)
    async with serve_app(app) as url:
        yield url


async def target_up_after(client: TargetClient, path: str) -> float | None:
    with suppress(AttemptError):
        await client.call("GET", path)
    return REGISTRY.get_sample_value("arcstream_target_up")


def test_target_up_follows_the_last_answer() -> None:
    steps = ["/status/200", "/status/503", "/status/404", "/status/502", "/status/429", "/status/504"]
    steps += ["/status/201", "/slow", "/status/200", "refused"]

    async def run() -> list[tuple[str, float | None]]:
        async with answering_server() as url:
            # One attempt per ARC, and an outage budget of a millisecond: each step ends at once.
            quick = {"max_attempts": 1, "outage_budget_s": 0.001, "backoff_initial_s": 0.01, "backoff_max_s": 0.02}
            answering = TargetClient(UploaderSettings(target_url=url, read_timeout_s=0.3, **quick))
            nobody = TargetClient(UploaderSettings(target_url=f"http://127.0.0.1:{free_port()}", **quick))
            try:
                return [
                    (step, await target_up_after(*((nobody, "/") if step == "refused" else (answering, step))))
                    for step in steps
                ]
            finally:
                await answering.aclose()
                await nobody.aclose()

    assert asyncio.run(run()) == [
        ("/status/200", 1.0),
        ("/status/503", 0.0),
        ("/status/404", 1.0),  # an answer about this ARC: the target is there
        ("/status/502", 0.0),
        ("/status/429", 1.0),  # busy, but answering
        ("/status/504", 0.0),
        ("/status/201", 1.0),
        ("/slow", 0.0),  # no answer within the read timeout
        ("/status/200", 1.0),
        ("refused", 0.0),  # nothing listens
    ]


def test_target_up_is_zero_before_the_first_request() -> None:
    """A fresh process (an uploader that had nothing to deliver yet) exposes the series, at 0."""
    script = (
        "from prometheus_client import generate_latest; from services.common.metrics import REGISTRY; "
        "print(generate_latest(REGISTRY).decode())"
    )
    text = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert value(parse(text), "arcstream_target_up") == 0
