"""The local ARC store over a real socket: v3 semantics, delete, fault injection, restart."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from services.common.config import StoreSettings
from services.common.content_hash import content_hash
from services.dev.stack.ports import free_port
from services.store.app import StoreApp
from services.store.rawjson import parse_members
from services.store.repository import Repository

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


def crate(identifier: str, name: str = "", **root: Any) -> dict[str, Any]:
    return {
        "@context": "https://w3id.org/ro/crate/1.1/context",
        "@graph": [
            {"@id": "./", "@type": "Dataset", "additionalType": "Investigation", "identifier": identifier, **root}
            | ({"name": name} if name else {}),
            {"@id": "ro-crate-metadata.json", "@type": "CreativeWork", "about": {"@id": "./"}},
        ],
    }


@asynccontextmanager
async def serving(directory: Path, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    store_settings = StoreSettings(directory=directory, port=port, **settings)
    runner = web.AppRunner(StoreApp(await Repository.open(directory), store_settings).build())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield client
    finally:
        await runner.cleanup()


def run(directory: Path, scenario: Callable[[httpx.AsyncClient], Awaitable[None]], **settings: Any) -> None:
    async def main() -> None:
        async with serving(directory, **settings) as client:
            await scenario(client)

    asyncio.run(main())


def body(rdi: str, arc: dict[str, Any]) -> bytes:
    return b'{"rdi": ' + json.dumps(rdi).encode() + b', "arc": ' + json.dumps(arc, indent=1).encode() + b"}"


def test_arc_id_identical_content_and_changed_content(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        arc = SMALLEST
        first = (await client.post("/v3/arcs", content=body("rdi-1", arc))).json()
        assert first["status"] == "created"
        assert first["arc_id"] == hashlib.sha256(b"Test:rdi-1").hexdigest()
        assert first["metadata"]["arc_hash"] == content_hash(arc)
        stored = (tmp_path / "arcs" / f"{first['arc_id']}.json").read_bytes()
        assert stored == json.dumps(arc, indent=1).encode()  # byte for byte as sent

        # Same content with another publishing date: a no-op answered "updated", same hash.
        again = (await client.post("/v3/arcs", content=body("rdi-1", arc | {"datePublished": "2030"}))).json()
        assert again["status"] == "updated" and again["metadata"]["arc_hash"] == first["metadata"]["arc_hash"]
        assert [e["type"] for e in again["events"]] == ["ARC_CREATED"]

        changed = crate("Test", name="changed")
        third = (await client.post("/v3/arcs", content=body("rdi-1", changed))).json()
        assert third["status"] == "updated" and third["metadata"]["arc_hash"] == content_hash(changed)
        assert [e["type"] for e in third["events"]] == ["ARC_CREATED", "ARC_UPDATED"]

        other_rdi = (await client.post("/v3/arcs", content=body("rdi-2", arc))).json()
        assert other_rdi["status"] == "created" and other_rdi["arc_id"] != first["arc_id"]
        fetched = await client.get(f"/v3/arcs/{first['arc_id']}")
        assert fetched.content == json.dumps(changed, indent=1).encode()

    run(tmp_path, scenario)


@pytest.mark.parametrize(
    ("arc", "reason"),
    [
        ({"@graph": []}, "descriptor"),
        ({"@graph": [{"@id": "ro-crate-metadata.json", "about": {"@id": "./"}}]}, "root"),
        (crate("x") | {"@graph": [{"@id": "./", "@type": "Dataset", "identifier": "x"}]}, "descriptor"),
        ({"@graph": crate("")["@graph"]}, "identifier"),
        ({"@graph": [crate("x")["@graph"][0] | {"additionalType": "Study"}, crate("x")["@graph"][1]]}, "Investigation"),
        ([1, 2], "JSON object"),
    ],
)
def test_payload_without_ro_crate_root_is_422(tmp_path: Path, arc: Any, reason: str) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        answer = await client.post("/v3/arcs", content=json.dumps({"rdi": "r", "arc": arc}))
        assert answer.status_code == 422 and reason in answer.json()["detail"]

    run(tmp_path, scenario)


def test_harvest_lifecycle_conflicts_and_statistics(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        harvest = (await client.post("/v3/harvests", json={"rdi": "r", "expected_datasets": 3})).json()
        hid = harvest["harvest_id"]
        assert harvest["status"] == "RUNNING" and harvest["statistics"]["expected_datasets"] == 3
        for identifier in ("a", "b"):
            answer = await client.post(f"/v3/harvests/{hid}/arcs", json={"arc": crate(identifier)})
            assert answer.status_code == 200 and answer.json()["status"] == "created"
        # A retry of the same content is fine and not counted twice ...
        assert (await client.post(f"/v3/harvests/{hid}/arcs", json={"arc": crate("a")})).status_code == 200
        # ... other content for an identifier already in this harvest is a conflict.
        conflict = await client.post(f"/v3/harvests/{hid}/arcs", json={"arc": crate("a", name="other")})
        assert conflict.status_code == 409 and "already submitted" in conflict.json()["detail"]
        stats = (await client.get(f"/v3/harvests/{hid}")).json()["statistics"]
        assert stats["arcs_submitted"] == 2 and stats["arcs_new"] == 2

        done = await client.patch(f"/v3/harvests/{hid}", json={"status": "COMPLETED"})
        assert done.status_code == 200 and done.json()["status"] == "COMPLETED" and done.json()["completed_at"]
        assert (await client.patch(f"/v3/harvests/{hid}", json={"status": "FAILED"})).status_code == 409
        closed = await client.post(f"/v3/harvests/{hid}/arcs", json={"arc": crate("c")})
        assert closed.status_code == 409
        assert (await client.patch(f"/v3/harvests/{hid}", json={"status": "DONE"})).status_code == 422
        assert (await client.post("/v3/harvests/nope/arcs", json={"arc": crate("c")})).status_code == 404

        second = (await client.post("/v3/harvests", json={"rdi": "r"})).json()["harvest_id"]
        assert (await client.post(f"/v3/harvests/{second}/arcs", json={"arc": crate("a")})).json()["status"] == (
            "updated"
        )
        assert (await client.get(f"/v3/harvests/{second}")).json()["statistics"]["arcs_unchanged"] == 1
        assert (await client.delete(f"/v3/harvests/{second}")).status_code == 204
        assert (await client.get(f"/v3/harvests/{second}")).json()["status"] == "CANCELLED"

    run(tmp_path, scenario)


def test_delete_removes_the_file(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        arc_id = (await client.post("/v3/arcs", json={"rdi": "r", "arc": crate("gone")})).json()["arc_id"]
        assert (tmp_path / "arcs" / f"{arc_id}.json").exists()
        deleted = await client.delete(f"/v3/arcs/{arc_id}")
        assert deleted.status_code == 200 and deleted.json()["status"] == "deleted"
        assert not (tmp_path / "arcs" / f"{arc_id}.json").exists()
        assert (await client.delete(f"/v3/arcs/{arc_id}")).status_code == 404
        again = (await client.post("/v3/arcs", json={"rdi": "r", "arc": crate("gone")})).json()
        assert again["status"] == "created"

    run(tmp_path, scenario)


def test_state_survives_a_restart(tmp_path: Path) -> None:
    state: dict[str, Any] = {}

    async def before(client: httpx.AsyncClient) -> None:
        state["arc"] = (await client.post("/v3/arcs", json={"rdi": "r", "arc": crate("kept")})).json()
        hid = (await client.post("/v3/harvests", json={"rdi": "r"})).json()["harvest_id"]
        await client.post(f"/v3/harvests/{hid}/arcs", json={"arc": crate("kept")})
        state["harvest"] = hid

    async def after(client: httpx.AsyncClient) -> None:
        again = (await client.post("/v3/arcs", json={"rdi": "r", "arc": crate("kept")})).json()
        assert again["status"] == "updated" and again["metadata"]["arc_hash"] == state["arc"]["metadata"]["arc_hash"]
        harvest = (await client.get(f"/v3/harvests/{state['harvest']}")).json()
        assert harvest["status"] == "RUNNING" and harvest["statistics"]["arcs_submitted"] == 1

    run(tmp_path, before)
    run(tmp_path, after)


def test_body_limit_answers_413_naming_the_limit(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        answer = await client.post("/v3/arcs", json={"rdi": "r", "arc": crate("big", name="x" * 2000)})
        assert answer.status_code == 413 and "limit of 1000 bytes" in answer.json()["detail"]
        small = await client.post("/v3/arcs", json={"rdi": "r", "arc": crate("s")})
        assert small.status_code == 200

    run(tmp_path, scenario, max_body_bytes=1000)


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_injected_overload_is_503_with_retry_after(tmp_path: Path, form: str) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        answer = await client.post("/v3/arcs", json={"rdi": "r", "arc": crate("busy")})
        assert answer.status_code == 503
        header = answer.headers["Retry-After"]
        if form == "seconds":
            assert header == "2"
        else:
            assert parsedate_to_datetime(header).tzinfo is not None
        log = (await client.get("/_store/requests")).json()
        assert log[-1]["identifier"] == "busy" and log[-1]["status"] == 503 and log[-1]["retry_after"] == 2.0
        assert log[-1]["answered"] >= log[-1]["received"]
        assert (await client.get("/v3/health")).status_code == 200  # health is never failed

    run(tmp_path, scenario, failure_rate=1.0, retry_after_s=2, retry_after_format=form)


def test_raw_members_keep_the_exact_text() -> None:
    text = '{ "rdi" : "r" ,"arc":{"b": [1, 2.50, "x"],  "a": null} }'
    members = parse_members(text)
    assert members["rdi"] == ("r", '"r"')
    assert members["arc"][1] == '{"b": [1, 2.50, "x"],  "a": null}'
    for bad in ("[]", '{"a" 1}', '{"a": 1,}', '{"a": 1} x'):
        with pytest.raises(ValueError):
            parse_members(bad)
