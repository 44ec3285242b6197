"""The run report's JSON-LD shape and counting (pure rendering; the end-to-end tests read it from topics)."""

from __future__ import annotations

from typing import Any

from services.common.report import OutcomeRecord
from services.ops.run_report import render
from services.uploader.state import RunRecord


def outcome(identifier: str, status: str, **fields: Any) -> OutcomeRecord:
    base = {"identifier": identifier, "stage": "upload", "status": status, "run_id": "r1"}
    return OutcomeRecord.model_validate(base | fields)


def run(**fields: Any) -> RunRecord:
    base = {"run_id": "r1", "harvest_id": "h-1", "expected": 5, "partitions": 3, "started_at": "2026-01-01T00:00:00Z"}
    return RunRecord.model_validate(base | fields)


def test_failures_are_listed_with_record_id_reason_and_stage() -> None:
    outcomes = {
        "a": outcome("a", "created"),
        "b": outcome("b", "unchanged"),
        "c": outcome("c", "failed", http_status=422, error_message="HTTP 422: no identifier"),
        "d": outcome("d", "failed", stage="build", error_class="MappingError", error_message="no title"),
        "e": outcome("e", "skipped"),
    }
    finished = run(status="COMPLETED", finished_at="2026-01-01T00:01:30Z")
    doc = render("r1", {"rdi-x@http://store": finished}, outcomes)

    assert doc["@type"] == "schema:Action"
    assert doc["schema:actionStatus"] == "schema:FailedActionStatus"
    assert doc["schema:startTime"] == "2026-01-01T00:00:00Z" and doc["schema:endTime"]
    [entry] = doc["schema:result"]
    assert entry["@type"] == "schema:EntryPoint"
    assert entry["identifier"] == "rdi-x" and entry["schema:url"] == "http://store"
    assert entry["fairagro:harvestId"] == "h-1" and entry["fairagro:harvestStatus"] == "COMPLETED"
    assert entry["schema:duration"] == "PT90.000S"
    assert (entry["fairagro:expectedDatasets"], entry["fairagro:harvestedDatasets"]) == (5, 2)
    assert (entry["fairagro:failedDatasets"], entry["fairagro:skippedDatasets"]) == (2, 1)
    assert entry["fairagro:failedRecords"] == [
        {
            "fairagro:recordId": "c",
            "fairagro:kind": "dataset",
            "fairagro:stage": "upload",
            "fairagro:message": "HTTP 422: no identifier",
            "fairagro:httpStatus": 422,
        },
        {
            "fairagro:recordId": "d",
            "fairagro:kind": "dataset",
            "fairagro:stage": "build",
            "fairagro:message": "no title",
        },
    ]


def test_a_run_still_open_is_active_without_end_time() -> None:
    doc = render("r1", {"rdi@u": run()}, {"a": outcome("a", "created")})
    assert doc["schema:actionStatus"] == "schema:ActiveActionStatus"
    assert doc["schema:endTime"] is None


def test_a_clean_completed_run_is_completed() -> None:
    doc = render(
        "r1", {"rdi@u": run(status="COMPLETED", finished_at="2026-01-01T00:00:10Z")}, {"a": outcome("a", "created")}
    )
    assert doc["schema:actionStatus"] == "schema:CompletedActionStatus"
