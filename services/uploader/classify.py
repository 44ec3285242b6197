"""How the uploader reads an HTTP answer: success, retry later, or give up on this ARC.

One table decides, so the policy is visible in one place and testable without a
server. ``Retry-After`` is read in both legal forms (delta seconds and HTTP
date). Failure messages carry the status and a short excerpt of the body,
because that is what an operator needs in the report to fix the cause.
"""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


class Verdict(enum.Enum):
    SUCCESS = "success"
    RETRY = "retry"
    FAIL = "fail"


#: Explicit decisions; other codes fall back to their class (2xx success, 5xx retry, rest fail).
STATUS_TABLE: dict[int, Verdict] = {
    408: Verdict.RETRY,  # request timeout: the server gave up waiting for us
    425: Verdict.RETRY,  # too early
    429: Verdict.RETRY,  # rate limited
    400: Verdict.FAIL,  # malformed request
    401: Verdict.FAIL,  # not authenticated (client certificate missing)
    403: Verdict.FAIL,  # not authorised for this RDI
    404: Verdict.FAIL,  # unknown harvest
    409: Verdict.FAIL,  # same identifier with other content in this harvest / harvest closed
    413: Verdict.FAIL,  # body larger than the server accepts
    422: Verdict.FAIL,  # not an ARC RO-Crate the API accepts
}

#: Why a failure happened, for the outcome message (the body excerpt follows).
HINTS: dict[int, str] = {
    413: "the ARC is larger than the target's request body limit; raise the limit at the target "
    "(or its proxy) or reduce the ARC",
    409: "the target already holds this identifier with other content in this harvest, or the harvest is closed",
    422: "the target rejected the ARC as invalid RO-Crate",
    403: "the client certificate is not authorised for this RDI",
}

EXCERPT_CHARS = 300


def classify_status(status: int) -> Verdict:
    """The verdict for an HTTP status code."""
    if status in STATUS_TABLE:
        return STATUS_TABLE[status]
    if 200 <= status < 300:
        return Verdict.SUCCESS
    if 500 <= status < 600:
        return Verdict.RETRY
    return Verdict.FAIL


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or HTTP date); ``None`` if unusable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def body_excerpt(body: bytes) -> str:
    """A short, single-line excerpt of an error body (the ``detail`` of a JSON error when there is one)."""
    text = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "detail" in parsed:
        detail = parsed["detail"]
        text = detail if isinstance(detail, str) else json.dumps(detail)
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def failure_message(status: int, body: bytes, request_bytes: int | None = None) -> str:
    """``HTTP 413: <hint> (request 123 bytes): <excerpt>``."""
    parts = [f"HTTP {status}"]
    hint = HINTS.get(status)
    if hint and status == 413 and request_bytes is not None:
        hint = f"{hint} (request was {request_bytes} bytes)"
    if hint:
        parts.append(hint)
    excerpt = body_excerpt(body)
    if excerpt:
        parts.append(excerpt)
    return ": ".join(parts)
