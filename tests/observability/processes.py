"""The services as separate ``arcstream`` processes, with only a test's settings in their environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from services.common.config import WELL_KNOWN_ENV, Settings
from services.dev.stack.ports import free_port
from services.dev.stack.state import ServerRecord
from tests.ops.pipeline import FAST_GROUP

ROOT = Path(__file__).resolve().parents[2]


def service_env(settings: Settings, store: ServerRecord, tmp_path: Path, rdi: str) -> dict[str, str]:
    """The environment of ``arcstream`` processes for this test: its settings and store, nothing from the
    developer's shell (no ``ARCSTREAM_*``, no well-known variables, no ``OTEL_*``)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ARCSTREAM_", "OTEL_")) and key not in WELL_KNOWN_ENV
    }
    prefix = settings.topics.prefix
    return env | {
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "ARC_STORE_URL": store.url,
        "ARCSTREAM_RDI": rdi,
        "ARCSTREAM_STATE_DIR": str(tmp_path / "service-state"),
        "ARCSTREAM_TOPICS__PREFIX": prefix,
        "ARCSTREAM_TOPICS__PARTITIONS": str(settings.topics.partitions),
        "ARCSTREAM_KAFKA__SESSION_TIMEOUT_MS": str(FAST_GROUP["session_timeout_ms"]),
        "ARCSTREAM_KAFKA__HEARTBEAT_INTERVAL_MS": str(FAST_GROUP["heartbeat_interval_ms"]),
        "ARCSTREAM_BUILDER__GROUP_ID": f"{prefix}-builder",
        "ARCSTREAM_UPLOADER__GROUP_ID": f"{prefix}-uploader",
        "ARCSTREAM_MAX_CONCURRENT_ARC_BUILDS": "1",
    }


class Service:
    """``arcstream <args>`` as its own process with its own metrics port; :meth:`stop` is SIGTERM (spans are
    exported on the way out)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.metrics_port = free_port()
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", *args],
                env=env | {"ARCSTREAM_METRICS__PORT": str(self.metrics_port)},
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after a minute; the exit code."""
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        return self.process.returncode
