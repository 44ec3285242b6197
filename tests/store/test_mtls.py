"""Client certificates and RDI authorisation over real TLS, as the API does it (one row per behaviour).

Certificates come from the shared test CA (:mod:`tests.pki`), which encodes the RDI
extension by hand, independently of the store's decoder.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.pki import CertificatePair, Pki
from tests.store.support import RDI, SMALLEST, serving

#: The clients of the cases: one listing the RDI (and another), one listing only another, one listing none.
CLIENT_RDIS: dict[str, tuple[str, ...] | None] = {"allowed": (RDI, "second"), "other": ("second",), "bare": None}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def clients(pki: Pki) -> dict[str, CertificatePair]:
    return {name: pki.client(f"client-{name}", rdis) for name, rdis in CLIENT_RDIS.items()}


@dataclass(frozen=True)
class Case:
    behaviour: str
    client: str | None
    method: str
    path: str
    status: int
    detail: str | None = None


CASES = [
    Case("no client certificate while required is 401", None, "POST", "/v3/arcs", 401, "Client certificate required"),
    Case("a certificate listing the RDI may use it", "allowed", "POST", "/v3/arcs", 200),
    Case("an RDI the certificate does not list is 403", "other", "POST", "/v3/arcs", 403,
         f"RDI '{RDI}' not authorized."),
    Case("a certificate without the RDI extension allows no RDI", "bare", "POST", "/v3/arcs", 403),
    Case("an unknown RDI is 400 before the certificate check", "allowed", "POST", "/v3/arcs?rdi=nope", 400),
    Case("harvest creation is authorised the same way", "other", "POST", "/v3/harvests", 403),
    Case("a harvest the caller may not see is 404, not 403", "other", "GET", "/v3/harvests/{harvest}", 404,
         "Harvest not found"),
    Case("the owner's RDI sees its harvest", "allowed", "GET", "/v3/harvests/{harvest}", 200),
    Case("no certificate is 401 even for GET", None, "GET", "/v3/harvests/{harvest}", 401),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.behaviour for case in CASES])
def test_certificates_and_rdis(tmp_path: Path, pki: Pki, clients: dict[str, CertificatePair], case: Case) -> None:
    tls = {"tls_cert": pki.server.cert, "tls_key": pki.server.key, "tls_client_ca": pki.ca}

    async def scenario() -> None:
        # The scene (a harvest of RDI) is set by the allowed client; the case runs as its own client.
        async with serving(tmp_path / "store", client_cert=clients["allowed"], ca=pki.ca, **tls) as (owner, _):
            harvest_id = (await owner.post("/v3/harvests", json={"rdi": RDI})).json()["harvest_id"]
        client_cert = clients[case.client] if case.client else None
        async with serving(tmp_path / "store", client_cert=client_cert, ca=pki.ca, **tls) as (client, _):
            path, _, query = case.path.format(harvest=harvest_id).partition("?rdi=")
            body = {"rdi": query or RDI} | ({"arc": SMALLEST} if path == "/v3/arcs" else {})
            if case.method == "POST":
                answer = await client.post(path, json=body)
            else:
                answer = await client.get(path)
            assert answer.status_code == case.status, answer.text
            if case.detail is not None:
                assert answer.json()["detail"] == case.detail
            if answer.status_code == 200 and path == "/v3/arcs":
                assert answer.json()["client_id"] == f"client-{case.client}"

    asyncio.run(scenario())
