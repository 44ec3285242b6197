"""``arcstream connect register``: create or update a Kafka Connect connector and wait until it runs.

The compose deployment registers the Debezium connector this way on every
start. ``PUT /connectors/<name>/config`` creates or updates, so registering is
idempotent, and a changed connector file takes effect on the next start. The
command only returns success once every task reports ``RUNNING``: a connector
that fails (wrong password, ``wal_level`` not logical) fails the start with
Connect's own error instead of leaving a silent gap in the change stream.

Secrets stay out of the file: Connect resolves ``${env:POSTGRES_PASSWORD}``
from its own environment (the compose file enables the ``env`` config provider).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from services.common.errors import ConfigError, FatalError


class ConnectorError(FatalError):
    """Kafka Connect is unreachable, refused the configuration, or the connector failed."""


def load_connector(path: Path) -> tuple[str, dict[str, str]]:
    """Name and config from ``{"name": ..., "config": {...}}`` (the form Connect's POST takes)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"connector file {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"connector file {path} is not valid JSON: {exc}") from exc
    config = data.get("config") if isinstance(data, dict) else None
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name or not isinstance(config, dict):
        raise ConfigError(f'connector file {path} must be {{"name": "...", "config": {{...}}}}')
    if "connector.class" not in config:
        raise ConfigError(f"connector file {path}: config has no connector.class")
    return name, {str(key): str(value) for key, value in config.items()}


def register(
    url: str,
    name: str,
    config: dict[str, str],
    *,
    timeout_s: float = 120.0,
    poll_s: float = 1.0,
) -> tuple[str, dict[str, Any]]:
    """Create or update ``name``; wait until it and its tasks run. Return ("created"|"updated", status)."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url.rstrip("/"), timeout=10.0) as client:
        response = _until(deadline, poll_s, lambda: client.put(f"/connectors/{name}/config", json=config))
        if response.status_code not in (200, 201):
            raise ConnectorError(f"Kafka Connect refused connector {name!r}: {_error(response)}")
        action = "created" if response.status_code == 201 else "updated"
        while True:
            status = _status(client, name, deadline, poll_s)
            states = [status.get("connector", {}).get("state")] + [t.get("state") for t in status.get("tasks", [])]
            failed = [t for t in [status.get("connector", {}), *status.get("tasks", [])] if t.get("state") == "FAILED"]
            if failed:
                trace = str(failed[0].get("trace") or "no trace").strip().splitlines()[0]
                raise ConnectorError(f"connector {name!r} failed: {trace}")
            if status.get("tasks") and all(state == "RUNNING" for state in states):
                return action, status
            if time.monotonic() >= deadline:
                raise ConnectorError(f"connector {name!r} not running after {timeout_s:.0f}s (states: {states})")
            time.sleep(poll_s)


def _status(client: httpx.Client, name: str, deadline: float, poll_s: float) -> dict[str, Any]:
    response = _until(deadline, poll_s, lambda: client.get(f"/connectors/{name}/status"))
    if response.status_code == 404:  # just created: the status appears a moment later
        return {}
    if response.status_code != 200:
        raise ConnectorError(f"cannot read status of connector {name!r}: {_error(response)}")
    status: dict[str, Any] = response.json()
    return status


def _until(deadline: float, poll_s: float, call: Any) -> httpx.Response:
    """Retry while Connect is unreachable or rebalancing (409), until the deadline."""
    while True:
        try:
            response: httpx.Response = call()
        except httpx.TransportError as exc:
            if time.monotonic() >= deadline:
                raise ConnectorError(f"cannot reach Kafka Connect: {exc}") from exc
        else:
            if response.status_code != 409 or time.monotonic() >= deadline:
                return response
        time.sleep(poll_s)


def _error(response: httpx.Response) -> str:
    try:
        message = response.json().get("message")
    except (json.JSONDecodeError, AttributeError):
        message = None
    return f"HTTP {response.status_code}: {message or response.text[:200]}"
