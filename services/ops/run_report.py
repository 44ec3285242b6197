"""``arcstream report --run RUN_ID``: one snapshot run at one target as a JSON-LD ``schema:Action``.

The shape follows the upstream SQL-to-ARC converter's harvest report (a
``schema:Action`` whose ``schema:result`` holds a ``schema:EntryPoint`` for the RDI
with ``fairagro:`` counts and failed records), so tools reading that report read
this one.

A report is about one run delivered to one target (``<rdi>@<url>``) by one uploader
group: the uploads of another target, RDI or group never change it. Sources: the
run's outcomes on ``arc.report`` (extraction and build outcomes count for every
target; upload outcomes only for this target and group), and the run's harvest
record in the state topic (harvest id and status, start and end).

Per identifier, what the target recorded decides: an identifier delivered once
counts as ``created`` even when a duplicate later reported ``unchanged`` (after a
crash a build can be delivered twice); a later success beats an earlier failure
(a replayed dead letter). An identifier without upload outcome keeps its newest
extraction or build outcome. ARCs delivered outside the run's harvest (its harvest
was closed when they came, e.g. replayed dead letters) are listed by identifier.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from services.common.config import Settings
from services.common.errors import ConfigError
from services.common.kafka.reading import iter_topic
from services.common.records import H_ORIGIN_GROUP, header_dict, loads
from services.common.report import OutcomeRecord, parse_utc
from services.uploader.state import RunRecord, target_key

CONTEXT = {"schema": "https://schema.org/", "fairagro": "https://fairagro.net/ns/"}
HARVESTED = ("created", "updated", "unchanged")
#: Which upload outcome of an identifier counts, best first: what the target recorded wins.
PRECEDENCE = ("created", "updated", "unchanged", "deleted", "retained", "failed", "superseded")


@dataclass(frozen=True)
class ReportScope:
    """Which deliveries a report is about."""

    run_id: str
    target: str
    group: str

    @classmethod
    def from_settings(cls, settings: Settings, run_id: str, group: str | None = None) -> ReportScope:
        return cls(run_id, target_key(settings.rdi, settings.uploader.target_url), group or settings.uploader.group_id)


async def _run_record(settings: Settings, scope: ReportScope) -> RunRecord | None:
    found: RunRecord | None = None
    wanted = f"run|{scope.target}|{scope.run_id}".encode()
    async for record in iter_topic(settings.kafka, settings.topics.state):
        if record.key == wanted and record.value is not None:
            found = RunRecord.model_validate(loads(record.value))
    return found


async def _outcomes(settings: Settings, scope: ReportScope) -> list[OutcomeRecord]:
    """Outcomes of the run in this scope, in the order they were written."""
    found: list[OutcomeRecord] = []
    async for record in iter_topic(settings.kafka, settings.topics.report):
        if record.value is None:
            continue
        outcome = OutcomeRecord.model_validate(loads(record.value))
        if outcome.run_id != scope.run_id:
            continue
        if outcome.stage == "upload" and (
            outcome.target != scope.target or header_dict(record.headers).get(H_ORIGIN_GROUP) != scope.group
        ):
            continue
        found.append(outcome)
    return found


def decide(outcomes: list[OutcomeRecord]) -> dict[str, OutcomeRecord]:
    """Per identifier the outcome that counts (see the module docstring)."""
    uploads: dict[str, OutcomeRecord] = {}
    earlier: dict[str, OutcomeRecord] = {}
    for outcome in outcomes:
        if outcome.stage != "upload":
            current = earlier.get(outcome.identifier)
            if current is None or outcome.at >= current.at:
                earlier[outcome.identifier] = outcome
            continue
        best = uploads.get(outcome.identifier)
        if best is None or PRECEDENCE.index(outcome.status) < PRECEDENCE.index(best.status):
            uploads[outcome.identifier] = outcome
    return earlier | uploads


def _duration(start: str | None, end: str | None) -> str | None:
    began, ended = (parse_utc(start) if start else None), (parse_utc(end) if end else None)
    if began is None or ended is None:
        return None
    return f"PT{max(0.0, (ended - began).total_seconds()):.3f}S"


def render(scope: ReportScope, run: RunRecord | None, decided: dict[str, OutcomeRecord]) -> dict[str, Any]:
    """The JSON-LD document for one run at one target."""
    statuses: Counter[str] = Counter(outcome.status for outcome in decided.values())
    times = sorted(outcome.at for outcome in decided.values())
    start = min([run.started_at] if run else times[:1], default=None)
    end = max(([run.finished_at] if run and run.finished_at else []) + times[-1:], default=None)
    finished = run is not None and run.status != "RUNNING"
    failed = sorted((o for o in decided.values() if o.status == "failed"), key=lambda o: o.identifier)
    if not finished:
        action_status = "schema:ActiveActionStatus"
    elif failed or (run is not None and run.status != "COMPLETED"):
        action_status = "schema:FailedActionStatus"
    else:
        action_status = "schema:CompletedActionStatus"
    rdi, _, url = scope.target.partition("@")
    outside = sorted(
        o.identifier
        for o in decided.values()
        if o.stage == "upload" and o.status in HARVESTED and run is not None and o.harvest_id != run.harvest_id
    )
    entry: dict[str, Any] = {
        "@type": "schema:EntryPoint",
        "identifier": rdi,
        "name": rdi,
        "schema:url": url or None,
        "fairagro:consumerGroup": scope.group,
        "schema:duration": _duration(run.started_at, run.finished_at) if run else None,
        "fairagro:harvestId": run.harvest_id if run else None,
        "fairagro:harvestStatus": run.status if run else None,
        "fairagro:harvestError": run.error if run else None,
        "fairagro:expectedDatasets": run.expected if run else None,
        "fairagro:harvestedDatasets": sum(statuses[s] for s in HARVESTED),
        "fairagro:createdDatasets": statuses["created"],
        "fairagro:updatedDatasets": statuses["updated"],
        "fairagro:unchangedDatasets": statuses["unchanged"],
        "fairagro:failedDatasets": statuses["failed"],
        "fairagro:supersededDatasets": statuses["superseded"],
        "fairagro:deletedDatasets": statuses["deleted"],
        "fairagro:retainedDatasets": statuses["retained"],
        "fairagro:deliveredOutsideHarvest": outside or None,
        "fairagro:failedRecords": [
            {
                "fairagro:recordId": outcome.identifier,
                "fairagro:kind": "dataset",
                "fairagro:stage": outcome.stage,
                "fairagro:errorCode": outcome.error_code,
                "fairagro:message": outcome.error_message or outcome.error_code or "failed",
                **({"fairagro:httpStatus": outcome.http_status} if outcome.http_status else {}),
            }
            for outcome in failed
        ],
    }
    return {
        "@context": CONTEXT,
        "@type": "schema:Action",
        "name": f"arcstream snapshot run {scope.run_id}",
        "schema:identifier": scope.run_id,
        "schema:instrument": {"@type": "schema:SoftwareApplication", "schema:name": "arcstream"},
        "schema:actionStatus": action_status,
        "schema:startTime": start,
        "schema:endTime": end if finished else None,
        "schema:duration": _duration(start, end) if finished else None,
        "schema:result": [{key: value for key, value in entry.items() if value is not None}],
    }


async def run_report(settings: Settings, scope: ReportScope) -> dict[str, Any]:
    run = await _run_record(settings, scope)
    outcomes = await _outcomes(settings, scope)
    if run is None and not outcomes:
        raise ConfigError(
            f"no run {scope.run_id!r} for {scope.target} (group {scope.group}) on "
            f"{settings.topics.report} or {settings.topics.state}: check --run, the rdi, the target and --group"
        )
    return render(scope, run, decide(outcomes))
