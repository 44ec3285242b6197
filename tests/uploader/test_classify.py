"""The status classification table, Retry-After in both forms, and failure messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from services.uploader.classify import (
    Verdict,
    body_excerpt,
    classify_status,
    failure_message,
    parse_retry_after,
)


@pytest.mark.parametrize("status", [200, 201, 204])
def test_2xx_is_success(status: int) -> None:
    assert classify_status(status) is Verdict.SUCCESS


@pytest.mark.parametrize("status", [408, 425, 429, 500, 501, 599])
def test_request_timeouts_rate_limits_and_server_errors_retry_the_arc(status: int) -> None:
    assert classify_status(status) is Verdict.RETRY


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_and_overload_mean_the_target_is_unavailable(status: int) -> None:
    assert classify_status(status) is Verdict.UNAVAILABLE


@pytest.mark.parametrize("status", [400, 401, 403])
def test_unknown_rdi_and_certificate_refusals_mean_the_uploader_is_misconfigured(status: int) -> None:
    assert classify_status(status) is Verdict.MISCONFIGURED


@pytest.mark.parametrize("status", [404, 409, 413, 422, 418, 301])
def test_other_client_errors_fail_the_arc_at_once(status: int) -> None:
    assert classify_status(status) is Verdict.FAIL


def test_retry_after_delta_seconds() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("1.5") == 1.5


def test_retry_after_http_date_is_seconds_from_now() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(header, now=now) == 30.0
    past = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-"])
def test_unusable_retry_after_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_excerpt_prefers_json_detail_and_is_short() -> None:
    assert body_excerpt(b'{"detail": "invalid ARC RO-Crate: no root"}') == "invalid ARC RO-Crate: no root"
    long = body_excerpt(b"<html>" + b"x " * 1000 + b"</html>")
    assert len(long) <= 300 and long.endswith("…")
    assert body_excerpt(b"line one\n   line two") == "line one line two"


def test_413_message_names_the_body_limit_and_the_request_size() -> None:
    message = failure_message(413, b'{"detail": "limit is 4000 bytes"}', request_bytes=6123)
    assert message.startswith("HTTP 413: ")
    assert "body limit" in message and "6123 bytes" in message and "limit is 4000 bytes" in message


def test_422_message_carries_the_server_reason() -> None:
    assert failure_message(422, b'{"detail": "no identifier"}') == (
        "HTTP 422: the target rejected the ARC as invalid RO-Crate: no identifier"
    )
