"""The one typed configuration model of arcstream.

Every service reads its settings from :class:`Settings`, never from ``os.environ``.
Sources, highest priority first:

1. keyword arguments (CLI flags are passed this way),
2. ``ARCSTREAM_*`` environment variables (nested keys with ``__``, e.g.
   ``ARCSTREAM_KAFKA__BOOTSTRAP_SERVERS``),
3. the well-known unprefixed variables other tools use: ``DATABASE_URL``,
   ``KAFKA_BOOTSTRAP_SERVERS``, ``ARC_STORE_URL``,
4. a YAML file (``--config FILE`` or ``ARCSTREAM_CONFIG``),
5. sources registered at start-up with :func:`register_fallback_source` (the CLI registers
   the single-machine stack's state file written by ``arcstream dev up``; production code
   never imports the dev stack), read from the ``state_dir`` the sources above name,
6. defaults.

Upstream (SQL-to-ARC) key names are kept where they exist: ``db_batch_size``,
``max_concurrent_arc_builds``, ``arc_generation_timeout_minutes``, ``rdi`` (upstream's
``max_concurrent_tasks`` is the builder's ``builder.max_in_flight``, named like every
stage's). The consumer-group loop's settings are one model, :class:`StageSettings`,
that every consuming stage extends, so they are named and unit-ed alike. Kafka client settings keep the
Java-client names (snake case, same units). The model is frozen and secrets are
``SecretStr`` so they never reach logs or topics in clear text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from services.common.errors import ConfigError

#: Where ``arcstream dev up`` records the servers it started (see services.dev.stack).
DEFAULT_STATE_DIR = Path(".arcstream")

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(BaseModel):
    """Kafka client settings shared by every producer, consumer and admin client."""

    model_config = _FROZEN

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "arcstream"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    #: Producer: largest request (bytes). ARCs reach several MB; payloads up to 32 MB must pass.
    max_request_size: int = 64 * 1024 * 1024
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = "zstd"
    linger_ms: int = 5
    #: Producer: bytes per partition batch (Java ``batch.size``); larger batches cost less per message.
    batch_size: int = 1024 * 1024
    #: Producer: bound on messages awaiting acknowledgement, keeps memory flat.
    max_in_flight_sends: int = 500
    request_timeout_ms: int = 40_000
    #: Consumer: per-partition and per-fetch byte limits, large enough for one big ARC.
    max_partition_fetch_bytes: int = 64 * 1024 * 1024
    fetch_max_bytes: int = 128 * 1024 * 1024
    #: Consumer groups: a member silent this long is declared dead and its partitions move.
    #: Apache Kafka refuses values outside ``group.min/max.session.timeout.ms`` (6 s .. 30 min by
    #: default); the dev broker takes less (``arcstream dev up`` records shorter timings).
    session_timeout_ms: int = 30_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    #: How long a rebalance waits for members to rejoin (Kafka Connect's ``rebalance.timeout.ms``;
    #: the Java consumer sends ``max.poll.interval.ms``). Unset: the session timeout (aiokafka's default).
    rebalance_timeout_ms: int | None = Field(default=None, ge=1)


class TopicSettings(BaseModel):
    """Topic names (``<prefix>.<name>``), partitions and per-topic limits."""

    model_config = _FROZEN

    prefix: str = "arc"
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    #: ``max.message.bytes`` for the payload and ARC topics (bytes after compression).
    max_message_bytes: int = 64 * 1024 * 1024
    report_retention_ms: int = 14 * 24 * 3600 * 1000
    dlq_retention_ms: int = 30 * 24 * 3600 * 1000

    @property
    def investigations(self) -> str:
        return f"{self.prefix}.investigations"

    @property
    def arcs(self) -> str:
        return f"{self.prefix}.arcs"

    @property
    def report(self) -> str:
        return f"{self.prefix}.report"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}.dlq"

    @property
    def state(self) -> str:
        """Compacted topic of the stages' durable state: the uploader's delivered hashes and runs,
        and commit marks where the broker drops commit metadata (services/common/kafka/marks.py)."""
        return f"{self.prefix}.state"


class StageSettings(BaseModel):
    """The consumer-group loop of a stage (services/common/kafka/stage.py): the same names and units everywhere."""

    model_config = _FROZEN

    group_id: str
    #: Messages taken in and not yet fully handled before the stage pauses its partitions
    #: (it keeps polling, so it stays in the group); 0: the stage's own default.
    max_in_flight: int = Field(default=0, ge=0)
    #: Offsets are committed at most this often (and always on revocation and shutdown).
    commit_interval_ms: int = Field(default=1_000, ge=0)
    #: On SIGTERM, in-flight messages get this long to finish; the rest are read again after a restart.
    shutdown_grace_ms: int = Field(default=10_000, ge=0)


class BuilderSettings(StageSettings):
    """Builder-only settings (the upstream names live at the top level)."""

    group_id: str = "arcstream-builder"
    #: 0: per engine (arctrl 2 x workers, fast 32 x workers: see services/builder/sizing.py).
    max_in_flight: int = Field(default=0, ge=0)
    commit_interval_ms: int = Field(default=500, ge=0)
    engine: Literal["arctrl", "fast"] = "fast"
    #: Worker processes are replaced after this many builds to bound memory; unset: per engine
    #: (arctrl 200, sized for its object graphs; fast 100000, its workers hold no engine state).
    max_builds_per_worker: int | None = Field(default=None, ge=1)
    #: A worker whose peak resident memory (MiB) passed this after a build is replaced before its
    #: next pool task (checked in the worker after each build); 0 disables.
    max_worker_rss_mb: int = Field(default=1024, ge=0)


class TlsClientSettings(BaseModel):
    """mTLS material for the upload target; verification is on by default."""

    model_config = _FROZEN

    client_cert: Path | None = None
    client_key: Path | None = None
    ca_bundle: Path | None = None
    verify: bool = True


class UploaderSettings(StageSettings):
    """Uploader settings: target, retries, timeouts, concurrency."""

    group_id: str = "arcstream-uploader"
    max_in_flight: int = Field(default=64, ge=1)
    shutdown_grace_ms: int = Field(default=15_000, ge=0)
    target_url: str = "http://127.0.0.1:8080"
    force: bool = False
    max_concurrent_uploads: int = Field(default=8, ge=1)
    max_attempts: int = Field(default=8, ge=1)
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    write_timeout_s: float = 60.0
    pool_timeout_s: float = 30.0
    #: A ``Retry-After`` longer than this is not waited for: the ARC fails (and goes to the DLQ).
    retry_after_max_s: float = 300.0
    #: While the target is unavailable (connection errors, timeouts, 502/503/504) delivery pauses;
    #: ARCs fail only when it has been unavailable longer than this (keep it below the retention
    #: of your topics; arc.arcs is compacted, so its newest versions never expire).
    outage_budget_s: float = Field(default=24 * 3600.0, gt=0)
    #: While the target refuses this uploader (400 unknown RDI, 401, 403), it re-checks this often.
    misconfigured_recheck_s: float = Field(default=30.0, gt=0)
    #: The target has ``DELETE /v3/arcs/{id}`` (the local store with ``--enable-delete``). The FAIRagro
    #: API v3 has none: tombstones are then reported ``retained`` (see docs/uploader.md).
    target_deletes: bool = False
    #: A snapshot run whose markers and ARCs stopped coming for this long (its extractor died) is
    #: closed: its harvest is CANCELLED with the reason.
    run_idle_timeout_s: float = Field(default=900.0, gt=0)
    tls: TlsClientSettings = TlsClientSettings()
    #: The live status view (``arcstream status``): faust app over the report topic.
    status_host: str = "127.0.0.1"
    status_port: int = 6066


class StoreSettings(BaseModel):
    """The local ARC store (``arcstream store``)."""

    model_config = _FROZEN

    host: str = "127.0.0.1"
    port: int = 8080
    directory: Path = DEFAULT_STATE_DIR / "store"
    failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    retry_after_s: float = 1.0
    #: ``Retry-After`` as delta seconds or as an HTTP date (both forms are legal; clients must read both).
    retry_after_format: Literal["seconds", "http-date"] = "seconds"
    latency_ms: int = 0
    max_body_bytes: int = 256 * 1024 * 1024
    #: Seed for the injected failures, so a demo or benchmark run is repeatable.
    failure_seed: int | None = None
    #: HTTPS: server certificate and key. With ``tls_client_ca`` the API requires a client certificate
    #: signed by that CA (401 without) and takes the RDIs a client may use from its certificate (403).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    #: RDIs the store recognises (others: 400), like the API's ``known_rdis``; ``--known-rdi`` adds to it.
    known_rdis: list[str] = Field(default_factory=lambda: ["arcstream-dev", "arcstream-demo"])
    #: Extension the real API lacks: ``DELETE /v3/arcs/{arc_id}`` (off: 404 like the API).
    enable_delete: bool = False
    #: Extensions for tests and the demo: ``GET /v3/arcs``, ``GET /v3/arcs/{arc_id}`` and the request
    #: log ``GET /_store/requests``; off: 404 like the API.
    test_hooks: bool = False
    #: The request log also keeps each request body (tests validate what a client sent); needs ``test_hooks``.
    record_bodies: bool = False
    #: The API's later git sync step: new or changed ARCs are parsed with arctrl in a worker process and
    #: the result recorded as a ``GIT_PUSH_SUCCESS`` / ``GIT_PUSH_FAILED`` event on the ARC.
    git_sync: bool = True


class CdcSettings(StageSettings):
    """Change data capture: Debezium connector and incremental extraction."""

    topic_prefix: str = "arcdb"
    group_id: str = "arcstream-cdc-extractor"
    #: Change records held (grouped per transaction, debounced) before the extractor pauses.
    max_in_flight: int = Field(default=10_000, ge=1)
    slot_name: str = "arcstream"
    publication_name: str = "arcstream"
    debounce_ms: int = 300
    #: Where the embedded connector keeps its offsets (its position in the WAL). Unset: ``<state_dir>/cdc``.
    offsets_dir: Path | None = Field(default=None, json_schema_extra={"reference_default": "<state_dir>/cdc"})
    #: Per captured table (``schema.table``): how a row finds its investigation(s).
    #: Either ``{"column": "investigation_ref"}`` or ``{"query": "SELECT ... %(col)s"}``.
    table_mappings: dict[str, dict[str, str]] = Field(default_factory=dict)
    #: Debezium ``snapshot.mode``: ``no_data`` when the snapshot extractor does the first load.
    snapshot_mode: Literal["no_data", "initial", "when_needed"] = "no_data"
    #: Debezium heartbeats keep the replication slot advancing while captured tables are quiet.
    heartbeat_interval_ms: int = Field(default=10_000, ge=0)
    #: How often the embedded connector's offsets are flushed to ``offsets_dir`` (bounds re-delivery).
    offset_flush_interval_ms: int = Field(default=1_000, ge=100)
    #: A transaction whose END (or some of whose events) has not arrived after this long is flushed anyway.
    transaction_timeout_ms: int = Field(default=5_000, ge=0)
    #: Extra JVM options for the embedded connector (heap size etc.).
    java_options: list[str] = Field(default_factory=lambda: ["-Xms64m", "-Xmx512m"])


class MetricsSettings(BaseModel):
    """Prometheus ``/metrics`` plus ``/healthz`` and ``/readyz``; port 0 disables."""

    model_config = _FROZEN

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    #: Bind a free port chosen by the OS instead of ``port`` (logged and reported by the server).
    ephemeral_port: bool = False


class Settings(BaseSettings):
    """All of arcstream's configuration, validated once at start."""

    model_config = SettingsConfigDict(
        env_prefix="ARCSTREAM_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        hide_input_in_errors=True,
    )

    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/postgres")
    #: Name of the research data infrastructure the ARCs are uploaded for.
    rdi: str = "arcstream-dev"
    #: Investigations read per batch (their children: one query per relation). Two batches are in
    #: memory at once (one assembled, the next prefetched): the extractor's memory follows this.
    db_batch_size: int = Field(default=250, ge=1)
    #: Snapshot extraction processes, each reading one shard of the same database snapshot.
    extractor_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    max_concurrent_arc_builds: int = Field(default_factory=lambda: max(1, (os.cpu_count() or 2) - 1), ge=1)
    arc_generation_timeout_minutes: float = Field(default=30.0, gt=0)
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    state_dir: Path = DEFAULT_STATE_DIR

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    builder: BuilderSettings = BuilderSettings()
    uploader: UploaderSettings = UploaderSettings()
    store: StoreSettings = StoreSettings()
    cdc: CdcSettings = CdcSettings()
    metrics: MetricsSettings = MetricsSettings()

    @field_validator("rdi")
    @classmethod
    def _rdi_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            _WellKnownEnvSource(settings_cls),
            _YamlFileSource(settings_cls),
            _RegisteredSources(settings_cls, (init_settings, env_settings, _YamlFileSource(settings_cls))),
        )


