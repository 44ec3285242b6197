"""Helpers every test package uses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def until(condition: Callable[[], Awaitable[bool]], what: str = "condition", limit_s: float = 120.0) -> None:
    """Poll until ``condition()`` holds; the limit only bounds a hung test, it asserts nothing about speed."""
    deadline = time.monotonic() + limit_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.3)
