"""``probe_target``: one side-effect-free request says whether uploads can succeed, and why not.

The local store (a real ``arcstream store`` process) gives the healthy answer; a closed
port the unreachable one; the RDI and certificate answers come from a stand-in for
the real API (see ``api_stand_in.py`` for why it is a fake).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from services.common.config import Settings, load_settings
from services.dev.stack.ports import free_port
from services.dev.stack.state import ServerRecord
from services.uploader.probe import PROBE_PATH, TargetProbe, probe_target

from .api_stand_in import ApiStandIn, serving


def settings_for(url: str, rdi: str = "soil-rdi", **uploader: object) -> Settings:
    return load_settings(rdi=rdi, uploader={"target_url": url, **uploader})


def probe_stand_in(api: ApiStandIn, rdi: str = "soil-rdi") -> TargetProbe:
    async def run() -> TargetProbe:
        async with serving(api) as url:
            return await probe_target(settings_for(url, rdi))

    return asyncio.run(run())


def test_the_local_store_accepts_and_nothing_is_written(start_store: Callable[..., ServerRecord]) -> None:
    store = start_store("store", "--known-rdi", "soil-rdi")
    probe = asyncio.run(probe_target(settings_for(store.url)))
    assert probe == TargetProbe(ok=True, status=200, problem=None, message=f"{store.url} accepts RDI 'soil-rdi'")
    assert not probe.misconfigured
    assert httpx.get(f"{store.url}/v3/harvests", timeout=10).json() == [], "the probe opened no harvest"
    assert httpx.get(f"{store.url}/v3/arcs", timeout=10).json() == [], "the probe stored nothing"


def test_the_request_only_reads_and_names_the_rdi() -> None:
    api = ApiStandIn(known_rdis={"soil-rdi"})
    assert probe_stand_in(api).ok
    assert api.requests == [("GET", PROBE_PATH, {"rdi": "soil-rdi", "limit": "1"})]


@pytest.mark.parametrize(
    ("api", "status", "problem", "says"),
    [
        (ApiStandIn(known_rdis={"other"}), 400, "rdi-unknown", "does not know RDI 'soil-rdi'"),
        (ApiStandIn(known_rdis={"soil-rdi"}, require_client_cert=True), 401, "certificate-missing", "client_cert"),
        (
            ApiStandIn(known_rdis={"soil-rdi", "other"}, require_client_cert=True, certificate_rdis={"other"}),
            403,
            "certificate-refused",
            "does not list RDI 'soil-rdi'",
        ),
        (ApiStandIn(known_rdis={"soil-rdi"}, overloaded=True), 503, "unavailable", "try again later"),
    ],
)
def test_each_refusal_is_one_line_with_its_fix(api: ApiStandIn, status: int, problem: str, says: str) -> None:
    probe = probe_stand_in(api)
    assert (probe.ok, probe.status, probe.problem) == (False, status, problem)
    assert says in probe.message and "\n" not in probe.message
    assert probe.misconfigured == (status != 503), "overload is transient; the others need a change"


def test_unreachable_not_v3_and_unusable_configuration(
    start_store: Callable[..., ServerRecord], tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    unreachable = asyncio.run(probe_target(settings_for(closed)))
    assert (unreachable.problem, unreachable.status) == ("unreachable", None)
    assert closed in unreachable.message and "uploader.target_url" in unreachable.message

    store = start_store("store", "--known-rdi", "soil-rdi")
    wrong_path = asyncio.run(probe_target(settings_for(f"{store.url}/nothing-here")))
    assert (wrong_path.problem, wrong_path.status) == ("not-v3", 404)

    missing = tmp_path / "missing.pem"
    unusable = asyncio.run(probe_target(settings_for(store.url, tls={"client_cert": str(missing)})))
    assert unusable.problem == "configuration" and str(missing) in unusable.message
    assert unusable.misconfigured