class _DictSource(PydanticBaseSettingsSource):
    """A settings source that produces one nested dict."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def load(self) -> dict[str, Any]:
        raise NotImplementedError

    def __call__(self) -> dict[str, Any]:
        return self.load()


def _set_nested(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        target = target.setdefault(key, {})
    target[leaf] = value


#: Unprefixed variables that other tools (psql, Kafka CLIs, compose files) already use.
WELL_KNOWN_ENV = {
    "DATABASE_URL": "database_url",
    "KAFKA_BOOTSTRAP_SERVERS": "kafka.bootstrap_servers",
    "ARC_STORE_URL": "uploader.target_url",
}


class _WellKnownEnvSource(_DictSource):
    def load(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for env_name, dotted in WELL_KNOWN_ENV.items():
            if os.environ.get(env_name):
                _set_nested(data, dotted, os.environ[env_name])
        return data


def config_file_path() -> Path | None:
    """The YAML file named by ``ARCSTREAM_CONFIG`` (the CLI's ``--config`` sets it)."""
    value = os.environ.get("ARCSTREAM_CONFIG")
    return Path(value) if value else None


class _YamlFileSource(_DictSource):
    def load(self) -> dict[str, Any]:
        path = config_file_path()
        if path is None:
            return {}
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of settings")
        return data


#: A fallback source: ``state_dir`` -> nested settings (lowest priority above the defaults).
FallbackSource = Callable[[Path], dict[str, Any]]
_fallback_sources: list[FallbackSource] = []


def register_fallback_source(source: FallbackSource) -> None:
    """Add a lowest-priority settings source (idempotent); the CLI registers the dev stack's state file."""
    if source not in _fallback_sources:
        _fallback_sources.append(source)


def _merge(target: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target.setdefault(key, value)


class _RegisteredSources(_DictSource):
    """The registered fallback sources, read from the ``state_dir`` the higher sources configure."""

    def __init__(self, settings_cls: type[BaseSettings], above: tuple[PydanticBaseSettingsSource, ...]) -> None:
        super().__init__(settings_cls)
        self._above = above

    def _state_dir(self) -> Path:
        for source in self._above:
            value = source().get("state_dir")
            if value:
                return Path(value)
        return DEFAULT_STATE_DIR

    def load(self) -> dict[str, Any]:
        if not _fallback_sources:
            return {}
        state_dir = self._state_dir()
        data: dict[str, Any] = {}
        for source in _fallback_sources:
            _merge(data, source(state_dir))
        return data


def _describe_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(settings)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"invalid setting '{key}': {first['msg']}{more}"


def load_settings(**overrides: Any) -> Settings:
    """Build and validate the settings; raise :class:`ConfigError` with one line naming the bad key."""
    clean = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        raise ConfigError(_describe_error(exc)) from exc


def effective_settings(settings: Settings) -> dict[str, Any]:
    """The settings as JSON-able data, secrets masked."""
    data: dict[str, Any] = json.loads(settings.model_dump_json())
    return data
