"""A real Prometheus scrapes the real builder and uploader and evaluates the shipped rules.

Prometheus (Debian's ``prometheus`` binary, installed by ``.ci/run``) runs on a
free loopback port with a generated configuration: a one-second scrape and
evaluation interval, the services' ``/metrics`` ports as targets, and
``deploy/prometheus/alerts.yml`` as its rule file - unchanged except that
``ArcstreamTargetDown`` waits seconds instead of a minute before firing. Then the
ARC store is stopped while an ARC waits for delivery: the alert must fire, and
resolve once the store is back and the ARC delivered.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from services.common.config import Settings
from services.common.payload import InvestigationPayload
from services.dev.stack.ports import free_port
from services.dev.stack.processes import terminate
from services.dev.stack.stack import start_store
from tests.observability.processes import ROOT, Service, service_env
from tests.ops.pipeline import FAST_GROUP, delivered, publish, stored
from tests.support import until

pytestmark = pytest.mark.timeout(400)

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "arcstream.json"
ALERT = "ArcstreamTargetDown"
#: The shipped rule waits a minute; the test keeps the expression and shortens only the wait.
TEST_FOR = "2s"


class Prometheus:
    """A Prometheus server process and its HTTP API."""

    def __init__(self, config: dict[str, Any], directory: Path) -> None:
        binary = shutil.which("prometheus")
        assert binary, "the prometheus server is missing: apt-get install -y prometheus (.ci/run does)"
        directory.mkdir(parents=True)
        config_file = directory / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / "prometheus.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=directory,
            )

    def api(self, path: str, **params: str) -> Any:
        assert self.process.poll() is None, self.log.read_text()
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> dict[str, float]:
        """Instant query -> ``job`` label (or ``""``) -> value."""
        return {r["metric"].get("job", ""): float(r["value"][1]) for r in self.api("query", query=expr)["result"]}

    def alerts(self, name: str) -> list[dict[str, Any]]:
        return [alert for alert in self.api("alerts")["alerts"] if alert["labels"]["alertname"] == name]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def rules_with_short_wait(target: Path) -> int:
    """The shipped rules with :data:`ALERT` waiting :data:`TEST_FOR`; return the number of alerts."""
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    alerts = [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]
    (rule,) = [rule for rule in alerts if rule["alert"] == ALERT]
    rule["for"] = TEST_FOR
    target.write_text(yaml.safe_dump(rules), encoding="utf-8")
    return len(alerts)


def check_dashboard_queries(prometheus: Prometheus) -> None:
    """Every panel's query is valid PromQL to a real Prometheus; the traffic panels show both services."""
    panels = [panel for panel in json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"] if panel["type"] != "row"]
    results = {}
    for panel in panels:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "1m").replace("$stage", ".*")
            results[(panel["title"], target["refId"])] = prometheus.api("query", query=expr)["result"]
    for title in ("Messages in per second", "Messages out per second", "Time per message (p50, p95)"):
        stages = {series["metric"].get("stage") for series in results[(title, "A")]}
        assert {"build", "upload"} <= stages, (title, stages)
    assert {s["metric"]["code"] for s in results[("HTTP answers per second by code", "A")]} >= {"200", "error"}


def test_target_down_fires_when_the_store_stops_and_resolves_when_it_is_back(
    make_settings: Callable[..., Settings], tmp_path: Path, cleanups: Callable[[Callable[[], None]], None]
) -> None:
    settings = make_settings(kafka=FAST_GROUP)
    store_port = free_port()
    store = start_store(tmp_path / "store", port=store_port, known_rdis=("prometheus-e2e",))
    current_store = [store]
    cleanups(lambda: terminate(current_store[0].pid))
    asyncio.run(publish(settings))  # creates the topics before the consumers subscribe

    # An uploader that retries for long.
    env = service_env(settings, store, tmp_path, "prometheus-e2e") | {
        "ARCSTREAM_UPLOADER__MAX_ATTEMPTS": "100000",
        "ARCSTREAM_UPLOADER__BACKOFF_INITIAL_S": "0.2",
        "ARCSTREAM_UPLOADER__BACKOFF_MAX_S": "1.0",
        "ARCSTREAM_UPLOADER__CONNECT_TIMEOUT_S": "1.0",
        "ARCSTREAM_LOG_LEVEL": "WARNING",
    }
    services = {name: Service([name], env, tmp_path / f"{name}.log") for name in ("builder", "uploader")}
    for service in services.values():
        cleanups(service.stop)
    alert_count = rules_with_short_wait(tmp_path / "alerts.yml")
    prometheus = Prometheus(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp_path / "alerts.yml")],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{services[name].metrics_port}"]}]}
                for job, name in (("build", "builder"), ("upload", "uploader"))
            ],
        },
        tmp_path / "prometheus",
    )
    cleanups(prometheus.stop)

    def holds(check: Callable[[], bool], what: str, limit_s: float = 120) -> float:
        """Wait until ``check()``; return the seconds it took (reported, never asserted)."""
        started = time.monotonic()

        async def poll() -> bool:
            for name, service in services.items():
                assert service.process.poll() is None, f"{name} exited:\n{service.log.read_text()[-3000:]}"
            return await asyncio.to_thread(check)

        asyncio.run(until(poll, what, limit_s=limit_s))
        return time.monotonic() - started

    def ready() -> bool:
        try:
            return httpx.get(f"{prometheus.url}/-/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    holds(ready, "Prometheus to be ready")
    holds(lambda: prometheus.query("up") == {"build": 1.0, "upload": 1.0}, "both services scraped")

    def rules_healthy() -> bool:
        rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
        return len(rules) == alert_count and all(rule["health"] == "ok" for rule in rules)

    holds(rules_healthy, "every shipped rule evaluated without error")

    # Deliveries work: the target is up, the alert is quiet.
    asyncio.run(publish(settings, InvestigationPayload(identifier="inv-1", title="Before the outage")))
    holds(lambda: asyncio.run(delivered(store, 1)), "inv-1 in the store")
    holds(lambda: prometheus.query("arcstream_target_up") == {"upload": 1.0, "build": 0.0}, "target up scraped")
    assert prometheus.alerts(ALERT) == []

    # The store goes away while an ARC waits for delivery.
    terminate(store.pid)
    asyncio.run(publish(settings, InvestigationPayload(identifier="inv-2", title="During the outage")))
    fired_after = holds(
        lambda: [a["state"] for a in prometheus.alerts(ALERT)] == ["firing"], f"{ALERT} firing", limit_s=180
    )
    (alert,) = prometheus.alerts(ALERT)
    assert alert["labels"] == {
        "alertname": ALERT,
        "severity": "critical",
        "job": "upload",
        "instance": f"127.0.0.1:{services['uploader'].metrics_port}",
    }
    assert "unreachable" in alert["annotations"]["summary"]
    assert prometheus.query('arcstream_http_responses_total{code="error"}')["upload"] > 0

    # Back on the same port: the waiting ARC is delivered and the alert resolves.
    current_store[0] = start_store(tmp_path / "store", port=store_port, known_rdis=("prometheus-e2e",))
    resolved_after = holds(lambda: prometheus.alerts(ALERT) == [], f"{ALERT} resolved", limit_s=180)
    holds(lambda: asyncio.run(delivered(current_store[0], 2)), "inv-2 in the store")
    assert set(stored(current_store[0])) == {"inv-1", "inv-2"}
    assert prometheus.query("arcstream_target_up")["upload"] == 1.0
    check_dashboard_queries(prometheus)
    print(
        f"\n{ALERT}: firing {fired_after:.1f} s after the store stopped, resolved {resolved_after:.1f} s after restart"
    )
