"""``arcstream status``: a live status view over ``arc.report``, built with faust-streaming.

One agent reads the report topic and keeps three tables (in-memory store,
restored from their changelog topics on start):

- ``latest``: identifier -> its newest outcome (any stage), by the record's ``at``;
- ``run_status``: ``run|stage|identifier`` -> ``[status, at]``, the newest status of
  each identifier within a run and stage;
- ``run_counts``: ``run|stage|status`` -> number of identifiers in that status.

Counts move only when an identifier's status in a run changes (old status -1,
new +1), so a redelivered report record (faust is at-least-once) counts once.
Tables whose key is not the report key use the default partitioner for their
changelog (``use_partitioner``), so a key always lives in one changelog partition.

Served on ``settings.uploader.status_host:status_port``: ``/status.json`` (counts
per run, latest outcomes, latest failures; ``?identifier=`` for one) and ``/``
(a small HTML page: counts per run and stage, then the latest failures on their
own - among hundreds of outcomes a person looks for those first - then the
latest outcomes).

Runs fine against the dev broker (Tansu): faust's producer needs neither
idempotence nor transactions with the default ``at_least_once`` guarantee. One
worker per view (it is a read model, not a scaled service).
"""

from __future__ import annotations

import asyncio
import html
import json
from typing import Any

import faust
from faust.web import Request, Response, View

from services.common.config import Settings
from services.common.kafka.clients import check_broker

NO_RUN = "-"
LATEST_SHOWN = 200
FAILURES_SHOWN = 50


def make_app(settings: Settings) -> faust.App:
    """The faust app of the status view for these settings (topic prefix, broker, port)."""
    kafka = settings.kafka
    app = faust.App(
        f"arcstream-status-{settings.topics.prefix}",
        broker=f"kafka://{kafka.bootstrap_servers}",
        store="memory://",
        web_host=settings.uploader.status_host,
        web_port=settings.uploader.status_port,
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication_factor,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=kafka.session_timeout_ms / 1000,
        broker_rebalance_timeout=(kafka.rebalance_timeout_ms or kafka.session_timeout_ms) / 1000,
        broker_heartbeat_interval=kafka.heartbeat_interval_ms / 1000,
        broker_max_poll_interval=kafka.max_poll_interval_ms / 1000,
    )
    report = app.topic(settings.topics.report, key_serializer="raw", value_serializer="raw")
    partitions = settings.topics.partitions
    latest = app.Table("latest", partitions=partitions)
    run_status = app.Table("run_status", partitions=partitions, use_partitioner=True)
    run_counts = app.Table("run_counts", default=int, partitions=partitions, use_partitioner=True)

    @app.agent(report)
    async def track(stream: Any) -> None:
        async for value in stream:
            outcome = _parse(value)
            if outcome is None:
                continue
            identifier, at, status = outcome["identifier"], outcome["at"], outcome["status"]
            current = latest.get(identifier)
            if current is None or current.get("at", "") <= at:
                latest[identifier] = outcome
            scope = f"{outcome.get('run_id') or NO_RUN}|{outcome['stage']}"
            previous = run_status.get(f"{scope}|{identifier}")
            if previous is not None and previous[1] > at:
                continue  # an older record arriving late changes nothing
            if previous is None or previous[0] != status:
                if previous is not None:
                    run_counts[f"{scope}|{previous[0]}"] -= 1
                run_counts[f"{scope}|{status}"] += 1
            run_status[f"{scope}|{identifier}"] = [status, at]

    def snapshot(identifier: str | None) -> dict[str, Any]:
        runs: dict[str, dict[str, dict[str, int]]] = {}
        for key, count in run_counts.items():
            run_id, stage, status = key.rsplit("|", 2)
            if count:
                runs.setdefault(run_id, {}).setdefault(stage, {})[status] = count
        if identifier is not None:
            return {"runs": runs, "latest": {identifier: latest.get(identifier)}}
        newest = sorted((o for _, o in latest.items() if o), key=lambda o: o["at"], reverse=True)
        failures = [o for o in newest if o["status"] == "failed"][:FAILURES_SHOWN]
        return {"runs": runs, "latest": {o["identifier"]: o for o in newest[:LATEST_SHOWN]}, "failures": failures}

    @app.page("/status.json")
    async def status_json(view: View, request: Request) -> Response:
        return view.json(snapshot(request.query.get("identifier")))

    @app.page("/")
    async def status_page(view: View, request: Request) -> Response:
        return view.html(render_html(snapshot(None)))

    return app


