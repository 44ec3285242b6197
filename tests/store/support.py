"""A local store over a real socket for the store tests, and the small ARCs they send."""

from __future__ import annotations

import copy
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from services.common.config import StoreSettings
from services.dev.stack.ports import free_port
from services.store.app import StoreApp, server_ssl_context
from services.store.repository import Repository
from tests.support import serve_app

RDI = "arcstream-dev"

#: The smallest payload the v3 API accepts (the shared fixture example_arc_payload.json).
SMALLEST: dict[str, Any] = {
    "@context": "https://w3id.org/ro/crate/1.1/context",
    "@graph": [
        {"@id": "./", "@type": "Dataset", "additionalType": "Investigation", "identifier": "Test"},
        {
            "@id": "ro-crate-metadata.json",
            "@type": "CreativeWork",
            "conformsTo": {"@id": "https://w3id.org/ro/crate/1.1"},
            "about": {"@id": "./"},
        },
    ],
}


def crate(identifier: Any = "Test", **root: Any) -> dict[str, Any]:
    """:data:`SMALLEST` with another root identifier and more (or, with ``None``, fewer) root properties."""
    document = copy.deepcopy(SMALLEST)
    node = document["@graph"][0]
    node["identifier"] = identifier
    for key, value in root.items():
        if value is None:
            node.pop(key, None)
        else:
            node[key] = value
    return document


@asynccontextmanager
async def serving(
    directory: Path, client_cert: tuple[Path, Path] | None = None, ca: Path | None = None, **settings: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, StoreApp]]:
    """Run a store in this process on a free port; yield a client for it and the app.

    ``git_sync`` is off unless asked for: it starts an arctrl worker process, which only
    the tests of the sync itself need.
    """
    port = free_port()
    store_settings = StoreSettings(directory=directory, port=port, **({"git_sync": False} | settings))
    app = StoreApp(await Repository.open(directory), store_settings)
    verify: ssl.SSLContext | bool = False
    if ca is not None:
        verify = ssl.create_default_context(cafile=str(ca))
        if client_cert is not None:
            verify.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
    async with (
        serve_app(app.build(), server_ssl_context(store_settings), port) as url,
        httpx.AsyncClient(base_url=url, verify=verify, timeout=30) as client,
    ):
        yield client, app
