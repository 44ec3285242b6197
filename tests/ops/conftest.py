"""Fixtures of the ops tests: ARC store processes (the same code as ``arcstream dev up``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.dev.stack import stack
from services.dev.stack.processes import terminate
from services.dev.stack.state import ServerRecord


@pytest.fixture
def start_store(tmp_path: Path) -> Iterator[Callable[..., ServerRecord]]:
    """Start ``arcstream store`` processes (``name``, then store flags), each over its own directory.

    With ``--tls-cert`` the store serves HTTPS, and the record's URL says so.
    """
    started: list[ServerRecord] = []

    def factory(name: str, *flags: str) -> ServerRecord:
        record = stack.start_store(tmp_path / name, extra_args=flags)
        started.append(record)
        if "--tls-cert" in flags:
            record = record.model_copy(update={"url": record.url.replace("http://", "https://", 1)})
        return record

    yield factory
    for record in started:
        terminate(record.pid)
