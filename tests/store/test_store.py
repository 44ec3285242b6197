"""The local store beyond single request/answer rows: the git sync event, restarts, bytes kept, test hooks."""

from __future__ import annotations

import asyncio
import json
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.store.rawjson import parse_members
from tests.store.support import RDI, SMALLEST, crate, serving


async def _events_once_synced(client: httpx.AsyncClient, arc: dict[str, Any]) -> list[dict[str, Any]]:
    """Re-send the same ARC (a no-op) until its events show the git sync's outcome, as a client would see it."""
    for _ in range(300):
        events: list[dict[str, Any]] = (await client.post("/v3/arcs", json={"rdi": RDI, "arc": arc})).json()["events"]
        if events[-1]["type"].startswith("GIT_PUSH"):
            return events
        await asyncio.sleep(0.1)
    raise AssertionError("the git sync never recorded an outcome")


def test_what_arctrl_cannot_take_is_accepted_and_fails_later_in_the_git_sync(tmp_path: Path) -> None:
    no_investigation = crate("plain", additionalType=None)
    no_descriptor = {"@context": SMALLEST["@context"], "@graph": [crate("bare")["@graph"][0]]}

    async def scenario() -> None:
        async with serving(tmp_path, git_sync=True) as (client, _):
            for arc in (SMALLEST, no_investigation, no_descriptor):
                answer = await client.post("/v3/arcs", json={"rdi": RDI, "arc": arc})
                assert answer.status_code == 200 and answer.json()["status"] == "created"
            good = await _events_once_synced(client, SMALLEST)
            assert [e["type"] for e in good] == ["ARC_CREATED", "GIT_PUSH_SUCCESS"]
            plain = await _events_once_synced(client, no_investigation)
            assert plain[-1]["type"] == "GIT_PUSH_FAILED" and "additionalType" in plain[-1]["message"]
            bare = await _events_once_synced(client, no_descriptor)
            assert bare[-1]["type"] == "GIT_PUSH_FAILED" and "descriptor" in bare[-1]["message"]
            # Identical content is not synced again: no second event.
            again = (await client.post("/v3/arcs", json={"rdi": RDI, "arc": SMALLEST})).json()["events"]
            assert [e["type"] for e in again] == ["ARC_CREATED", "GIT_PUSH_SUCCESS"]

    asyncio.run(scenario())


def test_state_survives_a_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path) as (client, _):
            first = (await client.post("/v3/arcs", json={"rdi": RDI, "arc": crate("kept")})).json()
            open_id = (await client.post("/v3/harvests", json={"rdi": RDI})).json()["harvest_id"]
            await client.post(f"/v3/harvests/{open_id}/arcs", json={"arc": crate("kept")})
            await client.post(f"/v3/harvests/{open_id}/arcs", json={"arc": crate("new")})
        async with serving(tmp_path) as (client, _):
            again = (await client.post("/v3/arcs", json={"rdi": RDI, "arc": crate("kept")})).json()
            assert again["status"] == "updated" and again["metadata"]["arc_hash"] == first["metadata"]["arc_hash"]
            assert again["metadata"]["first_seen"] == first["metadata"]["first_seen"]
            conflict = await client.post(f"/v3/harvests/{open_id}/arcs", json={"arc": crate("new", name="other")})
            assert conflict.status_code == 409  # the harvest still knows what it received
            done = (await client.patch(f"/v3/harvests/{open_id}", json={"status": "COMPLETED"})).json()
            assert done["statistics"]["arcs_submitted"] == 2 and done["statistics"]["arcs_new"] == 1

    asyncio.run(scenario())


def test_the_arc_is_kept_byte_for_byte(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, test_hooks=True) as (client, _):
            arc_text = json.dumps(SMALLEST, indent=1)
            body = '{"rdi": ' + json.dumps(RDI) + ', "arc": ' + arc_text + "}"
            answer = await client.post("/v3/arcs", content=body, headers={"Content-Type": "application/json"})
            arc_id = answer.json()["arc_id"]
            assert (tmp_path / "arcs" / f"{arc_id}.json").read_text() == arc_text
            assert (await client.get(f"/v3/arcs/{arc_id}")).text == arc_text

    asyncio.run(scenario())


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_request_log_names_identifier_wait_and_body(tmp_path: Path, form: str) -> None:
    async def scenario() -> None:
        settings = {"failure_rate": 1.0, "retry_after_s": 2, "retry_after_format": form, "record_bodies": True}
        async with serving(tmp_path, test_hooks=True, **settings) as (client, _):
            answer = await client.post("/v3/arcs", json={"rdi": RDI, "arc": crate("busy")})
            assert answer.status_code == 503
            header = answer.headers["Retry-After"]
            assert header == "2" if form == "seconds" else parsedate_to_datetime(header).tzinfo is not None
            [entry] = (await client.get("/_store/requests")).json()
            assert entry["identifier"] == "busy" and entry["status"] == 503 and entry["retry_after"] == 2.0
            assert entry["answered"] >= entry["received"]
            assert json.loads(entry["body"])["arc"] == crate("busy")
            assert (await client.get("/v3/health")).status_code == 200  # health is never failed

    asyncio.run(scenario())


def test_raw_members_keep_the_exact_text() -> None:
    text = '{ "rdi" : "r" ,"arc":{"b": [1, 2.50, "x"],  "a": null} }'
    members = parse_members(text)
    assert members["rdi"] == ("r", '"r"')
    assert members["arc"][1] == '{"b": [1, 2.50, "x"],  "a": null}'
    for bad in ("[]", '{"a" 1}', '{"a": 1,}', '{"a": 1} x'):
        with pytest.raises(ValueError):
            parse_members(bad)


IDENTIFIERS = ["Test", "  Test \n", ["Test"], [" Test"], {"@value": " Test "}, [{"@value": "Test"}], 42, "", [], {}]


@pytest.mark.parametrize("value", IDENTIFIERS)
def test_identifier_rule_is_the_apis_own(value: Any) -> None:
    """The store reads the root identifier exactly as the API's model (fairagro-middleware-shared) does."""
    from middleware.shared.api_models.common.rocrate import extract_identifier

    from services.store.validation import normalized_identifier

    try:
        expected: str | None = extract_identifier({"@id": "./", "identifier": value})
    except ValueError:
        expected = None
    assert normalized_identifier(value) == expected
