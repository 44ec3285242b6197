"""The shipped alert rules: valid, unit-tested with promtool (one test per alert), on series that exist.

promtool comes with Debian's ``prometheus`` package; ``.ci/run`` installs it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.observability.promql import PENDING_METRICS, SCRAPE_METRICS, exposed_metric_names, metric_names

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy" / "prometheus"
RULES = RULES_DIR / "alerts.yml"
RULE_TESTS = RULES_DIR / "alerts.test.yml"


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: apt-get install -y prometheus (.ci/run does)"
    return found


def run_promtool(*args: str, cwd: Path = RULES_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_checks_the_rules() -> None:
    result = run_promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_test_that_makes_it_fire_and_one_that_keeps_it_quiet() -> None:
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names)), "alert names are unique"
    for name in names:
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name}: no test in which it fires"
        assert any(not case["exp_alerts"] for case in mine), f"{name}: no test in which it stays quiet"
    assert {case["alertname"] for case in cases} <= set(names), "tests name alerts that do not exist"


def test_every_alert_is_documented_with_severity_and_text() -> None:
    doc = (ROOT / "docs" / "observability.md").read_text(encoding="utf-8")
    for rule in alerts():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert f"`{rule['alert']}`" in doc, f"{rule['alert']} is not explained in docs/observability.md"


def test_rules_read_only_series_that_exist() -> None:
    exposed = exposed_metric_names()
    assert not PENDING_METRICS & exposed, (
        f"now defined by the code, remove from PENDING_METRICS: {sorted(PENDING_METRICS & exposed)}"
    )
    known = exposed | PENDING_METRICS | SCRAPE_METRICS
    for rule in alerts():
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, f"{rule['alert']} reads series nothing exposes: {sorted(unknown)}"


def test_metric_names_are_read_from_promql_without_functions_labels_or_keywords() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, stage) (rate(arcstream_duration_seconds_bucket{stage=~"build|x"}'
        "[$__rate_interval]))) > 1e3 and on (job) up offset 15m or sum(foo:bar_total) without (code) "
        "/ ignoring(code) group_left(instance) vector(1) * $threshold"
    )
    assert metric_names(expr) == {"arcstream_duration_seconds_bucket", "up", "foo:bar_total"}


def test_a_changed_threshold_fails_the_promtool_tests(tmp_path: Path) -> None:
    """The unit tests pin behaviour: a rule that fires later than tested is caught."""
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    rules = RULES.read_text(encoding="utf-8")
    one_gib, eight_gib = "_retained_wal_bytes) > 1073741824", "_retained_wal_bytes) > 8589934592"
    assert one_gib in rules
    (tmp_path / RULES.name).write_text(rules.replace(one_gib, eight_gib), encoding="utf-8")
    result = run_promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "ArcstreamCdcSlotWalRetentionHigh" in result.stdout + result.stderr
