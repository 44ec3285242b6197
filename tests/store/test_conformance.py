"""The local store against the real API's behaviour (``TARGET_API.md``): one row per behaviour.

A row is: the requests that set the scene (``given``, each must succeed), the request
under test, and the status, body and headers the real API answers. Bodies are matched
as subsets (a dict names only the keys that matter); a callable checks a value.
``{harvest}`` in a path or an expected string is the newest harvest the row created,
``{harvest1}``, ``{harvest2}`` the first and second. Every row runs against a fresh
store over a real socket.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common.content_hash import content_hash
from tests.store.support import RDI, SMALLEST, crate, serving

TEST_ID = hashlib.sha256(f"Test:{RDI}".encode()).hexdigest()


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def post_arc(arc: Any, rdi: str = RDI) -> Call:
    return Call("POST", "/v3/arcs", json={"rdi": rdi, "arc": arc})


def harvest(expected: int | None = None) -> Call:
    return Call("POST", "/v3/harvests", json={"rdi": RDI} | ({"expected_datasets": expected} if expected else {}))


def into_harvest(arc: Any) -> Call:
    return Call("POST", "/v3/harvests/{harvest}/arcs", json={"arc": arc})


def finish(status: str = "COMPLETED") -> Call:
    return Call("PATCH", "/v3/harvests/{harvest}", json={"status": status})


@dataclass(frozen=True)
class Row:
    behaviour: str
    request: Call
    status: int
    body: Any = None
    given: tuple[Call, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


def ends(suffix: str) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, str) and value.endswith(suffix) and not value.endswith("+00:00" + suffix)


def arc_timestamp(value: Any) -> bool:
    return isinstance(value, str) and value.endswith("+00:00Z")


def problem(kind: str, *loc: str | int) -> dict[str, Any]:
    """A FastAPI 422 body holding this problem."""
    return {"detail": lambda problems: any(p["type"] == kind and p["loc"] == ["body", *loc] for p in problems)}


def events(*kinds: str) -> Callable[[Any], bool]:
    return lambda value: [event["type"] for event in value] == list(kinds)


def stats(**counts: int | None) -> dict[str, Any]:
    return {"statistics": counts}


CHANGED = crate(name="changed")

ROWS = [
    # -- identity and content ------------------------------------------------------------------
    Row("a new ARC is created; id = sha256(identifier:rdi); the API's content hash",
        post_arc(SMALLEST), 200,
        {"status": "created", "arc_id": TEST_ID, "client_id": None, "message": "ARC processed successfully",
         "metadata": {"arc_hash": content_hash(SMALLEST), "status": "ACTIVE", "first_seen": arc_timestamp,
                      "last_seen": arc_timestamp},
         "events": [{"type": "ARC_CREATED", "timestamp": arc_timestamp, "message": "ARC first seen"}]}),
    Row("identical content again is 'updated' with the same hash and no new event",
        post_arc(SMALLEST), 200,
        {"status": "updated", "metadata": {"arc_hash": content_hash(SMALLEST)}, "events": events("ARC_CREATED")},
        given=(post_arc(SMALLEST),)),
    Row("publishing dates do not count as content",
        post_arc(crate(datePublished="2030-01-01", sdDatePublished="2030-01-01")), 200,
        {"status": "updated", "metadata": {"arc_hash": content_hash(SMALLEST)}, "events": events("ARC_CREATED")},
        given=(post_arc(SMALLEST),)),
    Row("changed content is 'updated' with the new hash and an ARC_UPDATED event",
        post_arc(CHANGED), 200,
        {"status": "updated", "metadata": {"arc_hash": content_hash(CHANGED)},
         "events": events("ARC_CREATED", "ARC_UPDATED")},
        given=(post_arc(SMALLEST),)),
    Row("the identifier is stripped", post_arc(crate("  Test \n")), 200, {"arc_id": TEST_ID}),
    Row("the identifier may be a one-element list", post_arc(crate(["Test"])), 200, {"arc_id": TEST_ID}),
    Row("the identifier may be {'@value': ...}", post_arc(crate({"@value": "Test"})), 200, {"arc_id": TEST_ID}),
    Row("the RDI is stripped for the ARC id",
        post_arc(SMALLEST, rdi=" padded "), 200, {"arc_id": hashlib.sha256(b"Test:padded").hexdigest()},
        settings={"known_rdis": [" padded "]}),
    Row("the same identifier under another RDI is another ARC",
        post_arc(SMALLEST, rdi="other"), 200,
        {"status": "created", "arc_id": hashlib.sha256(b"Test:other").hexdigest()},
        given=(post_arc(SMALLEST),), settings={"known_rdis": [RDI, "other"]}),
    # -- validation at ingest ------------------------------------------------------------------
    Row("ingest needs no descriptor, Dataset type or additionalType",
        post_arc({"@context": {}, "@graph": [{"@id": "./", "identifier": "Test"}]}), 200, {"status": "created"}),
    Row("a top-level key besides rdi and arc is refused",
        Call("POST", "/v3/arcs", json={"rdi": RDI, "arc": SMALLEST, "extra": 1}), 422,
        problem("extra_forbidden", "extra")),
    Row("a harvest submission holds only arc",
        Call("POST", "/v3/harvests/{harvest}/arcs", json={"rdi": RDI, "arc": SMALLEST}), 422,
        problem("extra_forbidden", "rdi"), given=(harvest(),)),
    Row("arc holds only @context and @graph",
        post_arc(SMALLEST | {"name": "x"}), 422, problem("extra_forbidden", "arc", "name")),
    Row("arc needs @context", post_arc({"@graph": SMALLEST["@graph"]}), 422, problem("missing", "arc", "@context")),
    Row("arc needs @graph", post_arc({"@context": {}}), 422, problem("missing", "arc", "@graph")),
    Row("@graph must not be empty", post_arc({"@context": {}, "@graph": []}), 422,
        problem("too_short", "arc", "@graph")),
    Row("@graph holds objects", post_arc({"@context": {}, "@graph": ["x"]}), 422,
        problem("dict_type", "arc", "@graph", 0)),
    Row("@graph needs the root './'",
        post_arc({"@context": {}, "@graph": [SMALLEST["@graph"][1]]}), 422, problem("value_error", "arc")),
    Row("the root needs a non-empty identifier", post_arc(crate("  ")), 422, problem("value_error", "arc")),
    Row("an empty identifier list is no identifier", post_arc(crate([])), 422, problem("value_error", "arc")),
    Row("the body needs rdi", Call("POST", "/v3/arcs", json={"arc": SMALLEST}), 422, problem("missing", "rdi")),
    Row("rdi is a string", post_arc(SMALLEST, rdi=7), 422, problem("string_type", "rdi")),  # type: ignore[arg-type]
    Row("the body is JSON",
        Call("POST", "/v3/arcs", content=b'{"rdi": ', headers={"Content-Type": "application/json"}), 422,
        {"detail": lambda problems: problems[0]["type"] == "json_invalid"}),
    Row("the body is a JSON object",
        Call("POST", "/v3/arcs", content=b"[1]", headers={"Content-Type": "application/json"}), 422,
        problem("model_attributes_type")),
    Row("Content-Type must be application/json",
        Call("POST", "/v3/arcs", content=json.dumps({"rdi": RDI, "arc": SMALLEST}).encode(),
             headers={"Content-Type": "text/plain"}), 415, {"detail": "Content-Type must be application/json"}),
    Row("Accept must allow JSON",
        Call("POST", "/v3/arcs", json={"rdi": RDI, "arc": SMALLEST}, headers={"Accept": "text/html"}), 406,
        {"detail": "Accept must be application/json"}),
    Row("Accept */* is fine",
        Call("POST", "/v3/arcs", json={"rdi": RDI, "arc": SMALLEST}, headers={"Accept": "text/html, */*"}), 200),
    # -- RDIs ----------------------------------------------------------------------------------
    Row("an unknown RDI is 400", post_arc(SMALLEST, rdi="nope"), 400, {"detail": "RDI 'nope' is not recognized."}),
    Row("the default known RDIs hold the default rdi setting", post_arc(SMALLEST, rdi="arcstream-dev"), 200,
        settings={}),
    Row("a harvest for an unknown RDI is 400",
        Call("POST", "/v3/harvests", json={"rdi": "nope"}), 400, {"detail": "RDI 'nope' is not recognized."}),
    # -- harvests ------------------------------------------------------------------------------
    Row("a harvest starts RUNNING; harvest timestamps end in Z",
        harvest(3), 200,
        {"rdi": RDI, "status": "RUNNING", "started_at": ends("Z"), "completed_at": None,
         "harvest_id": lambda v: isinstance(v, str) and v,
         "statistics": {"expected_datasets": 3, "arcs_submitted": 0}}),
    Row("expected_datasets is an integer",
        Call("POST", "/v3/harvests", json={"rdi": RDI, "expected_datasets": "many"}), 422,
        problem("int_type", "expected_datasets")),
    Row("an ARC in a harvest", into_harvest(SMALLEST), 200,
        {"status": "created", "arc_id": TEST_ID, "message": "ARC processed successfully in harvest"},
        given=(harvest(),)),
    Row("the same content twice in one harvest is fine", into_harvest(SMALLEST), 200, {"status": "updated"},
        given=(harvest(), into_harvest(SMALLEST))),
    Row("other content for an identifier already in this harvest is 409",
        into_harvest(CHANGED), 409,
        {"detail": "ARC 'Test' was already submitted in harvest '{harvest}' with different content."},
        given=(harvest(), into_harvest(SMALLEST))),
    Row("the conflict rule holds per harvest: the next harvest may change it",
        into_harvest(CHANGED), 200, {"status": "updated"},
        given=(harvest(), into_harvest(SMALLEST), finish(), harvest())),
    Row("an ARC for an unknown harvest is 404",
        Call("POST", "/v3/harvests/harvest-nope/arcs", json={"arc": SMALLEST}), 404, {"detail": "Harvest not found"}),
    Row("an ARC sent into a COMPLETED harvest is accepted", into_harvest(SMALLEST), 200, {"status": "created"},
        given=(harvest(), finish())),
    Row("statistics are computed when the harvest is finalised; completed_at ends in Z",
        finish(), 200,
        {"status": "COMPLETED", "completed_at": ends("Z"),
         "statistics": {"expected_datasets": 2, "arcs_submitted": 2, "arcs_new": 2, "arcs_updated": 0,
                        "arcs_unchanged": 0}},
        given=(harvest(2), into_harvest(crate("a")), into_harvest(crate("b")), into_harvest(crate("b")))),
    Row("a RUNNING harvest reports no counts yet",
        Call("GET", "/v3/harvests/{harvest}"), 200,
        stats(arcs_submitted=0, arcs_new=0), given=(harvest(), into_harvest(SMALLEST))),
    Row("statistics tell new, changed and identical ARCs apart (identical is 'updated' per ARC)",
        finish(), 200, stats(arcs_submitted=3, arcs_new=1, arcs_updated=1, arcs_unchanged=1),
        given=(harvest(), into_harvest(crate("a")), into_harvest(crate("b")), finish(),
               harvest(), into_harvest(crate("a")), into_harvest(crate("b", name="new")), into_harvest(crate("c")))),
    Row("ARCs sent after completion are not counted",
        Call("GET", "/v3/harvests/{harvest}"), 200, stats(arcs_submitted=1),
        given=(harvest(), into_harvest(crate("a")), finish(), into_harvest(crate("b")))),
    Row("each ARC records the harvests that first saw, last saw and last changed it",
        Call("GET", "/v3/arcs"), 200,
        [{"identifier": "Test", "first_harvest_id": "{harvest1}", "last_harvest_id": "{harvest2}",
          "last_changed_harvest_id": "{harvest1}", "last_seen": lambda v: v > "2000"}],
        given=(harvest(), into_harvest(SMALLEST), finish(), harvest(), into_harvest(SMALLEST)),
        settings={"test_hooks": True}),
    Row("a finalised harvest cannot be finalised again", finish("FAILED"), 409,
        {"detail": "Harvest {harvest} cannot transition to FAILED: current status is COMPLETED"},
        given=(harvest(), finish())),
    Row("PATCH takes only a terminal status", finish("RUNNING"), 422, problem("enum", "status"), given=(harvest(),)),
    Row("PATCH of an unknown harvest is 404",
        Call("PATCH", "/v3/harvests/harvest-nope", json={"status": "COMPLETED"}), 404),
    Row("PATCH CANCELLED", finish("CANCELLED"), 200, {"status": "CANCELLED"}, given=(harvest(),)),
    Row("POST /complete (deprecated) completes",
        Call("POST", "/v3/harvests/{harvest}/complete", headers={"Content-Type": "application/json"}), 200,
        {"status": "COMPLETED", "statistics": {"arcs_new": 1}}, given=(harvest(), into_harvest(SMALLEST))),
    Row("POST /complete of a finalised harvest is 409",
        Call("POST", "/v3/harvests/{harvest}/complete"), 409, given=(harvest(), finish("FAILED"))),
    Row("DELETE cancels a harvest (204)", Call("DELETE", "/v3/harvests/{harvest}"), 204, given=(harvest(),)),
    Row("a cancelled harvest reads CANCELLED", Call("GET", "/v3/harvests/{harvest}"), 200,
        {"status": "CANCELLED", "completed_at": ends("Z")},
        given=(harvest(), Call("DELETE", "/v3/harvests/{harvest}"))),
    Row("GET of an unknown harvest is 404", Call("GET", "/v3/harvests/harvest-nope"), 404,
        {"detail": "Harvest not found"}),
    Row("harvests are listed by RDI with skip and limit",
        Call("GET", f"/v3/harvests?rdi={RDI}&skip=1&limit=1"), 200, [{"harvest_id": "{harvest2}"}],
        given=(harvest(), harvest(), harvest())),
    Row("limit is 1..1000", Call("GET", "/v3/harvests?limit=1001"), 422,
        {"detail": [{"type": "less_than_equal", "loc": ["query", "limit"]}]}),
    Row("skip is not negative", Call("GET", "/v3/harvests?skip=-1"), 422,
        {"detail": [{"type": "greater_than_equal", "loc": ["query", "skip"]}]}),
    Row("listing an unknown RDI is 400", Call("GET", "/v3/harvests?rdi=nope"), 400),
    # -- what the API lacks, and overload --------------------------------------------------------
    Row("no DELETE for ARCs", Call("DELETE", f"/v3/arcs/{TEST_ID}"), 404, {"detail": "Not Found"},
        given=(post_arc(SMALLEST),)),
    Row("no GET /v3/arcs (the path has only POST)", Call("GET", "/v3/arcs"), 405, {"detail": "Method Not Allowed"}),
    Row("no GET /v3/arcs/{id}", Call("GET", f"/v3/arcs/{TEST_ID}"), 404, {"detail": "Not Found"},
        given=(post_arc(SMALLEST),)),
    Row("no DELETE for ARCs even with the read-back hooks on", Call("DELETE", f"/v3/arcs/{TEST_ID}"), 404,
        given=(post_arc(SMALLEST),), settings={"test_hooks": True}),
    Row("no request log", Call("GET", "/_store/requests"), 404),
    Row("DELETE when switched on", Call("DELETE", f"/v3/arcs/{TEST_ID}"), 200, {"status": "deleted"},
        given=(post_arc(SMALLEST),), settings={"enable_delete": True}),
    Row("overload is 503 with an integer Retry-After", post_arc(SMALLEST), 503, headers={"Retry-After": "2"},
        settings={"failure_rate": 1.0, "retry_after_s": 2}),
    Row("a body over the limit is 413", post_arc(crate(name="x" * 2000)), 413,
        {"detail": lambda d: "limit of 1000 bytes" in d}, settings={"max_body_bytes": 1000}),
]  # fmt: skip


def matches(actual: Any, expected: Any, names: dict[str, str]) -> bool:
    if callable(expected):
        return bool(expected(actual))
    if isinstance(expected, str):
        return actual == expected.format(**names)
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and matches(actual[key], value, names) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(matches(a, e, names) for a, e in zip(actual, expected, strict=True))
        )
    return bool(actual == expected)


async def _send(client: httpx.AsyncClient, call: Call, names: dict[str, str]) -> httpx.Response:
    path = call.path.format(**names)
    if call.json is not None:
        return await client.request(call.method, path, json=call.json, headers=call.headers)
    return await client.request(call.method, path, content=call.content, headers=call.headers)


@pytest.mark.parametrize("row", ROWS, ids=[row.behaviour for row in ROWS])
def test_behaves_like_the_api(tmp_path: Path, row: Row) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, **row.settings) as (client, _):
            names: dict[str, str] = {}
            harvests = 0
            for step in row.given:
                answer = await _send(client, step, names)
                assert answer.is_success, f"given {step}: {answer.status_code} {answer.text}"
                if step.method == "POST" and step.path == "/v3/harvests":
                    harvests += 1
                    names[f"harvest{harvests}"] = names["harvest"] = answer.json()["harvest_id"]
            answer = await _send(client, row.request, names)
            assert answer.status_code == row.status, answer.text
            if row.body is not None:
                assert matches(answer.json(), row.body, names), answer.text
            for header, value in row.headers.items():
                assert answer.headers.get(header) == value

    asyncio.run(scenario())
