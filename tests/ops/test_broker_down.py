"""With the broker down, every command a user runs says so in one line, and nothing else follows it.

Before: ``arcstream status`` printed a 64-line faust traceback; ``report``, ``replay-dlq`` and
``cdc capture`` printed the right line followed by aiokafka's "Unclosed AIOKafka..." noise.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from services.common.config import WELL_KNOWN_ENV, Settings
from services.dev.stack.ports import free_port
from services.extractor.cdc.capture.setup import setup_cdc
from services.extractor.source.schema import ensure_source_schema


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def broker_down_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCSTREAM_") and k not in WELL_KNOWN_ENV}
    return env | {
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "ARCSTREAM_STATE_DIR": str(tmp_path / "state"),
        "ARCSTREAM_UPLOADER__STATUS_PORT": str(free_port()),
    }


@pytest.mark.parametrize(
    "command",
    [["status"], ["report", "--run", "r-1"], ["replay-dlq"], ["replay", "--group", "g", "--to", "earliest"]],
    ids=lambda command: command[0],
)
def test_operator_commands_say_the_broker_is_down_in_one_line(
    broker_down_env: dict[str, str], command: list[str]
) -> None:
    result = run_cli(broker_down_env, *command)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"arcstream {command[0]}: error: cannot reach Kafka at {broker_down_env['KAFKA_BOOTSTRAP_SERVERS']} "
        "(KafkaConnectionError): start it (arcstream dev up) or set KAFKA_BOOTSTRAP_SERVERS"
    ]


def test_cdc_capture_says_the_broker_is_down_before_starting_debezium(
    settings: Settings, broker_down_env: dict[str, str]
) -> None:
    async def prepare() -> None:
        async with await psycopg.AsyncConnection.connect(
            settings.database_url.get_secret_value(), autocommit=True
        ) as conn:
            await ensure_source_schema(conn)
            await setup_cdc(conn, settings)

    asyncio.run(prepare())
    result = run_cli(broker_down_env, "cdc", "capture")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("arcstream cdc: error: cannot reach Kafka at"), result.stderr
    assert not [line for line in lines if "Unclosed" in line or "[debezium]" in line], result.stderr
    assert len(lines) == 1, result.stderr
