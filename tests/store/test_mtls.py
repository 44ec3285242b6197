"""Client certificates and RDI authorisation over real TLS, as the API does it (one row per behaviour).

Certificates are made here with ``cryptography``; a client certificate lists its RDIs in
the extension 1.3.6.1.4.1.64609.1.1 as a DER ``SEQUENCE OF UTF8String`` (encoded by hand
below, independently of the store's decoder).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.store.auth import RDI_EXTENSION_OID
from tests.store.support import RDI, SMALLEST, serving


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def rdi_sequence(*rdis: str) -> bytes:
    """DER ``SEQUENCE OF UTF8String`` (tag 0x30 holding 0x0C items)."""
    items = b"".join(b"\x0c" + _der_length(len(r.encode())) + r.encode() for r in rdis)
    return b"\x30" + _der_length(len(items)) + items


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca: Path

    def pair(self, name: str) -> tuple[Path, Path]:
        return self.directory / f"{name}.pem", self.directory / f"{name}.key"


def _write(directory: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / f"{name}.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "arcstream test CA")])

    def issue(subject: str, key: ec.EllipticCurvePrivateKey, *extensions: x509.ExtensionType) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write(directory, "ca", ca, ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = issue(
        "127.0.0.1",
        server_key,
        x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
    )
    _write(directory, "server", server, server_key)
    client_auth = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    for name, rdis in {"allowed": (RDI, "second"), "other": ("second",), "bare": None}.items():
        key = ec.generate_private_key(ec.SECP256R1())
        extra = (
            []
            if rdis is None
            else [x509.UnrecognizedExtension(x509.ObjectIdentifier(RDI_EXTENSION_OID), rdi_sequence(*rdis))]
        )
        _write(directory, name, issue(f"client-{name}", key, client_auth, *extra), key)
    return Pki(directory, directory / "ca.pem")


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
def test_certificates_and_rdis(tmp_path: Path, pki: Pki, case: Case) -> None:
    tls = {"tls_cert": pki.pair("server")[0], "tls_key": pki.pair("server")[1], "tls_client_ca": pki.ca}

    async def scenario() -> None:
        # The scene (a harvest of RDI) is set by the allowed client; the case runs as its own client.
        async with serving(tmp_path / "store", client_cert=pki.pair("allowed"), ca=pki.ca, **tls) as (owner, _):
            harvest_id = (await owner.post("/v3/harvests", json={"rdi": RDI})).json()["harvest_id"]
        client_cert = pki.pair(case.client) if case.client else None
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
