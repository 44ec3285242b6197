"""Debezium connector properties for the embedded engine, derived from :class:`Settings`.

The options that shape records (plugin, transaction metadata, heartbeats,
tombstones, JSON without schemas, decimals as strings) are the ones
``deploy/compose/connectors/arcstream-postgres.json`` gives Kafka Connect, so
the extractor reads the same records whichever capture produced them.
Only the engine-specific parts differ: offsets live in a file under
``cdc.offsets_dir`` (default ``<state_dir>/cdc``) instead of a Connect offsets topic.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from services.common.config import Settings
from services.common.errors import ConfigError

#: Record-shaping options shared with the Kafka Connect configuration (checked by a test).
RECORD_OPTIONS: dict[str, str] = {
    "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
    "plugin.name": "pgoutput",
    "publication.autocreate.mode": "filtered",
    "provide.transaction.metadata": "true",
    "tombstones.on.delete": "true",
    "decimal.handling.mode": "string",
}


def offsets_file(settings: Settings) -> Path:
    """Where the embedded connector keeps its offsets: one file per replication slot.

    Under ``state_dir`` unless ``cdc.offsets_dir`` names another directory, so moving
    ``state_dir`` (``ARCSTREAM_STATE_DIR``) moves every piece of local state together.
    """
    directory = settings.cdc.offsets_dir or settings.state_dir / "cdc"
    return directory / f"{settings.cdc.slot_name}.offsets"


def database_options(database_url: str) -> dict[str, str]:
    """``database.*`` options from a libpq URL or conninfo string."""
    try:
        params = conninfo_to_dict(database_url)
    except Exception as exc:  # psycopg raises ProgrammingError for unparsable strings
        raise ConfigError("database_url is not a valid PostgreSQL URL") from exc
    options = {
        "database.hostname": str(params.get("host") or "127.0.0.1"),
        "database.port": str(params.get("port") or 5432),
        "database.user": str(params.get("user") or "postgres"),
        "database.password": str(params.get("password") or ""),
        "database.dbname": str(params.get("dbname") or params.get("user") or "postgres"),
    }
    if params.get("sslmode"):
        options["database.sslmode"] = str(params["sslmode"])
    return options


def connector_properties(settings: Settings, tables: Sequence[str]) -> dict[str, str]:
    """Every property of the embedded connector capturing ``tables`` (``schema.table``)."""
    cdc = settings.cdc
    return {
        "name": f"arcstream-{cdc.slot_name}",
        **RECORD_OPTIONS,
        **database_options(settings.database_url.get_secret_value()),
        "topic.prefix": cdc.topic_prefix,
        "slot.name": cdc.slot_name,
        "publication.name": cdc.publication_name,
        "table.include.list": ",".join(_include_pattern(table) for table in tables),
        "snapshot.mode": cdc.snapshot_mode,
        "heartbeat.interval.ms": str(cdc.heartbeat_interval_ms),
        # JsonConverter without the schema envelope, for keys and values alike.
        "converter.schemas.enable": "false",
        "key.converter.schemas.enable": "false",
        "value.converter.schemas.enable": "false",
        "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
        "offset.storage.file.filename": str(offsets_file(settings).resolve()),
        "offset.flush.interval.ms": str(cdc.offset_flush_interval_ms),
        # Hand records over promptly: latency matters more than batching at our rates.
        "poll.interval.ms": "50",
    }


def _include_pattern(table: str) -> str:
    """``table.include.list`` entries are regular expressions: match this table exactly."""
    schema, _, name = table.partition(".")
    return rf"\Q{schema}\E\.\Q{name}\E" if name else rf"\Q{schema}\E"
