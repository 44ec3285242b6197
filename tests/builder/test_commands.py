"""``arcstream builder``: flags reach the settings; an unreachable broker is one line and exit code 1."""

from __future__ import annotations

import logging
import socket

import pytest

from services.cli import build_parser, main


def test_flags_are_parsed() -> None:
    args = build_parser().parse_args(["builder", "--group", "g1", "--workers", "3", "--engine", "arctrl"])
    assert (args.group, args.workers, args.engine) == ("g1", 3, "arctrl")


def test_unreachable_broker_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        assert main(["builder", "--workers", "1"]) == 1
    finally:  # the command configures process-wide logging; leave the test session's as it was
        root.handlers[:], root.level = handlers, level
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("arcstream builder: error: cannot reach Kafka")
