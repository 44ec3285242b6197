"""The upload target over HTTP: one pooled httpx client, bounded concurrency, retries by the table.

Every call goes through :meth:`TargetClient.call`. Each attempt first passes the
target's health gate (:mod:`services.uploader.health`): while the target is
unavailable or refuses this uploader, requests wait there instead of failing, and
one trial request at a time finds out when it is back. An attempt holds one of
``max_concurrent_uploads`` slots only while its request is on the wire. The answer
is classified by :mod:`services.uploader.classify`:

- success: the reply;
- unavailable (connection error, timeout, 502/503/504) or misconfigured (400, 401,
  403): the health gate stops delivery and the call tries again when it lets it,
  without counting an attempt against this ARC; past ``outage_budget_s`` of outage
  the ARC fails (``target-failed``);
- retry (408, 425, 429, other 5xx): tenacity re-runs it with exponential backoff and
  full jitter, or after the server's ``Retry-After`` (never earlier), at most
  ``max_attempts`` times; a ``Retry-After`` beyond ``retry_after_max_s`` ends it;
- fail (other 4xx): :class:`AttemptError`, not retriable (the ARC's dead letter).
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
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential

from services.common import metrics, tracing
from services.common.config import UploaderSettings
from services.common.errors import ConfigError, DeliveryError
from services.uploader.classify import Verdict, classify_status, failure_message, parse_retry_after
from services.uploader.health import TargetHealth, TargetState

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class AttemptError(DeliveryError):
    """One attempt failed; ``verdict`` says why (see the module docstring)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        verdict: Verdict,
        retry_after: float | None = None,
        wait_s: float | None = None,
    ) -> None:
        super().__init__(message, status=status, retriable=verdict is not Verdict.FAIL)
        self.verdict = verdict
        #: What the server asked for (``Retry-After``), in seconds.
        self.retry_after = retry_after
        #: For an answer about the target: the wait the health gate chose before the next try.
        self.wait_s = wait_s
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


class _ArcAttempts:
    """tenacity's stop and wait for one call: only answers about this ARC count as attempts.

    An answer about the target (unavailable, misconfigured) costs no attempt and no wait
    here (the health gate waits); it ends the call only past the outage budget.
    """

    def __init__(self, settings: UploaderSettings, health: TargetHealth) -> None:
        self._settings = settings
        self._health = health
        self._backoff = wait_random_exponential(multiplier=settings.backoff_initial_s, max=settings.backoff_max_s)
        self.counted = 0
        #: Why the last wait was chosen (a trace's ``retry wait`` span says it).
        self.reason = ""

    @staticmethod
    def _error(state: RetryCallState) -> AttemptError | None:
        error = state.outcome.exception() if state.outcome else None
        return error if isinstance(error, AttemptError) else None

    def stop(self, state: RetryCallState) -> bool:
        error = self._error(state)
        if error is None:
            return True
        if error.verdict is Verdict.UNAVAILABLE:
            return self._health.down_for_s > self._settings.outage_budget_s
        if error.verdict is Verdict.MISCONFIGURED:
            return False
        self.counted += 1
        too_long = error.retry_after is not None and error.retry_after > self._settings.retry_after_max_s
        return too_long or self.counted >= self._settings.max_attempts

    def wait(self, state: RetryCallState) -> float:
        """The wait before the next try.

        About the target: the health gate's wait (trial spacing or the re-check interval).
        About this ARC: the server's ``Retry-After`` plus a little jitter when it named one,
        else exponential backoff with full jitter; a server that says when to come back knows
        its load better than our curve, so its wait replaces the curve.
        """
        error = self._error(state)
        if error is None:
            return 0.0
        if error.verdict is not Verdict.RETRY:
            self.reason = f"target {error.verdict.value}"
            return error.wait_s or 0.0
        if error.retry_after is None:
            self.reason = "backoff"
            return float(self._backoff(state))
        self.reason = "retry-after"
        return error.retry_after + random.uniform(0, min(1.0, 0.1 * error.retry_after + 0.05))


