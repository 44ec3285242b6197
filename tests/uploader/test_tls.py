"""mTLS between uploader and store over a real TLS socket (certificates from the shared test CA, :mod:`tests.pki`).

The client certificate lists the RDI it may upload for in the API's extension
1.3.6.1.4.1.64609.1.1 (a DER SEQUENCE OF UTF8String), as the real API requires.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from services.common.config import StoreSettings, UploaderSettings
from services.dev.stack.ports import free_port
from services.store.app import StoreApp, server_ssl_context
from services.store.repository import Repository
from services.uploader.health import TargetHealth, TargetState
from services.uploader.target import AttemptError, TargetClient
from tests.pki import CertificatePair, Pki
from tests.support import serve_app

ARC = (
    b'{"rdi":"r","arc":{"@context":"https://w3id.org/ro/crate/1.1/context","@graph":[{"@id":"./","@type":"Dataset","additionalType":"Investigation",'
    b'"identifier":"tls-1"},{"@id":"ro-crate-metadata.json","about":{"@id":"./"}}]}}'
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def uploader_cert(pki: Pki) -> CertificatePair:
    """The uploader's certificate: it may upload for RDI ``r``."""
    return pki.client("arcstream-uploader", ["r"])


@asynccontextmanager
async def tls_store(directory: Path, pki: Pki) -> AsyncIterator[tuple[str, StoreApp]]:
    port = free_port()
    settings = StoreSettings(
        directory=directory,
        port=port,
        tls_cert=pki.server.cert,
        tls_key=pki.server.key,
        tls_client_ca=pki.ca,
        known_rdis=["r"],
        test_hooks=True,
        git_sync=False,
    )
    app = StoreApp(await Repository.open(directory), settings)
    async with serve_app(app.build(), server_ssl_context(settings), port) as url:
        yield url, app


def _uploader_settings(url: str, **tls: object) -> UploaderSettings:
    """Quick retries, and an outage budget short enough that a failed handshake ends the call at once."""
    quick = {"max_attempts": 2, "backoff_initial_s": 0.01, "backoff_max_s": 0.1, "outage_budget_s": 0.001}
    return UploaderSettings.model_validate({"target_url": url, **quick, "tls": tls})


def test_mtls_delivers_and_the_store_sees_the_client_certificate(
    tmp_path: Path, pki: Pki, uploader_cert: CertificatePair
) -> None:
    async def scenario() -> None:
        async with tls_store(tmp_path, pki) as (url, app):
            client = TargetClient(
                _uploader_settings(url, client_cert=uploader_cert.cert, client_key=uploader_cert.key, ca_bundle=pki.ca)
            )
            try:
                reply = await client.call("POST", "/v3/arcs", ARC)
            finally:
                await client.aclose()
            assert reply.status == 200 and reply.body["status"] == "created"
            assert app.requests[-1]["client"] == "arcstream-uploader"

    asyncio.run(scenario())


def test_without_a_client_certificate_the_store_refuses_and_delivery_stops(tmp_path: Path, pki: Pki) -> None:
    async def scenario() -> None:
        async with tls_store(tmp_path, pki) as (url, app):
            health = TargetHealth(_uploader_settings(url, ca_bundle=pki.ca))
            client = TargetClient(_uploader_settings(url, ca_bundle=pki.ca), health)
            call = asyncio.ensure_future(client.call("POST", "/v3/arcs", ARC))
            try:
                async with asyncio.timeout(30):
                    while health.state is not TargetState.MISCONFIGURED:  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
                # As the real API: 401, not a TLS failure; and not this ARC's failure: it waits for the fix.
                assert health.reason == "certificate-required" and not call.done()
                assert [r["status"] for r in app.requests] == [401]
            finally:
                call.cancel()
                await client.aclose()

    asyncio.run(scenario())


def test_server_certificate_is_verified_by_default(tmp_path: Path, pki: Pki, uploader_cert: CertificatePair) -> None:
    async def scenario() -> None:
        async with tls_store(tmp_path, pki) as (url, app):
            # No CA bundle: the system trust store does not know the test CA, so the handshake fails.
            client = TargetClient(_uploader_settings(url, client_cert=uploader_cert.cert, client_key=uploader_cert.key))
            try:
                with pytest.raises(AttemptError, match=r"CERTIFICATE_VERIFY_FAILED|connection error"):
                    await client.call("POST", "/v3/arcs", ARC)
            finally:
                await client.aclose()
            assert app.requests == []

    asyncio.run(scenario())