def _parse(value: bytes | None) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        outcome = json.loads(value)
    except ValueError:
        return None
    if not isinstance(outcome, dict) or not {"identifier", "stage", "status", "at"} <= outcome.keys():
        return None
    return outcome


def _cells(outcome: dict[str, Any], fields: tuple[str, ...]) -> str:
    def text(field: str) -> str:
        value = outcome.get(field)
        return html.escape(str(value) if value is not None else "")

    return "".join(f"<td class='{field}'>{text(field)}</td>" for field in fields)


def _run_label(run_id: str) -> str:
    return "no run (CDC)" if run_id == NO_RUN else run_id


def render_html(snapshot: dict[str, Any]) -> str:
    """A small self-refreshing page: counts per run and stage, the newest failures, the newest outcomes."""
    statuses = sorted({s for stages in snapshot["runs"].values() for c in stages.values() for s in c})
    rows = [
        "<tr><td>{}</td><td>{}</td>{}</tr>".format(
            html.escape(_run_label(run_id)),
            html.escape(stage),
            "".join(
                f"<td class='{'failed' if s == 'failed' and counts.get(s) else 'count'}'>{counts.get(s, 0)}</td>"
                for s in statuses
            ),
        )
        for run_id, stages in sorted(snapshot["runs"].items())
        for stage, counts in sorted(stages.items())
    ]
    head = "".join(f"<th>{html.escape(s)}</th>" for s in statuses)
    failure_fields = ("at", "identifier", "stage", "run_id", "attempts", "http_status", "error_code", "error_message")
    failures = [f"<tr>{_cells(o, failure_fields)}</tr>" for o in snapshot.get("failures", [])]
    latest_fields = ("at", "identifier", "stage", "status", "run_id", "attempts", "http_status", "error_message")
    latest = [f"<tr>{_cells(o, latest_fields)}</tr>" for o in snapshot["latest"].values()]
    runs_part = (
        f"<table><tr><th>run</th><th>stage</th>{head}</tr>{''.join(rows)}</table>"
        if rows
        else "<p>No outcomes yet.</p>"
    )
    failures_part = (
        "<table><tr><th>at</th><th>identifier</th><th>stage</th><th>run</th><th>attempts</th><th>HTTP</th>"
        f"<th>error code</th><th>error</th></tr>{''.join(failures)}</table>"
        if failures
        else "<p>No failures.</p>"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='5'>"
        "<meta name='viewport' content='width=device-width'>"
        "<title>arcstream status</title><style>body{font-family:sans-serif}td,th{padding:2px 8px;"
        "border-bottom:1px solid #ddd;text-align:left;white-space:nowrap}td.error_message{white-space:normal}"
        ".failed{color:#b00020;font-weight:bold}</style></head><body>"
        "<h1>arcstream status</h1><h2>Runs</h2>"
        f"{runs_part}<h2>Latest failures</h2>{failures_part}"
        "<h2>Latest outcomes</h2><table><tr><th>at</th><th>identifier</th><th>stage</th><th>status</th>"
        f"<th>run</th><th>attempts</th><th>HTTP</th><th>error</th></tr>{''.join(latest)}</table>"
        "<p><a href='/status.json'>JSON</a></p></body></html>"
    )


def run_status_view(settings: Settings) -> None:
    """Run the faust worker in this process until SIGTERM/SIGINT."""
    # faust retries an unreachable broker inside its worker and dies with a long traceback: check first.
    asyncio.run(check_broker(settings.kafka))
    app = make_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.lower())
    worker.execute_from_commandline()
