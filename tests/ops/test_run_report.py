"""The run report's JSON-LD shape and counting (pure rendering; the end-to-end tests read it from topics)."""

from __future__ import annotations

from typing import Any

from services.common.report import OutcomeRecord
from services.ops.run_report import ReportScope, decide, render
from services.uploader.state import RunRecord

SCOPE = ReportScope("r1", "rdi-x@http://store", "uploader")


def outcome(identifier: str, status: str, **fields: Any) -> OutcomeRecord:
    base = {"identifier": identifier, "stage": "upload", "status": status, "run_id": "r1", "harvest_id": "h-1"}
    return OutcomeRecord.model_validate(base | fields)


def run(**fields: Any) -> RunRecord:
    base = {"run_id": "r1", "harvest_id": "h-1", "expected": 5, "partitions": 3, "started_at": "2026-01-01T00:00:00Z"}
    return RunRecord.model_validate(base | fields)


def test_failures_are_listed_with_record_id_code_reason_and_stage() -> None:
    outcomes = {
        "a": outcome("a", "created"),
        "b": outcome("b", "unchanged"),
        "c": outcome("c", "failed", http_status=422, error_code="target-rejected", error_message="HTTP 422: no id"),
        "d": outcome("d", "failed", stage="build", error_code="mapping-failed", error_message="no title"),
        "e": outcome("e", "superseded"),
    }
    finished = run(status="COMPLETED", finished_at="2026-01-01T00:01:30Z")
    doc = render(SCOPE, finished, outcomes)

    assert doc["@type"] == "schema:Action"
    assert doc["schema:actionStatus"] == "schema:FailedActionStatus"
    assert doc["schema:startTime"] == "2026-01-01T00:00:00Z" and doc["schema:endTime"]
    [entry] = doc["schema:result"]
    assert entry["@type"] == "schema:EntryPoint"
    assert entry["identifier"] == "rdi-x" and entry["schema:url"] == "http://store"
    assert entry["fairagro:consumerGroup"] == "uploader"
    assert entry["fairagro:harvestId"] == "h-1" and entry["fairagro:harvestStatus"] == "COMPLETED"
    assert entry["schema:duration"] == "PT90.000S"
    assert (entry["fairagro:expectedDatasets"], entry["fairagro:harvestedDatasets"]) == (5, 2)
    assert (entry["fairagro:failedDatasets"], entry["fairagro:supersededDatasets"]) == (2, 1)
    assert "fairagro:deliveredOutsideHarvest" not in entry
    assert entry["fairagro:failedRecords"] == [
        {
            "fairagro:recordId": "c",
            "fairagro:kind": "dataset",
            "fairagro:stage": "upload",
            "fairagro:errorCode": "target-rejected",
            "fairagro:message": "HTTP 422: no id",
            "fairagro:httpStatus": 422,
        },
        {
            "fairagro:recordId": "d",
            "fairagro:kind": "dataset",
            "fairagro:stage": "build",
            "fairagro:errorCode": "mapping-failed",
            "fairagro:message": "no title",
        },
    ]


def test_what_the_target_recorded_decides_not_the_newest_outcome() -> None:
    decided = decide(
        [
            outcome("dup", "created", at="2026-01-01T00:00:01Z"),
            outcome("dup", "unchanged", at="2026-01-01T00:00:02Z"),  # a duplicate build after a crash
            outcome("fixed", "failed", error_code="target-rejected", at="2026-01-01T00:00:01Z"),
            outcome("fixed", "updated", harvest_id=None, at="2026-01-01T00:00:09Z"),  # replayed dead letter
            outcome("late", "built", stage="build", at="2026-01-01T00:00:01Z"),
        ]
    )
    assert {k: v.status for k, v in decided.items()} == {"dup": "created", "fixed": "updated", "late": "built"}
    [entry] = render(SCOPE, run(status="COMPLETED", finished_at="2026-01-01T00:00:10Z"), decided)["schema:result"]
    assert entry["fairagro:deliveredOutsideHarvest"] == ["fixed"]


def test_a_run_still_open_is_active_without_end_time() -> None:
    doc = render(SCOPE, run(), {"a": outcome("a", "created")})
    assert doc["schema:actionStatus"] == "schema:ActiveActionStatus"
    assert doc["schema:endTime"] is None


def test_a_clean_completed_run_is_completed() -> None:
    doc = render(SCOPE, run(status="COMPLETED", finished_at="2026-01-01T00:00:10Z"), {"a": outcome("a", "created")})
    assert doc["schema:actionStatus"] == "schema:CompletedActionStatus"
