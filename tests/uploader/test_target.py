"""TargetClient: retries by the table, Retry-After honoured, outages and misconfiguration wait, TLS defaults.

The HTTP side is an ``httpx.MockTransport`` (the injectable transport exists for
this), and time is a fake: sleeping records the wait and moves the fake clock the
health gate reads, so the waits the client chose are asserted without waiting them.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import httpx
import pytest

from services.common.config import TlsClientSettings, UploaderSettings
from services.common.errors import ConfigError
from services.uploader.health import TargetHealth, TargetState
from services.uploader.target import AttemptError, Reply, TargetClient, make_http_client


class RecordingSleep:
    """Named fake for time: records requested waits instead of sleeping, and advances its clock."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def _settings(**overrides: object) -> UploaderSettings:
    base: dict[str, object] = {
        "target_url": "http://store.test",
        "max_attempts": 5,
        "backoff_initial_s": 0.1,
        "backoff_max_s": 2.0,
    }
    return UploaderSettings.model_validate(base | overrides)


def _call(
    responses: list[httpx.Response | Exception], **overrides: object
) -> tuple[Reply | AttemptError, RecordingSleep, list[httpx.Request], TargetHealth]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = responses[min(len(seen), len(responses)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    sleep = RecordingSleep()
    settings = _settings(**overrides)
    health = TargetHealth(settings, clock=sleep.clock)

    async def run() -> Reply | AttemptError:
        client = TargetClient(settings, health, transport=httpx.MockTransport(handler), sleep=sleep)
        try:
            return await client.call("POST", "/v3/arcs", b'{"rdi":"r","arc":{}}')
        except AttemptError as exc:
            return exc
        finally:
            await client.aclose()

    return asyncio.run(run()), sleep, seen, health


def ok() -> httpx.Response:
    return httpx.Response(200, json={"arc_id": "a", "status": "created"})


def test_503_with_retry_after_seconds_waits_at_least_that_long() -> None:
    result, sleep, seen, health = _call([httpx.Response(503, headers={"Retry-After": "3"}), ok()])
    assert isinstance(result, Reply) and result.attempts == 2 and result.body["status"] == "created"
    assert len(seen) == 2 and len(sleep.waits) == 1 and 3.0 <= sleep.waits[0] <= 3.0 + 1.0
    assert health.state is TargetState.UP  # the success after the wait resumed delivery


def test_each_retry_after_is_honoured_without_growing_backoff() -> None:
    busy = httpx.Response(503, headers={"Retry-After": "1"})
    result, sleep, _, _ = _call([busy, busy, busy, ok()])
    assert isinstance(result, Reply) and result.attempts == 4
    assert all(1.0 <= wait <= 1.2 for wait in sleep.waits)


def test_retry_after_as_http_date_is_honoured() -> None:
    when = httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"})
    result, sleep, _, _ = _call([when, ok()], retry_after_max_s=1e10)
    assert isinstance(result, Reply)
    assert sleep.waits[0] > 3600


@pytest.mark.parametrize("status", [408, 429, 500, 502, 504])
def test_retriable_statuses_back_off_with_jitter_below_the_cap(status: int) -> None:
    result, sleep, _, _ = _call([httpx.Response(status)] * 3 + [ok()])
    assert isinstance(result, Reply) and result.attempts == 4
    assert len(sleep.waits) == 3 and all(0 <= wait <= 2.0 for wait in sleep.waits)


@pytest.mark.parametrize(
    "error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("eof")]
)
def test_timeouts_and_connection_errors_pause_delivery_until_the_target_answers(error: Exception) -> None:
    result, _, seen, health = _call([error, error, ok()])
    assert isinstance(result, Reply) and result.attempts == 3 and len(seen) == 3
    assert health.state is TargetState.UP


def test_an_outage_costs_no_attempts_and_ends_only_past_the_outage_budget() -> None:
    result, sleep, seen, health = _call([httpx.Response(503, text="busy")], max_attempts=2, outage_budget_s=30)
    assert isinstance(result, AttemptError) and result.code == "target-failed" and result.status == 503
    assert len(seen) > 2, "waiting for the target is not this ARC's attempts"
    assert "outage_budget_s" in str(result) and sum(sleep.waits) > 30
    assert health.state is TargetState.UNAVAILABLE


@pytest.mark.parametrize(
    ("status", "reason"), [(400, "unknown-rdi"), (401, "certificate-required"), (403, "rdi-not-authorised")]
)
def test_a_misconfigured_uploader_waits_for_the_recheck_instead_of_failing(status: int, reason: str) -> None:
    refused = httpx.Response(status, json={"detail": "RDI 'x' is not recognized."})
    states: list[tuple[TargetState, str | None]] = []
    sleep = RecordingSleep()
    settings = _settings(misconfigured_recheck_s=30)
    health = TargetHealth(settings, lambda state: states.append((state, health.reason)), clock=sleep.clock)
    answers = iter([refused, refused, ok()])

    async def run() -> Reply:
        transport = httpx.MockTransport(lambda request: next(answers))
        client = TargetClient(settings, health, transport=transport, sleep=sleep)
        try:
            return await client.call("POST", "/v3/arcs", b"{}")
        finally:
            await client.aclose()

    assert isinstance(asyncio.run(run()), Reply)
    assert sleep.waits == [30, 30]  # one re-check per interval, nothing failed
    assert states == [(TargetState.MISCONFIGURED, reason), (TargetState.UP, None)]


@pytest.mark.parametrize("status", [404, 409, 413, 422])
def test_permanent_errors_fail_at_once_with_status_and_excerpt(status: int) -> None:
    result, sleep, seen, _ = _call([httpx.Response(status, json={"detail": f"reason {status}"})])
    assert isinstance(result, AttemptError)
    assert result.status == status and not result.retriable and result.attempts == 1
    assert result.code == "target-rejected"
    assert str(result).startswith(f"HTTP {status}") and f"reason {status}" in str(result)
    assert len(seen) == 1 and sleep.waits == []


def test_retries_of_one_arc_are_bounded_then_the_last_error_is_raised() -> None:
    result, sleep, seen, _ = _call([httpx.Response(500, text="Business logic error")], max_attempts=4)
    assert isinstance(result, AttemptError) and result.retriable and result.code == "target-failed"
    assert result.attempts == 4 and len(seen) == 4 and len(sleep.waits) == 3
    assert "gave up after 4 attempts" in str(result)


def test_retry_after_beyond_the_cap_stops_instead_of_retrying_early() -> None:
    result, sleep, seen, _ = _call([httpx.Response(429, headers={"Retry-After": "900"})], retry_after_max_s=60)
    assert isinstance(result, AttemptError) and len(seen) == 1 and sleep.waits == []
    assert "asked to wait 900s" in str(result)


def test_concurrency_is_bounded_by_max_concurrent_uploads() -> None:
    in_flight = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return ok()

    async def run() -> None:
        client = TargetClient(_settings(max_concurrent_uploads=3), transport=httpx.MockTransport(handler))
        try:
            await asyncio.gather(*(client.call("POST", "/v3/arcs", b"{}") for _ in range(12)))
        finally:
            await client.aclose()

    asyncio.run(run())
    assert peak == 3


def _verify_context(client: httpx.AsyncClient) -> ssl.SSLContext:
    transport = client._transport  # the pool holds the SSL context the client was built with
    context: ssl.SSLContext = transport._pool._ssl_context  # type: ignore[attr-defined]
    return context


def test_tls_verification_is_on_by_default() -> None:
    client = make_http_client(_settings(target_url="https://store.test"))
    context = _verify_context(client)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    asyncio.run(client.aclose())


def test_unreadable_client_certificate_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "client.pem"
    tls = TlsClientSettings(client_cert=missing, client_key=tmp_path / "client.key")
    with pytest.raises(ConfigError, match="client certificate"):
        make_http_client(_settings(tls=tls.model_dump()))


def test_timeouts_come_from_settings() -> None:
    client = make_http_client(_settings(connect_timeout_s=1.5, read_timeout_s=7, write_timeout_s=8, pool_timeout_s=9))
    assert client.timeout == httpx.Timeout(connect=1.5, read=7, write=8, pool=9)
    asyncio.run(client.aclose())
