"""Fatal start-up errors end the CLI with exit code 1 and one line saying what to fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from services.common.config import Settings
from services.dev.stack.ports import free_port


def _run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _env(settings: Settings, tmp_path: Path, **overrides: str) -> dict[str, str]:
    return {
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "ARCSTREAM_TOPICS__PREFIX": settings.topics.prefix,
        "ARCSTREAM_STATE_DIR": str(tmp_path / "state"),
        **overrides,
    }


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_unreachable_database(settings: Settings, tmp_path: Path) -> None:
    dead = f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/postgres"
    result = _run_cli("extract", "snapshot", env=_env(settings, tmp_path, DATABASE_URL=dead), cwd=tmp_path)
    line = _one_error_line(result)
    assert "cannot connect to the database" in line
    assert "s3cret" not in line


def test_missing_relation_and_column(settings: Settings, tmp_path: Path, database_url: str) -> None:
    result = _run_cli("extract", "snapshot", env=_env(settings, tmp_path), cwd=tmp_path)
    assert 'required relation "vInvestigation" is missing' in _one_error_line(result)

    subprocess.run(
        [sys.executable, "-m", "services.cli", "gen", "-n", "1"],
        env={**os.environ, **_env(settings, tmp_path)},
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute('ALTER TABLE "vAssay" DROP COLUMN technology_platform')
    result = _run_cli("extract", "snapshot", env=_env(settings, tmp_path), cwd=tmp_path)
    assert 'relation "vAssay" lacks required column(s): technology_platform' in _one_error_line(result)


def test_unreachable_broker(settings: Settings, tmp_path: Path) -> None:
    env = _env(settings, tmp_path, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}")
    subprocess.run(
        [sys.executable, "-m", "services.cli", "gen", "-n", "1"],
        env={**os.environ, **env},
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    result = _run_cli("extract", "snapshot", env=env, cwd=tmp_path)
    assert "cannot reach Kafka" in _one_error_line(result)


def test_bad_setting(settings: Settings, tmp_path: Path) -> None:
    result = _run_cli("extract", "snapshot", env=_env(settings, tmp_path, ARCSTREAM_DB_BATCH_SIZE="-3"), cwd=tmp_path)
    assert "invalid setting 'db_batch_size'" in _one_error_line(result)
