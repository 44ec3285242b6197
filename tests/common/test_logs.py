"""Structured logs: JSON lines with the context fields, secrets masked in both formats."""

from __future__ import annotations

import json
import logging

import pytest

from services.common.logs import configure_logging, mask_url


def test_json_lines_carry_context_and_mask_passwords(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("arcstream.test").warning(
        "cannot reach postgresql://arc:s3cret@db:5432/src",
        extra={"identifier": "INV-1", "run_id": "snapshot-1", "partition": 2, "offset": 41},
    )
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["level"] == "WARNING" and line["logger"] == "arcstream.test"
    assert (line["identifier"], line["run_id"], line["partition"], line["offset"]) == ("INV-1", "snapshot-1", 2, 41)
    assert "s3cret" not in line["message"] and "postgresql://arc:***@db:5432/src" in line["message"]


def test_text_format_appends_context_and_masks(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "text")
    logging.getLogger("arcstream.test").info("using https://u:pw@store/v3", extra={"identifier": "INV-2"})
    err = capsys.readouterr().err
    assert "identifier=INV-2" in err and "pw@" not in err


def test_mask_url_leaves_urls_without_password_alone() -> None:
    assert mask_url("postgresql://postgres@127.0.0.1:5432/db") == "postgresql://postgres@127.0.0.1:5432/db"
    assert mask_url("kafka://a:b@h:9092") == "kafka://a:***@h:9092"
