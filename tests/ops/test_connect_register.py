"""``arcstream connect register`` against FakeConnect.

FakeConnect stands in for Kafka Connect's REST API (a JVM distribution that
cannot be installed here): it speaks the three calls the registrar makes and
can answer "rebalancing" (409) and a failed task, which a real worker only
does under conditions a test cannot arrange.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from services.cli import main
from services.common.errors import ConfigError
from services.ops.connect import ConnectorError, load_connector, register

COMPOSE_CONNECTOR = (
    Path(__file__).resolve().parents[2] / "deploy" / "compose" / "connectors" / "arcstream-postgres.json"
)


class FakeConnect(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.configs: dict[str, dict[str, str]] = {}
        self.puts = 0
        #: Status answers in order; the last one repeats.
        self.statuses: list[tuple[int, dict[str, Any]]] = []
        self.rebalancing_puts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeConnect

    def do_PUT(self) -> None:
        name = self.path.split("/")[2]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.server.rebalancing_puts:
            self.server.rebalancing_puts -= 1
            return self._send(409, {"error_code": 409, "message": "Cannot complete request during rebalance"})
        self.server.puts += 1
        created = name not in self.server.configs
        self.server.configs[name] = body
        self._send(201 if created else 200, {"name": name, "config": body, "tasks": []})

    def do_GET(self) -> None:
        statuses = self.server.statuses
        code, body = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        self._send(code, body)

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def running(tasks: int = 1) -> tuple[int, dict[str, Any]]:
    return 200, {
        "connector": {"state": "RUNNING"},
        "tasks": [{"id": i, "state": "RUNNING"} for i in range(tasks)],
    }


@pytest.fixture
def connect() -> Iterator[FakeConnect]:
    server = FakeConnect()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_creates_then_updates_and_waits_for_running(connect: FakeConnect) -> None:
    name, config = load_connector(COMPOSE_CONNECTOR)
    connect.rebalancing_puts = 1
    connect.statuses = [
        (404, {"message": "not found"}),
        (200, {"connector": {"state": "UNASSIGNED"}}),
        running(),
    ]

    action, status = register(connect.url, name, config, timeout_s=30, poll_s=0.01)

    assert action == "created"
    assert status["tasks"][0]["state"] == "RUNNING"
    assert connect.configs[name] == config
    connect.statuses = [running()]
    assert register(connect.url, name, config, timeout_s=30, poll_s=0.01)[0] == "updated"
    assert connect.puts == 2


def test_a_failed_task_fails_with_connects_error(connect: FakeConnect) -> None:
    connect.statuses = [
        (
            200,
            {
                "connector": {"state": "RUNNING"},
                "tasks": [
                    {
                        "id": 0,
                        "state": "FAILED",
                        "trace": "org.postgresql.util.PSQLException: password authentication failed\n\tat ...",
                    }
                ],
            },
        )
    ]
    with pytest.raises(ConnectorError, match="password authentication failed"):
        register(connect.url, "c", {"connector.class": "x"}, timeout_s=30, poll_s=0.01)


def test_not_running_before_the_deadline(connect: FakeConnect) -> None:
    connect.statuses = [(200, {"connector": {"state": "UNASSIGNED"}, "tasks": []})]
    with pytest.raises(ConnectorError, match="not running after"):
        register(connect.url, "c", {"connector.class": "x"}, timeout_s=0.2, poll_s=0.01)


def test_unreachable_connect_is_one_clear_error() -> None:
    with pytest.raises(ConnectorError, match="cannot reach Kafka Connect"):
        register("http://127.0.0.1:9", "c", {"connector.class": "x"}, timeout_s=0.2, poll_s=0.05)


def test_connector_file_shape(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"name": "n", "config": {"connector.class": "x", "tasks.max": 1}}))
    assert load_connector(path) == ("n", {"connector.class": "x", "tasks.max": "1"})
    path.write_text(json.dumps({"connector.class": "x"}))
    with pytest.raises(ConfigError, match='"name"'):
        load_connector(path)
    path.write_text(json.dumps({"name": "n", "config": {}}))
    with pytest.raises(ConfigError, match=r"connector\.class"):
        load_connector(path)


def test_cli(connect: FakeConnect, capsys: pytest.CaptureFixture[str]) -> None:
    connect.statuses = [running(2)]
    assert main(["connect", "register", str(COMPOSE_CONNECTOR), "--url", connect.url]) == 0
    assert "connector arcstream-postgres created: RUNNING with 2 task(s)" in capsys.readouterr().out
