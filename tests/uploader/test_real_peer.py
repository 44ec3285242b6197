"""A real peer on each side of the local store.

- The official client (``fairagro-middleware-api-client`` 12.3.0, unmodified) runs whole
  harvests against a store process over a socket: if the store differed from the API in
  a way the client relies on (``POST .../complete``, response shapes, statuses), it fails here.
- Every request body the real uploader sends (recorded by the store) validates against the
  API's own request models from ``fairagro-middleware-shared``, with extra keys forbidden as
  the API forbids them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from middleware.api_client import ApiClient, ApiClientError, ArcStatus, Config, HarvestStatus
from middleware.shared.api_models.v3 import models as api
from pydantic import BaseModel, ConfigDict

from services.common.config import Settings
from tests.support import until

from .conftest import ArcsTopic, StoreProcess, arc_document, running_uploader, upload_settings

RDI = "test-rdi"


def test_the_official_client_runs_harvests_against_the_local_store(make_store: Callable[..., StoreProcess]) -> None:
    store = make_store()
    identifiers = [f"peer-{i}" for i in range(6)]

    async def arcs(title: str = "") -> AsyncIterator[dict[str, Any]]:
        for identifier in identifiers:
            yield arc_document(identifier, title)

    async def scenario() -> None:
        async with ApiClient(Config(api_url=store.url, max_retries=0)) as client:
            first = await client.harvest_arcs(RDI, arcs(), expected_datasets=len(identifiers))
            assert first.status is HarvestStatus.COMPLETED and first.errors == []
            assert first.statistics.expected_datasets == len(identifiers)
            assert first.statistics.arcs_submitted == first.statistics.arcs_new == len(identifiers)

            # Same content again (new publishing dates only): every ARC submitted, all unchanged.
            second = await client.harvest_arcs(RDI, arcs())
            assert (second.statistics.arcs_submitted, second.statistics.arcs_unchanged) == (len(identifiers),) * 2
            assert (await client.get_harvest(first.harvest_id)).status is HarvestStatus.COMPLETED

            single = await client.create_or_update_arc(RDI, arc_document("peer-0", "changed"))
            assert single.status is ArcStatus.UPDATED
            assert [event.type for event in single.events][:2] == ["ARC_CREATED", "ARC_UPDATED"]

            cancelled = await client.create_harvest(RDI)
            assert (await client.cancel_harvest(cancelled.harvest_id)).status is HarvestStatus.CANCELLED
            with pytest.raises(ApiClientError) as unknown:
                await client.create_harvest("not-known-here")
            assert unknown.value.status_code == 400

        completes = [r for r in store.requests() if r["path"].endswith("/complete")]
        assert [r["status"] for r in completes] == [200, 200]  # the deprecated route the client uses

    asyncio.run(scenario())


def _strict[M: BaseModel](model: type[M]) -> type[M]:
    """The API's request model with extra keys forbidden, as the API answers them (422 extra_forbidden)."""
    return type(f"Strict{model.__name__}", (model,), {"model_config": ConfigDict(extra="forbid")})


#: (method, path pattern) -> the API's model for that request's body; ``None``: no body.
REQUEST_MODELS: dict[tuple[str, str], type[BaseModel] | None] = {
    ("POST", r"/v3/arcs"): _strict(api.CreateArcRequest),
    ("POST", r"/v3/harvests"): _strict(api.CreateHarvestRequest),
    ("POST", r"/v3/harvests/[^/]+/arcs"): _strict(api.SubmitHarvestArcRequest),
    ("PATCH", r"/v3/harvests/[^/]+"): _strict(api.PatchHarvestRequest),
    ("POST", r"/v3/harvests/[^/]+/complete"): None,
    ("DELETE", r"/v3/harvests/[^/]+"): None,
    ("DELETE", r"/v3/arcs/[0-9a-f]{64}"): None,
    ("GET", r"/v3/harvests(/[^/]+)?"): None,  # also this test's own polling
}


def _model_for(method: str, path: str) -> type[BaseModel] | None:
    for (model_method, pattern), model in REQUEST_MODELS.items():
        if method == model_method and re.fullmatch(pattern, path):
            return model
    raise AssertionError(f"the uploader sent {method} {path}, a request the API does not have")


def test_every_body_the_uploader_sends_validates_against_the_api_models(
    make_settings: Callable[..., Settings], make_store: Callable[..., StoreProcess], arcs_topic: ArcsTopic
) -> None:
    store = make_store("--record-bodies")
    settings = upload_settings(make_settings, store)

    async def scenario() -> None:
        # A snapshot run (harvest), then single changes outside runs; tombstones are left to the lead's
        # delete rules (against the API they send nothing that has a body).
        await arcs_topic.snapshot_run([arc_document(f"body-{i}") for i in range(4)])
        await arcs_topic.arcs([arc_document("body-0", "changed"), arc_document("body-new")])

        async def delivered() -> bool:
            singles = [r for r in store.requests() if r["path"] == "/v3/arcs" and r["status"] == 200]
            closed = [h for h in store.get("/v3/harvests") if h["status"] != "RUNNING"]
            return bool(closed) and len(singles) == 2

        async with running_uploader(settings):
            await until(delivered, what="a closed harvest and the single changes")

    asyncio.run(scenario())

    validated: dict[str, int] = {}
    for request in store.requests():
        model = _model_for(request["method"], request["path"])
        if model is None:
            assert not request["body"], f"{request['method']} {request['path']} has a body"
            continue
        body = model.model_validate(orjson.loads(request["body"]))
        if hasattr(body, "arc"):
            # The store read the same identifier from the ARC as the API's own model does.
            assert body.arc.identifier == request["identifier"]
        validated[model.__name__] = validated.get(model.__name__, 0) + 1
    assert validated.keys() == {
        "StrictCreateArcRequest",
        "StrictCreateHarvestRequest",
        "StrictSubmitHarvestArcRequest",
        "StrictPatchHarvestRequest",
    }, validated
    assert validated["StrictSubmitHarvestArcRequest"] == 4 and validated["StrictCreateArcRequest"] == 2
