"""Fixtures of the ops tests: ARC store processes (the same code as ``arcstream dev up``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.common.devstack import stack
from services.common.devstack.processes import terminate
from services.common.devstack.state import ServerRecord


@pytest.fixture
def start_store(tmp_path: Path) -> Iterator[Callable[[str], ServerRecord]]:
    """Start ``arcstream store`` processes, each over its own directory; stopped after the test."""
    started: list[ServerRecord] = []

    def factory(name: str) -> ServerRecord:
        record = stack.start_store(tmp_path / name)
        started.append(record)
        return record

    yield factory
    for record in started:
        terminate(record.pid)
