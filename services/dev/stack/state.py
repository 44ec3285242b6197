"""Where the single-machine stack's servers are, recorded so services find them without flags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

STATE_FILE = "stack.json"


class ServerRecord(BaseModel):
    """One server process of the stack."""

    model_config = ConfigDict(extra="forbid")

    url: str
    pid: int | None = None
    data_dir: str | None = None
    log_file: str | None = None
    #: Client settings this server needs (for the dev broker: consumer-group timings, see
    #: :data:`services.dev.stack.broker.CLIENT_SETTINGS`); none for servers found configured.
    client_settings: dict[str, int] | None = None


class StackState(BaseModel):
    """The servers ``arcstream dev up`` started (or found configured)."""

    model_config = ConfigDict(extra="forbid")

    postgres: ServerRecord | None = None
    broker: ServerRecord | None = None
    store: ServerRecord | None = None

    def kafka_client_settings(self) -> dict[str, int]:
        """``kafka.*`` settings the recorded broker needs (empty for a broker found configured)."""
        return dict(self.broker.client_settings or {}) if self.broker else {}

    @property
    def store_deletes(self) -> bool:
        """The stack started its own store, which it runs with ARC deletion switched on."""
        return self.store is not None and self.store.pid is not None

    def settings(self) -> dict[str, str | int | bool]:
        """Dotted setting names -> values, for the config model's state-file source."""
        values: dict[str, str | int | bool] = {}
        if self.postgres:
            values["database_url"] = self.postgres.url
        if self.broker:
            values["kafka.bootstrap_servers"] = self.broker.url
            values.update({f"kafka.{key}": value for key, value in self.kafka_client_settings().items()})
        if self.store:
            values["uploader.target_url"] = self.store.url
            if self.store_deletes:
                values["uploader.target_deletes"] = True
        return values

    def env(self) -> dict[str, str]:
        """The same settings as the environment variables other tools read."""
        values: dict[str, str] = {}
        if self.postgres:
            values["DATABASE_URL"] = self.postgres.url
        if self.broker:
            values["KAFKA_BOOTSTRAP_SERVERS"] = self.broker.url
            values.update(
                {f"ARCSTREAM_KAFKA__{key.upper()}": str(value) for key, value in self.kafka_client_settings().items()}
            )
        if self.store:
            values["ARC_STORE_URL"] = self.store.url
            if self.store_deletes:
                values["ARCSTREAM_UPLOADER__TARGET_DELETES"] = "true"
        return values


def settings_from_stack(state_dir: Path) -> dict[str, Any]:
    """The recorded stack as nested settings: the config model's fallback source (registered by the CLI)."""
    state = read_state(state_dir)
    data: dict[str, Any] = {}
    for dotted, value in (state.settings() if state else {}).items():
        *parents, leaf = dotted.split(".")
        target = data
        for key in parents:
            target = target.setdefault(key, {})
        target[leaf] = value
    return data


def read_state(state_dir: Path) -> StackState | None:
    """The recorded stack, or ``None`` when ``dev up`` has not run here."""
    path = state_dir / STATE_FILE
    if not path.is_file():
        return None
    return StackState.model_validate(json.loads(path.read_text(encoding="utf-8")))


def write_state(state_dir: Path, state: StackState) -> Path:
    """Record the stack atomically."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.model_dump_json(indent=2, exclude_none=True), encoding="utf-8")
    tmp.replace(path)
    return path


def clear_state(state_dir: Path) -> None:
    (state_dir / STATE_FILE).unlink(missing_ok=True)
