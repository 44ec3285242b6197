"""Headless Chromium (Debian's ``chromium``) driven over the DevTools protocol, for what a person sees.

Just enough of the protocol for page tests: open a URL and wait for its load
event, evaluate JavaScript in the page (``innerText`` is the rendered text, so
hidden elements do not count), and save a screenshot. The WebSocket client is
aiohttp's (already installed); no browser is downloaded - ``.ci/run`` installs
``chromium``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

#: Chromium as root in a container: no sandbox, no GPU, nothing phoning home, a fresh profile.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
)


class Chromium:
    """``async with Chromium(profile_dir) as browser: await browser.open(url)``."""

    def __init__(self, profile_dir: Path, width: int = 1280, height: int = 900) -> None:
        binary = shutil.which("chromium")
        assert binary, "chromium is missing: apt-get install -y chromium (.ci/run does)"
        self._profile = profile_dir
        self._args = [binary, *FLAGS, f"--user-data-dir={profile_dir}", f"--window-size={width},{height}"]
        self._process: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None
        self._socket: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: dict[str, asyncio.Event] = {}

    async def __aenter__(self) -> Chromium:
        self._profile.mkdir(parents=True, exist_ok=True)
        log = await asyncio.to_thread((self._profile.parent / "chromium.log").open, "wb")
        with log:
            self._process = await asyncio.create_subprocess_exec(
                *self._args, "about:blank", stdout=log, stderr=asyncio.subprocess.STDOUT
            )
        port = await self._devtools_port()
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        page = next(target for target in targets if target["type"] == "page")
        self._socket = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        await self.send("Page.enable")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._socket is not None:
            await self._socket.close()
        if self._session is not None:
            await self._session.close()
        if self._process is not None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), timeout=30)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        assert self._socket is not None
        message_id = next(self._ids)
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[message_id] = reply
        await self._socket.send_json({"id": message_id, "method": method, "params": params})
        answer = await asyncio.wait_for(reply, timeout=60)
        assert "error" not in answer, f"{method}: {answer['error']}"
        result: dict[str, Any] = answer.get("result", {})
        return result

    async def open(self, url: str) -> None:
        """Navigate and wait until the page (and what it loads) is there."""
        loaded = self._events.setdefault("Page.loadEventFired", asyncio.Event())
        loaded.clear()
        navigation = await self.send("Page.navigate", url=url)
        assert "errorText" not in navigation, f"{url}: {navigation['errorText']}"
        await asyncio.wait_for(loaded.wait(), timeout=60)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> Path:
        """The whole page as PNG (beyond the window when it is longer)."""
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))
        return path

    async def _devtools_port(self) -> int:
        """Chromium writes the port it chose to ``DevToolsActivePort`` in the profile."""
        marker = self._profile / "DevToolsActivePort"
        for _ in range(600):
            assert self._process is not None and self._process.returncode is None, "chromium exited at start"
            if marker.exists() and (lines := marker.read_text().splitlines()):
                return int(lines[0])
            await asyncio.sleep(0.1)
        raise AssertionError("chromium did not open its DevTools port within 60 s")

    async def _read(self) -> None:
        assert self._socket is not None
        async for message in self._socket:
            data = message.json()
            if "id" in data:
                reply = self._replies.pop(data["id"], None)
                if reply is not None and not reply.done():
                    reply.set_result(data)
            elif data.get("method") in self._events:
                self._events[data["method"]].set()
