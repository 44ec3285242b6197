"""How the uploader reads an HTTP answer: success, the target's state, retry this ARC, or give up on it.

One table decides, so the policy is visible in one place and testable without a
server. Answers about the *target* (it is down, or refuses this uploader's RDI or
certificate) stop delivery as a whole (:mod:`services.uploader.health`) instead of
failing one ARC after another; answers about *this ARC* retry or fail it.
``Retry-After`` is read in both legal forms (delta seconds and HTTP date).
Failure messages carry the status and a short excerpt of the body, because that
is what an operator needs in the report to fix the cause.
"""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


class Verdict(enum.Enum):
    SUCCESS = "success"
    #: The target is not there right now (pause delivery, try again): connection errors and timeouts too.
    UNAVAILABLE = "unavailable"
    #: The target refuses this uploader (RDI, certificate): stop delivery until it is fixed.
    MISCONFIGURED = "misconfigured"
    #: This ARC may succeed if sent again (bounded by ``max_attempts``).
    RETRY = "retry"
    #: This ARC is refused: it fails (DLQ).
    FAIL = "fail"


#: Explicit decisions; other codes fall back to their class (2xx success, 5xx retry, rest fail).
STATUS_TABLE: dict[int, Verdict] = {
    502: Verdict.UNAVAILABLE,  # bad gateway: the API behind the proxy is down
    503: Verdict.UNAVAILABLE,  # overload (admission control, with Retry-After) or maintenance
    504: Verdict.UNAVAILABLE,  # gateway timeout
    400: Verdict.MISCONFIGURED,  # the API's only 400: "RDI 'x' is not recognized."
    401: Verdict.MISCONFIGURED,  # client certificate required
    403: Verdict.MISCONFIGURED,  # RDI not authorised by the client certificate
    408: Verdict.RETRY,  # request timeout: the server gave up waiting for us
    425: Verdict.RETRY,  # too early
    429: Verdict.RETRY,  # rate limited (the API never answers it; proxies may)
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