class TargetClient:
    """HTTP calls to the ARC store with the retry policy; one instance per uploader."""

    def __init__(
        self,
        settings: UploaderSettings,
        health: TargetHealth | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        recheck: str | None = None,
    ) -> None:
        """``recheck``: a side-effect-free request path that runs the target's RDI and certificate
        checks (``GET /v3/harvests?rdi=...&limit=1``, :mod:`services.uploader.probe`); while the
        target refuses this uploader it is asked instead of sending an ARC again."""
        self.settings = settings
        self.health = health or TargetHealth(settings)
        self._recheck = recheck
        self.http = make_http_client(settings, transport)
        tracing.instrument_http_client(self.http)
        self._slots = asyncio.Semaphore(settings.max_concurrent_uploads)
        self._sleep = sleep

    async def aclose(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, path: str, content: bytes | None = None) -> Reply:
        """Send until success; raise :class:`AttemptError` (``attempts`` set) when this ARC's request fails."""
        policy = _ArcAttempts(self.settings, self.health)
        retrying = AsyncRetrying(
            stop=policy.stop,
            wait=policy.wait,
            retry=retry_if_exception(lambda exc: isinstance(exc, AttemptError) and exc.retriable),
            sleep=self._traced_sleep(policy) if tracing.enabled() else self._sleep,
            reraise=True,
        )
        attempt_number = 0
        try:
            async for attempt in retrying:
                attempt_number = attempt.retry_state.attempt_number
                with attempt, tracing.span("upload attempt", {"arcstream.attempt": attempt_number}):
                    status, body = await self._attempt(method, path, content)
                    return Reply(status, body, attempt_number)
        except AttemptError as exc:
            exc.attempts = attempt_number
            if exc.verdict is Verdict.UNAVAILABLE:
                exc.code = "target-failed"
                exc.args = (f"{exc}; the target was unavailable for more than outage_budget_s",)
            elif exc.verdict is Verdict.RETRY:
                exc.code = "target-failed"
                if exc.retry_after is not None and exc.retry_after > self.settings.retry_after_max_s:
                    exc.args = (
                        f"{exc}; the server asked to wait {exc.retry_after:.0f}s, more than "
                        f"retry_after_max_s={self.settings.retry_after_max_s:.0f}",
                    )
                else:
                    exc.args = (f"{exc}; gave up after {policy.counted} attempts",)
            raise
        raise AssertionError("unreachable: tenacity either returns, raises or retries")

    def _traced_sleep(self, policy: _ArcAttempts) -> Sleep:
        """The wait between attempts as a ``retry wait`` span, with its length and why."""

        async def sleep(seconds: float) -> None:
            attributes = {"arcstream.retry.wait_s": round(seconds, 3), "arcstream.retry.reason": policy.reason}
            with tracing.span("retry wait", attributes):
                await self._sleep(seconds)

        return sleep

    async def _attempt(self, method: str, path: str, content: bytes | None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"} if content is not None else None
        gate_closed = self.health.state is not TargetState.UP
        async with (
            tracing.waiting("wait for target", self.health.admit(), traced=gate_closed) as trial,
            self._slots,
        ):
            if trial and self.health.state is TargetState.MISCONFIGURED and self._recheck is not None:
                await self._check_configuration()
            try:
                response = await self.http.request(method, path, content=content, headers=headers)
            except httpx.TransportError as exc:  # timeouts included: no answer means the target is not there
                metrics.http_response("upload", None)
                metrics.target_answered(None)
                kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection error"
                reason = f"{kind} ({type(exc).__name__}: {exc})" if str(exc) else f"{kind} ({type(exc).__name__})"
                gap = self.health.unavailable(reason)
                raise AttemptError(reason, status=None, verdict=Verdict.UNAVAILABLE, wait_s=gap) from exc
        metrics.http_response("upload", response.status_code)
        metrics.target_answered(response.status_code)
        verdict = classify_status(response.status_code)
        if verdict is Verdict.SUCCESS:
            self.health.succeeded()
            return response.status_code, _json_or_none(response.content)
        message = failure_message(response.status_code, response.content, len(content) if content else None)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        wait: float | None = None
        if verdict is Verdict.UNAVAILABLE:
            wait = self.health.unavailable(message, retry_after)
        elif verdict is Verdict.MISCONFIGURED:
            wait = self.health.misconfigured(response.status_code, message)
        else:
            self.health.succeeded()  # the target answered about this ARC: it is there
            if verdict is Verdict.RETRY:
                log.debug("%s %s: %s, retrying", method, path, message)
        raise AttemptError(message, status=response.status_code, verdict=verdict, retry_after=retry_after, wait_s=wait)

    async def _check_configuration(self) -> None:
        """Ask the re-check request whether the target accepts this uploader now; raise if it still refuses.

        A transport error or any other answer lets the real request go: it reports that itself.
        """
        assert self._recheck is not None
        try:
            response = await self.http.get(self._recheck)
        except httpx.TransportError:
            return
        if classify_status(response.status_code) is Verdict.MISCONFIGURED:
            message = failure_message(response.status_code, response.content)
            wait = self.health.misconfigured(response.status_code, message)
            raise AttemptError(message, status=response.status_code, verdict=Verdict.MISCONFIGURED, wait_s=wait)


def _json_or_none(content: bytes) -> Any:
    if not content:
        return None
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
