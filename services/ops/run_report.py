"""``arcstream report --run RUN_ID``: one snapshot run as a JSON-LD ``schema:Action``.

The shape follows the upstream SQL-to-ARC converter's harvest report (a
``schema:Action`` whose ``schema:result`` holds one ``schema:EntryPoint`` per
RDI with ``fairagro:`` counts and failed records), so tools reading that report
read this one. Sources: the outcome records of the run on ``arc.report`` (the
newest per identifier decides its final status, any stage) and the run's harvest
record in the ``delivered`` state topic (expected count, harvest id and status,
start and end).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from services.common.config import Settings
from services.common.errors import ConfigError
from services.common.kafka.reading import iter_topic
from services.common.records import loads
from services.common.report import OutcomeRecord
from services.uploader.state import RunRecord

CONTEXT = {"schema": "https://schema.org/", "fairagro": "https://fairagro.net/ns/"}
HARVESTED = ("created", "updated", "unchanged")


async def _run_records(settings: Settings, run_id: str) -> dict[str, RunRecord]:
    """Harvest records of ``run_id`` per target (``<rdi>@<url>``)."""
    records: dict[str, RunRecord] = {}
    async for record in iter_topic(settings.kafka, settings.topics.delivered):
        key = (record.key or b"").decode("utf-8", "replace")
        kind, _, rest = key.partition("|")
        target, _, name = rest.partition("|")
        if kind == "run" and name == run_id and record.value is not None:
            records[target] = RunRecord.model_validate(loads(record.value))
    return records


async def _outcomes(settings: Settings, run_id: str) -> dict[str, OutcomeRecord]:
    """The newest outcome per identifier of ``run_id`` (an upload outcome beats earlier stages)."""
    latest: dict[str, OutcomeRecord] = {}
    async for record in iter_topic(settings.kafka, settings.topics.report):
        if record.value is None:
            continue
        outcome = OutcomeRecord.model_validate(loads(record.value))
        if outcome.run_id != run_id:
            continue
        current = latest.get(outcome.identifier)
        if current is None or outcome.at >= current.at:
            latest[outcome.identifier] = outcome
    return latest


def _duration(start: str | None, end: str | None) -> str | None:
    if not start or not end:
        return None
    seconds = datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(start.replace("Z", "+00:00"))
    return f"PT{max(0.0, seconds.total_seconds()):.3f}S"


def render(run_id: str, runs: dict[str, RunRecord], outcomes: dict[str, OutcomeRecord]) -> dict[str, Any]:
    """The JSON-LD document for one run."""
    statuses: Counter[str] = Counter(outcome.status for outcome in outcomes.values())
    times = sorted(outcome.at for outcome in outcomes.values())
    start = min([run.started_at for run in runs.values()] + times[:1], default=None)
    ends = [run.finished_at for run in runs.values() if run.finished_at]
    end = max(ends + times[-1:], default=None)
    finished = bool(runs) and all(run.status != "RUNNING" for run in runs.values())
    failed = [outcome for outcome in outcomes.values() if outcome.status == "failed"]
    if not finished:
        action_status = "schema:ActiveActionStatus"
    elif failed or any(run.status != "COMPLETED" for run in runs.values()):
        action_status = "schema:FailedActionStatus"
    else:
        action_status = "schema:CompletedActionStatus"
    entries = []
    pairs: list[tuple[str, RunRecord | None]] = [*sorted(runs.items())] or [("", None)]
    for target, run in pairs:
        rdi = target.partition("@")[0] or None
        entry: dict[str, Any] = {
            "@type": "schema:EntryPoint",
            "identifier": rdi,
            "name": rdi,
            "schema:url": target.partition("@")[2] or None,
            "schema:duration": _duration(run.started_at, run.finished_at) if run else None,
            "fairagro:harvestId": run.harvest_id if run else None,
            "fairagro:harvestStatus": run.status if run else None,
            "fairagro:harvestedDatasets": sum(statuses[s] for s in HARVESTED),
            "fairagro:createdDatasets": statuses["created"],
            "fairagro:updatedDatasets": statuses["updated"],
            "fairagro:unchangedDatasets": statuses["unchanged"],
            "fairagro:failedDatasets": statuses["failed"],
            "fairagro:skippedDatasets": statuses["skipped"],
            "fairagro:deletedDatasets": statuses["deleted"],
        }
        if run is not None:
            entry["fairagro:expectedDatasets"] = run.expected
        if run is not None and run.error:
            entry["fairagro:harvestError"] = run.error
        entry["fairagro:failedRecords"] = [
            {
                "fairagro:recordId": outcome.identifier,
                "fairagro:kind": "dataset",
                "fairagro:stage": outcome.stage,
                "fairagro:message": outcome.error_message or outcome.error_class or "failed",
                **({"fairagro:httpStatus": outcome.http_status} if outcome.http_status else {}),
            }
            for outcome in sorted(failed, key=lambda o: o.identifier)
        ]
        entries.append({key: value for key, value in entry.items() if value is not None})
    return {
        "@context": CONTEXT,
        "@type": "schema:Action",
        "name": f"arcstream snapshot run {run_id}",
        "schema:identifier": run_id,
        "schema:instrument": {"@type": "schema:SoftwareApplication", "schema:name": "arcstream"},
        "schema:actionStatus": action_status,
        "schema:startTime": start,
        "schema:endTime": end if finished else None,
        "schema:duration": _duration(start, end) if finished else None,
        "schema:result": entries,
    }


async def run_report(settings: Settings, run_id: str) -> dict[str, Any]:
    runs = await _run_records(settings, run_id)
    outcomes = await _outcomes(settings, run_id)
    if not runs and not outcomes:
        raise ConfigError(f"no run {run_id!r} on {settings.topics.report} or {settings.topics.delivered}")
    return render(run_id, runs, outcomes)
