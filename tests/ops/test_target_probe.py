"""``probe_target``: one side-effect-free request says whether uploads can succeed, and why not.

Every answer but one comes from a real ``arcstream store`` process: plain HTTP for the
healthy and the unknown-RDI answers, HTTPS requiring client certificates (from the
shared test CA, :mod:`tests.pki`) for the certificate answers, a closed port for the
unreachable one. The store's request log shows what arrived. Only overload comes from a
fake: the store cannot answer a read with 503 (``fake_overloaded_api.py`` says why).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common.config import Settings, load_settings
from services.dev.stack.ports import free_port
from services.dev.stack.state import ServerRecord
from services.uploader.probe import PROBE_PATH, TargetProbe, probe_target
from tests.pki import Pki

from .fake_overloaded_api import FakeOverloadedApi, serving

RDI = "soil-rdi"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def settings_for(url: str, rdi: str = RDI, **uploader: object) -> Settings:
    return load_settings(rdi=rdi, uploader={"target_url": url, **uploader})


def probe(settings: Settings) -> TargetProbe:
    return asyncio.run(probe_target(settings))


def store_read(store: ServerRecord, path: str, ca: Path | None = None) -> Any:
    """A read-back route of the store (the request log, the stored ARCs); over HTTPS trusting ``ca``."""
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca)) if ca else True
    answer = httpx.get(f"{store.url}{path}", verify=verify, timeout=10)
    answer.raise_for_status()
    return answer.json()


def arrived(store: ServerRecord, ca: Path | None = None) -> list[tuple[str, str, dict[str, str], int]]:
    """(method, path, query, status) of every API request the store received, from its request log."""
    log = store_read(store, "/_store/requests", ca)
    return [(entry["method"], entry["path"], entry["query"], entry["status"]) for entry in log]


def probe_request(status: int) -> tuple[str, str, dict[str, str], int]:
    """The one request a probe sends: a read that names the RDI and asks for one harvest."""
    return ("GET", PROBE_PATH, {"rdi": RDI, "limit": "1"}, status)


def test_the_local_store_accepts_and_the_one_request_only_reads(start_store: Callable[..., ServerRecord]) -> None:
    store = start_store("store", "--known-rdi", RDI)
    result = probe(settings_for(store.url))
    assert result == TargetProbe(ok=True, status=200, problem=None, message=f"{store.url} accepts RDI {RDI!r}")
    assert not result.misconfigured
    assert arrived(store) == [probe_request(200)]
    assert store_read(store, "/v3/harvests") == [], "the probe opened no harvest"
    assert store_read(store, "/v3/arcs") == [], "the probe stored nothing"


def test_a_certificate_listing_the_rdi_is_accepted_over_mtls(
    start_store: Callable[..., ServerRecord], pki: Pki
) -> None:
    store = start_store("store", *pki.store_flags(), "--known-rdi", RDI)
    client = pki.client("soil-uploader", [RDI])
    tls = {"client_cert": str(client.cert), "client_key": str(client.key), "ca_bundle": str(pki.ca)}
    result = probe(settings_for(store.url, tls=tls))
    assert (result.ok, result.status, result.problem) == (True, 200, None)
    [entry] = store_read(store, "/_store/requests", pki.ca)
    assert entry["client"] == "soil-uploader", "the probe presented the configured certificate"
    assert (entry["method"], entry["path"], entry["query"]) == probe_request(200)[:3]


@pytest.mark.parametrize(
    ("known_rdis", "mtls", "certificate_rdis", "status", "problem", "says"),
    [
        pytest.param(["other"], False, None, 400, "rdi-unknown", f"does not know RDI {RDI!r}", id="unknown RDI"),
        pytest.param([RDI], True, None, 401, "certificate-missing", "client_cert", id="no client certificate"),
        pytest.param(
            [RDI, "other"], True, ["other"], 403, "certificate-refused", f"does not list RDI {RDI!r}",
            id="certificate without the RDI",
        ),
    ],
)  # fmt: skip
def test_each_refusal_of_the_store_is_one_line_with_its_fix(
    start_store: Callable[..., ServerRecord],
    pki: Pki,
    known_rdis: list[str],
    mtls: bool,
    certificate_rdis: list[str] | None,
    status: int,
    problem: str,
    says: str,
) -> None:
    flags = [arg for rdi in known_rdis for arg in ("--known-rdi", rdi)] + (list(pki.store_flags()) if mtls else [])
    store = start_store("store", *flags)
    tls: dict[str, str] = {"ca_bundle": str(pki.ca)} if mtls else {}
    if certificate_rdis is not None:
        client = pki.client("other-uploader", certificate_rdis)
        tls |= {"client_cert": str(client.cert), "client_key": str(client.key)}
    result = probe(settings_for(store.url, tls=tls))
    assert (result.ok, result.status, result.problem) == (False, status, problem)
    assert says in result.message and "\n" not in result.message
    assert result.misconfigured, "each needs a change of configuration, not patience"
    assert arrived(store, pki.ca if mtls else None) == [probe_request(status)]


def test_overload_is_transient_and_says_try_again_later() -> None:
    api = FakeOverloadedApi()

    async def run() -> TargetProbe:
        async with serving(api) as url:
            return await probe_target(settings_for(url))

    result = asyncio.run(run())
    assert (result.ok, result.status, result.problem) == (False, 503, "unavailable")
    assert "try again later" in result.message and "\n" not in result.message
    assert not result.misconfigured, "overload is transient"
    assert api.requests == [("GET", PROBE_PATH, {"rdi": RDI, "limit": "1"})]


def test_a_server_certificate_the_client_does_not_trust_is_a_tls_problem(
    start_store: Callable[..., ServerRecord], pki: Pki
) -> None:
    store = start_store("store", *pki.store_flags(), "--known-rdi", RDI)
    client = pki.client("soil-uploader", [RDI])
    # No ca_bundle: the system trust store does not know the test CA.
    result = probe(settings_for(store.url, tls={"client_cert": str(client.cert), "client_key": str(client.key)}))
    assert (result.ok, result.status, result.problem) == (False, None, "tls")
    assert "uploader.tls" in result.message and "\n" not in result.message
    assert arrived(store, pki.ca) == [], "no request got through the handshake"


def test_unreachable_not_v3_and_unusable_configuration(
    start_store: Callable[..., ServerRecord], tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    unreachable = probe(settings_for(closed))
    assert (unreachable.problem, unreachable.status) == ("unreachable", None)
    assert closed in unreachable.message and "uploader.target_url" in unreachable.message

    store = start_store("store", "--known-rdi", RDI)
    wrong_path = probe(settings_for(f"{store.url}/nothing-here"))
    assert (wrong_path.problem, wrong_path.status) == ("not-v3", 404)

    missing = tmp_path / "missing.pem"
    unusable = probe(settings_for(store.url, tls={"client_cert": str(missing)}))
    assert unusable.problem == "configuration" and str(missing) in unusable.message
    assert unusable.misconfigured
