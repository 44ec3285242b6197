"""``arcstream status`` in a real browser: what a person sees - counts per outcome, the latest failures.

The status view runs as its own process over a real report topic; headless
Chromium loads its page, the test reads the rendered text (``innerText``: what
is laid out, not the HTML source) and saves a screenshot to
``build/screenshots/status-page.png`` (printed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common.config import Settings
from services.common.report import OutcomeRecord
from tests.observability.browser import Chromium
from tests.support import publish_outcomes, status_view, until

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
#: Kept after the run (pytest rotates its temporary directories away); ``build/`` is git-ignored.
SCREENSHOT = ROOT / "build" / "screenshots" / "status-page.png"

#: The rendered tables as rows of cell texts, each table found by the heading above it.
READ_TABLES = """
Object.fromEntries(Array.from(document.querySelectorAll('h2')).map(h => {
  const table = h.nextElementSibling;
  const rows = table && table.tagName === 'TABLE'
    ? Array.from(table.rows).map(r => Array.from(r.cells).map(c => c.innerText.trim()))
    : [];
  const box = table ? table.getBoundingClientRect() : {width: 0, height: 0, top: 0};
  return [h.innerText.trim(), {
    rows,
    visible: box.width > 0 && box.height > 0,
    on_first_screen: box.top < window.innerHeight,
  }];
}))
"""


def outcome(identifier: str, stage: str, status: str, at: str, **fields: Any) -> OutcomeRecord:
    return OutcomeRecord.model_validate(
        {"identifier": identifier, "stage": stage, "status": status, "run_id": "run-7", "at": at} | fields
    )


OUTCOMES = [
    *(outcome(f"inv-{i}", "build", "built", f"2026-03-01T10:00:0{i}.000Z") for i in range(5)),
    outcome(
        "inv-5",
        "build",
        "failed",
        "2026-03-01T10:00:05.000Z",
        error_code="mapping-failed",
        error_message="assay 'A 1' names study 'S-missing', which the investigation does not have",
    ),
    *(outcome(f"inv-{i}", "upload", "created", f"2026-03-01T10:01:0{i}.000Z", http_status=201) for i in range(3)),
    outcome("inv-3", "upload", "unchanged", "2026-03-01T10:01:03.000Z"),
    outcome(
        "inv-4",
        "upload",
        "failed",
        "2026-03-01T10:01:04.000Z",
        http_status=422,
        attempts=1,
        error_code="target-rejected",
        error_message="HTTP 422: arc is not valid RO-Crate",
    ),
    outcome("cdc-9", "upload", "updated", "2026-03-01T10:02:00.000Z", run_id=None, http_status=200),
]


async def look_at(url: str, profile: Path, screenshot: Path) -> dict[str, Any]:
    async with Chromium(profile) as browser:
        await browser.open(url)
        seen = {
            "title": await browser.evaluate("document.title"),
            "tables": await browser.evaluate(READ_TABLES),
            "text": await browser.evaluate("document.body.innerText"),
        }
        await browser.screenshot(screenshot)
    return seen


def test_a_person_sees_counts_per_outcome_and_the_latest_failures(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    asyncio.run(publish_outcomes(settings, OUTCOMES))
    with status_view(settings, tmp_path) as view:
        url = view.url + "/"

        async def caught_up() -> bool:
            view.assert_running()
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    state = (await client.get(f"{url}status.json")).json()
            except (httpx.HTTPError, ValueError):
                return False
            return len(state["latest"]) == 7 and sum(
                count for stages in state["runs"].values() for c in stages.values() for count in c.values()
            ) == len(OUTCOMES)

        asyncio.run(until(caught_up, "the status view to read every outcome", limit_s=150))
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.unlink(missing_ok=True)
        seen = asyncio.run(look_at(url, tmp_path / "chromium-profile", SCREENSHOT))
    print(f"\nstatus page screenshot: {SCREENSHOT}")
    assert SCREENSHOT.read_bytes().startswith(b"\x89PNG")
    assert seen["title"] == "arcstream status"
    tables = seen["tables"]
    assert list(tables) == ["Runs", "Latest failures", "Latest outcomes"]
    assert all(table["visible"] for table in tables.values()), tables
    # Counts per outcome, per run and stage; changes outside a run (CDC) on their own line.
    assert tables["Runs"]["rows"] == [
        ["run", "stage", "built", "created", "failed", "unchanged", "updated"],
        ["no run (CDC)", "upload", "0", "0", "0", "0", "1"],
        ["run-7", "build", "5", "0", "1", "0", "0"],
        ["run-7", "upload", "0", "3", "1", "1", "0"],
    ]
    # The failures, newest first, with what went wrong - without scrolling.
    failures = tables["Latest failures"]
    assert failures["on_first_screen"]
    assert failures["rows"] == [
        ["at", "identifier", "stage", "run", "attempts", "HTTP", "error code", "error"],
        [
            "2026-03-01T10:01:04.000Z",
            "inv-4",
            "upload",
            "run-7",
            "1",
            "422",
            "target-rejected",
            "HTTP 422: arc is not valid RO-Crate",
        ],
        [
            "2026-03-01T10:00:05.000Z",
            "inv-5",
            "build",
            "run-7",
            "1",
            "",
            "mapping-failed",
            "assay 'A 1' names study 'S-missing', which the investigation does not have",
        ],
    ]
    # Every identifier's newest outcome, newest first.
    latest = tables["Latest outcomes"]["rows"]
    assert [row[1:4] for row in latest[1:]] == [
        ["cdc-9", "upload", "updated"],
        ["inv-4", "upload", "failed"],
        ["inv-3", "upload", "unchanged"],
        ["inv-2", "upload", "created"],
        ["inv-1", "upload", "created"],
        ["inv-0", "upload", "created"],
        ["inv-5", "build", "failed"],
    ]
