"""``arcstream gen`` on a database that already holds data: one clear line, nothing written, or ``--append``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg


def gen(database_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "ARCSTREAM_STATE_DIR": str(tmp_path / "state")}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "gen", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def identifiers(database_url: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        return [row[0] for row in conn.execute('SELECT identifier FROM "vInvestigation" ORDER BY 1')]


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_gen_refuses_a_populated_database_and_appends_when_asked(database_url: str, tmp_path: Path) -> None:
    first = gen(database_url, tmp_path, "-n", "2")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["investigations"] == 2

    again = gen(database_url, tmp_path, "-n", "2")
    line = error_line(again)
    assert "already holds 2 investigation(s)" in line and "--append" in line
    assert identifiers(database_url) == ["INV-000000", "INV-000001"]

    appended = gen(database_url, tmp_path, "-n", "2", "--append")
    assert appended.returncode == 0, appended.stderr
    assert json.loads(appended.stdout)["first"] == 2
    assert identifiers(database_url) == ["INV-000000", "INV-000001", "INV-000002", "INV-000003"]


def test_an_explicit_start_that_collides_names_the_investigation(database_url: str, tmp_path: Path) -> None:
    assert gen(database_url, tmp_path, "-n", "3").returncode == 0

    line = error_line(gen(database_url, tmp_path, "-n", "2", "--start", "2"))
    assert "investigation INV-000002 already exists" in line
    assert "Traceback" not in line
    assert identifiers(database_url) == ["INV-000000", "INV-000001", "INV-000002"]

    past = gen(database_url, tmp_path, "-n", "1", "--start", "10")
    assert past.returncode == 0, past.stderr
    assert identifiers(database_url)[-1] == "INV-000010"


def test_contract_2_fills_the_optional_columns(database_url: str, tmp_path: Path) -> None:
    result = gen(database_url, tmp_path, "-n", "3", "--contract", "2")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["contract"] == 2
    with psycopg.connect(database_url) as conn:
        (positions,) = conn.execute('SELECT count(column_index) FROM "vAnnotationTable"').fetchone() or (0,)
        (cells,) = conn.execute('SELECT count(*) FROM "vAnnotationTable"').fetchone() or (0,)
    assert cells > 0 and positions == cells  # every cell names its column's position (a v2 column)
