"""The demo's service processes: each arcstream service as its own child process, as in production.

A child that exits while it should be running is a start-up failure the demo
reports in one line, pointing at that service's log file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from services.common.errors import StackError


@dataclass
class ServiceProcess:
    name: str
    args: list[str]
    log_file: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", *self.args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check(self) -> None:
        """Raise :class:`StackError` if the process has exited."""
        if self.process is not None and self.process.poll() is not None:
            tail = self.log_file.read_text(errors="replace").strip().splitlines()[-1:] if self.log_file.exists() else []
            last = f": {tail[0]}" if tail else ""
            raise StackError(f"{self.name} exited with code {self.process.returncode}{last} (log: {self.log_file})")

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@dataclass
class ServiceGroup:
    """Start, watch and stop the demo's services together."""

    services: list[ServiceProcess] = field(default_factory=list)

    def start(self, service: ServiceProcess, env: dict[str, str]) -> None:
        service.start(env)
        self.services.append(service)

    def check(self) -> None:
        for service in self.services:
            service.check()

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()
