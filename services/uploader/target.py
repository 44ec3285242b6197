"""The upload target over HTTP: one pooled httpx client, bounded concurrency, retries by the table.

Every call goes through :meth:`TargetClient.call`: each attempt takes a slot of
the concurrency limit only while its request is on the wire (a retry waiting out
``Retry-After`` frees its slot for other ARCs), the answer is classified by
:mod:`services.uploader.classify`, and tenacity re-runs retriable attempts with
exponential backoff and full jitter, never earlier than the server's
``Retry-After`` (which, when given, replaces the backoff) and never more than
``max_attempts`` times. A ``Retry-After``
beyond ``retry_after_max_s`` ends the retries instead of being cut short.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from services.common import metrics
from services.common.config import UploaderSettings
from services.common.errors import ConfigError, DeliveryError
from services.uploader.classify import Verdict, classify_status, failure_message, parse_retry_after

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class AttemptError(DeliveryError):
    """One attempt failed; ``retriable`` per the table, ``retry_after`` when the server named a wait."""

    def __init__(self, message: str, *, status: int | None, retriable: bool, retry_after: float | None = None) -> None:
        super().__init__(message, status=status, retriable=retriable)
        self.retry_after = retry_after
        self.attempts = 1


@dataclass(frozen=True)
class Reply:
    """A successful answer."""

    status: int
    body: Any
    attempts: int


def _ssl_context(settings: UploaderSettings) -> ssl.SSLContext | bool:
    tls = settings.tls
    if not tls.verify:
        if tls.client_cert is None:
            return False
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=str(tls.ca_bundle) if tls.ca_bundle else None)
    if tls.client_cert is not None:
        try:
            context.load_cert_chain(str(tls.client_cert), str(tls.client_key) if tls.client_key else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the client certificate {tls.client_cert}: {exc}") from exc
    return context


def make_http_client(
    settings: UploaderSettings, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The pooled client: timeouts per phase, one connection per concurrent upload, mTLS from config."""
    limit = settings.max_concurrent_uploads
    return httpx.AsyncClient(
        base_url=settings.target_url.rstrip("/"),
        timeout=httpx.Timeout(
            connect=settings.connect_timeout_s,
            read=settings.read_timeout_s,
            write=settings.write_timeout_s,
            pool=settings.pool_timeout_s,
        ),
        limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
        verify=_ssl_context(settings),
        transport=transport,
        headers={"Accept": "application/json"},
    )


class _WaitRetryAfterOrBackoff:
    """The server's ``Retry-After`` plus a little jitter when it named one, else exponential backoff.

    A server that says when to come back knows its load better than our backoff curve
    does, so its wait replaces the curve (growing it further would only lengthen the tail
    of a run); the jitter, never negative, keeps clients told the same second apart.
    """

    def __init__(self, settings: UploaderSettings) -> None:
        self._backoff = wait_random_exponential(multiplier=settings.backoff_initial_s, max=settings.backoff_max_s)

    def __call__(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is None:
            return float(self._backoff(state))
        return float(retry_after) + random.uniform(0, min(1.0, 0.1 * retry_after + 0.05))


class _StopOnLongRetryAfter(stop_base):
    """Stop when the server asks for a wait above ``retry_after_max_s`` (never retry it early)."""

    def __init__(self, settings: UploaderSettings) -> None:
        self.limit = settings.retry_after_max_s

    def __call__(self, state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        return retry_after is not None and retry_after > self.limit


class TargetClient:
    """HTTP calls to the ARC store with the retry policy; one instance per uploader."""

    def __init__(
        self,
        settings: UploaderSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.http = make_http_client(settings, transport)
        self._slots = asyncio.Semaphore(settings.max_concurrent_uploads)
        self._sleep = sleep

    async def aclose(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, path: str, content: bytes | None = None) -> Reply:
        """Send with retries; return the success reply or raise :class:`AttemptError` (``attempts`` set)."""
        retrying = AsyncRetrying(
            stop=stop_any(stop_after_attempt(self.settings.max_attempts), _StopOnLongRetryAfter(self.settings)),
            wait=_WaitRetryAfterOrBackoff(self.settings),
            retry=retry_if_exception(lambda exc: isinstance(exc, AttemptError) and exc.retriable),
            sleep=self._sleep,
            reraise=True,
        )
        attempt_number = 0
        try:
            async for attempt in retrying:
                attempt_number = attempt.retry_state.attempt_number
                with attempt:
                    status, body = await self._attempt(method, path, content)
                    return Reply(status, body, attempt_number)
        except AttemptError as exc:
            exc.attempts = attempt_number
            if exc.retriable:
                if exc.retry_after is not None and exc.retry_after > self.settings.retry_after_max_s:
                    exc.args = (
                        f"{exc}; the server asked to wait {exc.retry_after:.0f}s, more than "
                        f"retry_after_max_s={self.settings.retry_after_max_s:.0f}",
                    )
                else:
                    exc.args = (f"{exc}; gave up after {attempt_number} attempts",)
            raise
        raise AssertionError("unreachable: tenacity either returns, raises or retries")

    async def _attempt(self, method: str, path: str, content: bytes | None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"} if content is not None else None
        async with self._slots:
            try:
                response = await self.http.request(method, path, content=content, headers=headers)
            except httpx.TimeoutException as exc:
                metrics.http_response("upload", None)
                metrics.target_answered(None)
                raise AttemptError(f"timeout ({type(exc).__name__})", status=None, retriable=True) from exc
            except httpx.TransportError as exc:
                metrics.http_response("upload", None)
                metrics.target_answered(None)
                raise AttemptError(
                    f"connection error ({type(exc).__name__}: {exc})", status=None, retriable=True
                ) from exc
        metrics.http_response("upload", response.status_code)
        metrics.target_answered(response.status_code)
        verdict = classify_status(response.status_code)
        if verdict is Verdict.SUCCESS:
            return response.status_code, _json_or_none(response.content)
        message = failure_message(response.status_code, response.content, len(content) if content else None)
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if verdict is Verdict.RETRY else None
        if verdict is Verdict.RETRY:
            log.debug("%s %s: %s, retrying", method, path, message)
        raise AttemptError(
            message, status=response.status_code, retriable=verdict is Verdict.RETRY, retry_after=retry_after
        )


def _json_or_none(content: bytes) -> Any:
    if not content:
        return None
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
