"""A test certificate authority: the server certificate of a local store and client certificates listing RDIs.

One place for the certificates of every mTLS test (store, uploader, doctor, probe), made
with ``cryptography`` in-process (no ``openssl`` binary needed). A client certificate lists
the RDIs it may use in the API's X.509 extension 1.3.6.1.4.1.64609.1.1, a DER
``SEQUENCE OF UTF8String``; :func:`rdi_sequence` encodes it by hand, independently of the
store's decoder, so a test of that decoder is not a test of itself.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.store.auth import RDI_EXTENSION_OID

#: How long the certificates are valid: long enough for any test session, from a little before now.
_VALIDITY = datetime.timedelta(days=1)
_CLOCK_SKEW = datetime.timedelta(minutes=5)


class CertificatePair(NamedTuple):
    """PEM files of a certificate and its private key (a tuple, as the TLS helpers take it)."""

    cert: Path
    key: Path


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def rdi_sequence(*rdis: str) -> bytes:
    """DER ``SEQUENCE OF UTF8String`` (tag 0x30 holding 0x0C items): the RDI extension's value."""
    items = b"".join(b"\x0c" + _der_length(len(r.encode())) + r.encode() for r in rdis)
    return b"\x30" + _der_length(len(items)) + items


class Pki:
    """A CA in ``directory`` (``ca.pem``), a server certificate for 127.0.0.1, client certificates on demand."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "arcstream test CA")])
        ca = (
            self._builder(self._name, self._key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.ca = self._write("ca", ca, self._key).cert
        self.server = self._issue(
            "server",
            "127.0.0.1",
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
        )

    def client(self, common_name: str, rdis: Sequence[str] | None) -> CertificatePair:
        """A client certificate named ``common_name`` listing ``rdis`` (``None``: without the RDI extension)."""
        extensions: list[x509.ExtensionType] = [x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])]
        if rdis is not None:
            value = rdi_sequence(*rdis)
            extensions.append(x509.UnrecognizedExtension(x509.ObjectIdentifier(RDI_EXTENSION_OID), value))
        return self._issue(f"client-{common_name}", common_name, *extensions)

    def store_flags(self) -> tuple[str, ...]:
        """``arcstream store`` flags: HTTPS with the server certificate, client certificates of this CA required."""
        server_cert, server_key = self.server
        return ("--tls-cert", str(server_cert), "--tls-key", str(server_key), "--tls-client-ca", str(self.ca))

    def _builder(self, subject: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + _VALIDITY)
        )

    def _issue(self, file_stem: str, common_name: str, *extensions: x509.ExtensionType) -> CertificatePair:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), key)
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        return self._write(file_stem, builder.sign(self._key, hashes.SHA256()), key)

    def _write(self, file_stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> CertificatePair:
        pair = CertificatePair(self.directory / f"{file_stem}.pem", self.directory / f"{file_stem}.key")
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pair.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return pair
