"""Session-scoped real servers for the whole suite, from the same code as ``arcstream dev up``.

Set ``DATABASE_URL`` / ``KAFKA_BOOTSTRAP_SERVERS`` to use existing servers
instead. Every test gets its own database and its own topic prefix, so tests
share the servers without seeing each other's data.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from services.common.config import Settings, load_settings
from services.dev.stack import stack
from services.dev.stack.state import StackState


@pytest.fixture(scope="session")
def dev_stack() -> Iterator[StackState]:
    """PostgreSQL (wal_level=logical) and the Kafka-protocol broker, started once per session.

    Not under pytest's own temporary directory: pytest makes that private to its
    user again at every session start, and as root the PostgreSQL server runs as
    another user that must be able to reach its data directory.
    """
    state_dir = Path(tempfile.mkdtemp(prefix="arcstream-test-stack-"))
    state = stack.up(state_dir, with_store=False)
    try:
        yield state
    finally:
        stack.down(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
def database_url(dev_stack: StackState) -> Iterator[str]:
    """A fresh, empty database for one test."""
    assert dev_stack.postgres is not None
    admin_url = dev_stack.postgres.url
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin_url.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def make_settings(dev_stack: StackState, database_url: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings pointing at the session servers, this test's database and its own topic prefix."""
    assert dev_stack.broker is not None
    prefix = f"t{uuid.uuid4().hex[:10]}"
    bootstrap = dev_stack.broker.url
    # The dev broker's consumer-group timings (joins in ~1.5 s instead of 15 s), as 'dev up' records them.
    group_timings = dev_stack.kafka_client_settings()

    def factory(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "database_url": database_url,
            "state_dir": tmp_path / "state",
            "kafka": {"bootstrap_servers": bootstrap, **group_timings},
            "topics": {"prefix": prefix, "partitions": 3},
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = base[key] | value
            else:
                base[key] = value
        return load_settings(**base)

    return factory


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the developer's own stack/config out of the tests."""
    for name in ("ARCSTREAM_CONFIG",):
        monkeypatch.delenv(name, raising=False)
    if "ARCSTREAM_STATE_DIR" not in os.environ:
        monkeypatch.setenv("ARCSTREAM_STATE_DIR", str(tmp_path / "no-stack"))
