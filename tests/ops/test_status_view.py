"""The faust status view over a real report topic: latest outcome per identifier, counts per run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx

from services.common.config import Settings
from services.common.report import OutcomeRecord
from tests.support import publish_outcomes, status_view, until


def test_status_view_tracks_latest_outcomes_and_counts_each_identifier_once(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()

    def outcome(identifier: str, status: str, at: str, **fields: object) -> OutcomeRecord:
        return OutcomeRecord.model_validate(
            {"identifier": identifier, "stage": "upload", "status": status, "run_id": "run-1", "at": at} | fields
        )

    first = [outcome(f"inv-{i}", "created", f"2026-01-01T00:00:0{i}.000Z") for i in range(6)]
    later = [
        outcome("inv-0", "failed", "2026-01-01T00:01:00.000Z", error_message="HTTP 422: bad", http_status=422),
        outcome("inv-1", "created", "2026-01-01T00:00:01.000Z"),  # a redelivered duplicate
        outcome("inv-2", "updated", "2026-01-01T00:00:00.000Z"),  # older than what is known: no effect
        outcome("cdc-1", "updated", "2026-01-01T00:02:00.000Z", run_id=None),
    ]
    asyncio.run(publish_outcomes(settings, first + later))

    with status_view(settings, tmp_path) as view:
        url = view.url

        async def caught_up() -> bool:
            view.assert_running()
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    runs = (await client.get(f"{url}/status.json")).json()["runs"]
            except (httpx.HTTPError, ValueError):
                return False
            return bool(runs == expected)

        # Converging to exactly these counts is the assertion: a double count never converges.
        expected = {"run-1": {"upload": {"created": 5, "failed": 1}}, "-": {"upload": {"updated": 1}}}
        asyncio.run(until(caught_up, what=f"status view counts {expected}", limit_s=150))
        state = httpx.get(f"{url}/status.json", timeout=5).json()
        assert state["latest"]["inv-0"]["status"] == "failed"
        assert state["latest"]["inv-2"]["status"] == "created"
        one = httpx.get(f"{url}/status.json", params={"identifier": "inv-0"}, timeout=5).json()
        assert one["latest"]["inv-0"]["http_status"] == 422
        page = httpx.get(url + "/", timeout=5)
        assert page.headers["content-type"].startswith("text/html")
        assert "inv-0" in page.text and "HTTP 422: bad" in page.text and "run-1" in page.text
