"""Parse Debezium records as the extractor sees them on Kafka (JsonConverter output).

Envelope facts that shape this module (see ``shared/fixtures/debezium_examples.json``):
values come without a schema envelope (``schemas.enable=false``), but a
``{"schema", "payload"}`` envelope is unwrapped too; BEGIN/END markers and
change events share only the *txId* part (before ``:``) of their transaction
ids; ``source.ts_ms`` is the source commit time; ``source.snapshot`` is a
string; a delete is followed by a tombstone (null value), which carries
nothing we need.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from services.common.errors import PayloadError, RecordError
from services.common.records import loads

#: Debezium's conventional signalling table: its changes are commands to the connector, not data.
SIGNAL_TABLE = "debezium_signal"

Row = dict[str, Any]


class ChangeRecordError(RecordError):
    """A record on a change or transaction topic that cannot be understood."""

    default_code = "unreadable-change"


@dataclass(frozen=True)
class TransactionMarker:
    """A BEGIN or END record from ``<prefix>.transaction``."""

    status: Literal["BEGIN", "END"]
    tx_id: str
    event_count: int


@dataclass(frozen=True)
class RowChange:
    """One row change (create, update, delete, or snapshot read)."""

    schema: str
    table: str
    op: str
    before: Row | None
    after: Row | None
    #: The txId part of ``transaction.id``; ``None`` without transaction metadata (and for snapshots).
    tx_id: str | None
    #: Source commit time in epoch milliseconds.
    commit_ts_ms: int | None

    @property
    def rows(self) -> list[Row]:
        """Old and new values: both can name an investigation (a row may move between them)."""
        return [row for row in (self.before, self.after) if row]


def tx_part(transaction_id: str) -> str:
    """``"750:22487512"`` -> ``"750"``: what BEGIN, END and the events of one transaction share."""
    return transaction_id.split(":", 1)[0]


def _json_object(value: bytes) -> dict[str, Any]:
    try:
        data = loads(value)
    except PayloadError as exc:
        raise ChangeRecordError(str(exc)) from exc
    if isinstance(data, dict) and set(data) == {"schema", "payload"}:
        data = data["payload"]
    if not isinstance(data, dict):
        raise ChangeRecordError(f"expected a JSON object, got {type(data).__name__}")
    return data


def parse_transaction(value: bytes) -> TransactionMarker:
    """A transaction topic record."""
    data = _json_object(value)
    status, tx_id = data.get("status"), data.get("id")
    if status not in ("BEGIN", "END") or not isinstance(tx_id, str):
        raise ChangeRecordError("not a transaction marker (needs status BEGIN|END and a string id)")
    count = data.get("event_count")
    if status == "END" and not isinstance(count, int):
        raise ChangeRecordError("transaction END without an integer event_count")
    return TransactionMarker(status, tx_part(tx_id), count if isinstance(count, int) else 0)


def is_heartbeat(value: bytes) -> bool:
    """Heartbeat values hold only ``ts_ms`` (also when a heartbeat topic matches our pattern)."""
    try:
        data = loads(value)
    except PayloadError:
        return False
    return isinstance(data, dict) and set(data) == {"ts_ms"}


def parse_change(value: bytes) -> RowChange:
    """A change topic record's value (not a tombstone)."""
    data = _json_object(value)
    source, op = data.get("source"), data.get("op")
    if not isinstance(source, dict) or op not in ("c", "u", "d", "r", "t", "m"):
        raise ChangeRecordError("not a Debezium change event (needs source and op)")
    schema, table = source.get("schema"), source.get("table")
    if not isinstance(schema, str) or not isinstance(table, str):
        raise ChangeRecordError("change event without source.schema/source.table")
    before, after = data.get("before"), data.get("after")
    if not (before is None or isinstance(before, dict)) or not (after is None or isinstance(after, dict)):
        raise ChangeRecordError("before/after must be objects or null")
    transaction = data.get("transaction")
    tx_id = None
    if isinstance(transaction, dict) and isinstance(transaction.get("id"), str):
        tx_id = tx_part(transaction["id"])
    ts = source.get("ts_ms")
    return RowChange(schema, table, op, before, after, tx_id, ts if isinstance(ts, int) else None)


def iso_from_ms(ts_ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC with milliseconds (the ``arcstream.source.ts`` format)."""
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
