"""Probe the upload target once, without side effects: reachable? RDI known? certificate accepted?

The request is ``GET /v3/harvests?rdi=<rdi>&limit=1`` with the uploader's own client
(base URL, timeouts, mTLS). On the real API (FAIRagro middleware v3,
``middleware/api/api/v3/harvests.py`` ``list_harvests``) it runs exactly the checks an
upload runs, in the same order, and changes nothing:

1. the client certificate (``get_client_id``): **401** ``Client certificate required`` when
   the server requires one and none came, 401 when its verification failed;
2. ``Accept`` must allow JSON, else 406;
3. ``validate_rdi_authorized(rdi)``: **400** ``RDI 'x' is not recognized.`` for an RDI not in
   the server's ``known_rdis``, **403** ``RDI 'x' not authorized.`` when the certificate does
   not list it;
4. then it only reads (at most one harvest of this RDI) and answers 200.

Every other request that checks the RDI writes something (``POST /v3/arcs`` stores an ARC,
``POST /v3/harvests`` opens a harvest), and the health endpoints check no RDI. A server
that answers 404 is not a v3 API at that URL.

:func:`probe_target` returns a :class:`TargetProbe`; ``misconfigured`` says uploads cannot
succeed until someone changes a setting (or the server's registration), as opposed to a
target that is only unavailable for now (5xx, 503 overload).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Literal

import httpx

from services.common.config import Settings
from services.common.errors import ConfigError
from services.uploader.target import make_http_client

#: Path of the probe request; the query names the RDI and asks for at most one harvest.
PROBE_PATH = "/v3/harvests"

Problem = Literal[
    "configuration",  # the client cannot even be built (certificate file unreadable, ...)
    "unreachable",  # no connection (refused, DNS, timeout)
    "tls",  # the TLS handshake failed (server certificate, protocol)
    "certificate-missing",  # the server requires a client certificate and got none (401 or TLS alert)
    "certificate-refused",  # the certificate does not list this RDI (403), or failed verification (401)
    "rdi-unknown",  # the server does not know this RDI (400)
    "not-v3",  # 404: no FAIRagro v3 API at this URL
    "unavailable",  # 5xx / 503: the server cannot answer now (transient)
    "unexpected",  # any other answer
]

#: Problems that need a change of configuration (ours or the server's registration), not patience.
MISCONFIGURATIONS: frozenset[Problem] = frozenset(
    {"configuration", "unreachable", "tls", "certificate-missing", "certificate-refused", "rdi-unknown", "not-v3"}
)


@dataclass(frozen=True)
class TargetProbe:
    """The outcome of one probe: ``ok``, the HTTP status (``None``: no answer), the problem and one line."""

    ok: bool
    status: int | None
    problem: Problem | None
    #: One line: what was found and, for a problem, what to fix.
    message: str

    @property
    def misconfigured(self) -> bool:
        return self.problem in MISCONFIGURATIONS


def _detail(response: httpx.Response) -> str:
    """The API's ``{"detail": ...}`` text, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200]
    detail = body.get("detail") if isinstance(body, dict) else None
    return str(detail if detail is not None else body)[:200]


def _failed(problem: Problem, message: str, status: int | None = None) -> TargetProbe:
    return TargetProbe(ok=False, status=status, problem=problem, message=message)


def _classify(settings: Settings, response: httpx.Response) -> TargetProbe:
    url, rdi, status = settings.uploader.target_url, settings.rdi, response.status_code
    said = f"{status} {_detail(response)}".strip()
    if status == 200:
        return TargetProbe(ok=True, status=status, problem=None, message=f"{url} accepts RDI {rdi!r}")
    if status == 400:
        return _failed(
            "rdi-unknown",
            f"{url} does not know RDI {rdi!r} ({said}): set rdi to the name the API's operator registered "
            "for you, or ask them to register it",
            status,
        )
    if status == 401:
        required = "required" in said.lower()
        return _failed(
            "certificate-missing" if required else "certificate-refused",
            f"{url} refused the client certificate ({said}): "
            + (
                "set uploader.tls.client_cert and uploader.tls.client_key"
                if required
                else "check that the certificate is the one the API's operator issued"
            ),
            status,
        )
    if status == 403:
        return _failed(
            "certificate-refused",
            f"the client certificate does not list RDI {rdi!r} ({said}): use the certificate issued for "
            f"{rdi!r}, or set rdi to an RDI it lists",
            status,
        )
    if status == 404:
        return _failed(
            "not-v3", f"{url} answers 404 for {PROBE_PATH}: no ARC store API v3 there (check uploader.target_url)", 404
        )
    if status >= 500:
        return _failed("unavailable", f"{url} cannot answer now ({said}); uploads retry, try again later", status)
    return _failed("unexpected", f"{url} answered {said} to GET {PROBE_PATH}", status)


def _transport_problem(settings: Settings, exc: httpx.TransportError) -> TargetProbe:
    url = settings.uploader.target_url
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__ or cause.__context__
    if cause is not None or "SSL" in str(exc) or "CERTIFICATE" in str(exc).upper():
        reason = str(cause or exc).strip() or type(exc).__name__
        if "certificate required" in reason.lower() and settings.uploader.tls.client_cert is None:
            return _failed(
                "certificate-missing",
                f"{url} requires a client certificate ({reason}): set uploader.tls.client_cert and client_key",
            )
        return _failed("tls", f"TLS with {url} failed ({reason}): check uploader.tls (ca_bundle, client_cert, verify)")
    reason = str(exc).strip() or type(exc).__name__
    return _failed(
        "unreachable", f"cannot reach the ARC store at {url} ({reason}): check uploader.target_url (ARC_STORE_URL)"
    )


async def probe_target(settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> TargetProbe:
    """Send the side-effect-free probe request and classify the answer (never raises for the target's faults)."""
    try:
        client = make_http_client(settings.uploader, transport=transport)
        async with client:
            response = await client.get(PROBE_PATH, params={"rdi": settings.rdi, "limit": 1})
    except ConfigError as exc:
        return _failed("configuration", str(exc))
    except httpx.InvalidURL as exc:
        return _failed("configuration", f"uploader.target_url is not a valid URL: {exc}")
    except httpx.TransportError as exc:
        return _transport_problem(settings, exc)
    return _classify(settings, response)
