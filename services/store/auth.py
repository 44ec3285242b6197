"""Who may use which RDI: known RDIs, client certificates and the RDIs a certificate lists.

The API answers, in this order: 401 ``Client certificate required`` when it requires
client certificates and none came; 400 ``RDI 'x' is not recognized.`` for an RDI not in
its ``known_rdis``; 403 ``RDI 'x' not authorized.`` for an RDI the certificate does not
list. A certificate lists its RDIs in the X.509 extension 1.3.6.1.4.1.64609.1.1, a DER
``SEQUENCE OF UTF8String``. Without client certificates every known RDI is allowed.
The client id the API reports is the certificate's common name.

The store terminates TLS itself (the API sits behind a proxy that forwards the
certificate in ``ssl-client-cert``); the handshake verifies the certificate against
``tls_client_ca`` and leaves "no certificate" to this module, so that case gets the
API's 401 instead of a failed handshake.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web
from asn1crypto import core, x509

from services.store.responses import ApiError

#: The X.509 extension in which a client certificate lists the RDIs it may use.
RDI_EXTENSION_OID = "1.3.6.1.4.1.64609.1.1"


class _Rdis(core.SequenceOf):
    _child_spec = core.UTF8String


@dataclass(frozen=True)
class ClientCertificate:
    common_name: str | None
    rdis: tuple[str, ...]


def _certificate_rdis(certificate: x509.Certificate) -> tuple[str, ...]:
    for extension in certificate["tbs_certificate"]["extensions"] or ():
        if extension["extn_id"].dotted == RDI_EXTENSION_OID:
            try:
                return tuple(str(item.native) for item in _Rdis.load(extension["extn_value"].native))
            except (ValueError, TypeError):
                return ()  # the API logs a malformed extension and allows no RDI
    return ()


def peer_certificate(request: web.Request) -> ClientCertificate | None:
    """The verified client certificate of this connection, or ``None`` (plain HTTP or none sent)."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return None
    certificate = x509.Certificate.load(der)
    names = certificate.subject.native
    return ClientCertificate(names.get("common_name"), _certificate_rdis(certificate))


class Authorizer:
    """The API's client and RDI checks for one store configuration."""

    def __init__(self, known_rdis: Iterable[str], require_client_cert: bool) -> None:
        self.known_rdis = frozenset(known_rdis)
        self.require_client_cert = require_client_cert

    def client(self, request: web.Request) -> ClientCertificate | None:
        """The caller's certificate; 401 when certificates are required and none came."""
        certificate = peer_certificate(request)
        if certificate is None and self.require_client_cert:
            raise ApiError(401, "Client certificate required")
        return certificate

    def authorize(self, rdi: str, client: ClientCertificate | None) -> None:
        """400 for an RDI the store does not know, 403 for one the client's certificate does not list."""
        if rdi not in self.known_rdis:
            raise ApiError(400, f"RDI '{rdi}' is not recognized.")
        if self.require_client_cert and (client is None or rdi not in client.rdis):
            raise ApiError(403, f"RDI '{rdi}' not authorized.")
