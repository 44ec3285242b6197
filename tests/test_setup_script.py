"""``scripts/setup`` finds Python 3.12 by running each candidate, not by trusting its name.

The case from the field: pyenv puts a ``python3.12`` shim on PATH even where 3.12 is not the
selected version; the shim then exits with "pyenv: python3.12: command not found". The
real interpreter here is ``sys.executable``'s base (the tests run on Python 3.12).
PATH holds only a directory made by the test, so no interpreter of the machine leaks in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "scripts" / "setup"
BASH = shutil.which("bash") or "/bin/bash"
#: Answers like a Python 3.11: the version probe exits 3, ``platform.python_version()`` says 3.11.2.
PYTHON_3_11 = '#!/bin/sh\ncase "$2" in *platform*) echo 3.11.2 ;; *) exit 3 ;; esac\n'
FAILING_SHIM = '#!/bin/sh\necho "pyenv: python3.12: command not found" >&2\nexit 127\n'


def real_python() -> Path:
    """The Python 3.12 the test suite runs on (outside the venv)."""
    return Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)
    return path


def find_python(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``scripts/setup --print-python`` with only the given environment (and a bin dir made by the test)."""
    base = {"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path / "home")}
    return subprocess.run(
        [BASH, str(SETUP), "--print-python"],
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def test_a_failing_shim_on_path_is_skipped_for_a_working_python(tmp_path: Path) -> None:
    assert sys.version_info[:2] == (3, 12)
    executable(tmp_path / "bin" / "python3.12", FAILING_SHIM)
    installed = tmp_path / "home" / ".pyenv" / "versions" / "3.12.1" / "bin" / "python3.12"
    installed.parent.mkdir(parents=True)
    installed.symlink_to(real_python())

    result = find_python(tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(installed)


def test_a_working_python_later_on_path_wins_over_the_shim_before_it(tmp_path: Path) -> None:
    executable(tmp_path / "bin" / "python3.12", FAILING_SHIM)
    later = tmp_path / "later"
    later.mkdir()
    (later / "python3.12").symlink_to(real_python())

    result = find_python(tmp_path, PATH=f"{tmp_path / 'bin'}{os.pathsep}{later}")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(later / "python3.12")


def test_no_working_python_is_one_clear_line_naming_what_failed(tmp_path: Path) -> None:
    executable(tmp_path / "bin" / "python3.12", FAILING_SHIM)
    executable(tmp_path / "bin" / "python3", PYTHON_3_11)

    result = find_python(tmp_path)

    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no working Python 3.12" in lines[0]
    assert "pyenv: python3.12: command not found" in lines[0]
    assert "3.11.2 is not 3.12" in lines[0]
    assert "PYTHON=/path/to/python3.12" in lines[0]


def test_a_given_python_that_fails_is_named_not_silently_replaced(tmp_path: Path) -> None:
    shim = executable(tmp_path / "bin" / "python3.12", FAILING_SHIM)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "python3.12").symlink_to(real_python())

    result = find_python(tmp_path, PYTHON=str(shim), PATH=str(tmp_path / "elsewhere"))

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"arcstream: PYTHON={shim} does not work (pyenv: python3.12: command not found); "
        "point PYTHON at a Python 3.12 or unset it"
    ]
