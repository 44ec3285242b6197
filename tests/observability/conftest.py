"""Fixtures shared by the observability tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest


@pytest.fixture
def cleanups() -> Iterator[Callable[[Callable[[], None]], None]]:
    """Register clean-ups (servers, services a test started), run in reverse order however the test ends."""
    registered: list[Callable[[], None]] = []
    yield registered.append
    for cleanup in reversed(registered):
        cleanup()
