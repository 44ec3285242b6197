"""One rule for reading times: our ``Z`` headers, Debezium's offset-less UTC, the real API's ``+00:00Z``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.common.outcomes import latency_ms
from services.common.report import parse_utc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T00:00:00.123Z", datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)),
        ("2026-01-01T00:00:00", datetime(2026, 1, 1, tzinfo=UTC)),  # no offset: UTC
        ("2026-01-01T00:00:00.5+00:00Z", datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)),  # the API's form
        ("2026-01-01T01:00:00+01:00", datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))),
        ("yesterday", None),
        ("", None),
    ],
)
def test_parse_utc(text: str, expected: datetime | None) -> None:
    assert parse_utc(text) == expected


def test_latency_reads_times_the_same_way_and_never_goes_negative() -> None:
    now = datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC)
    assert latency_ms("2026-01-01T00:00:00Z", now) == 2000.0
    assert latency_ms("2026-01-01T00:00:01", now) == 1000.0  # naive = UTC
    assert latency_ms("2026-01-01T00:00:05Z", now) == 0.0  # clock skew
    assert latency_ms("not a time", now) is None
    assert latency_ms(None, now) is None
