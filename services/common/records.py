"""Message envelope conventions shared by every topic: headers, run markers, JSON.

A person reads these in Kafka UI, so header values are short UTF-8 strings and
values are JSON. ``kind`` tells a payload from a run marker; a tombstone
(``value is None``) needs no header.

Run markers: a snapshot run writes ``run-start`` (with the expected count) and
``run-end`` (with what it published to that partition) to *every* partition of
``arc.investigations``. The builder passes them through to the same partition
of ``arc.arcs`` after everything before them, so the uploader knows exactly
when a harvest is complete.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict

from services.common.errors import PayloadError

H_KIND = "arcstream.kind"
H_SCHEMA_VERSION = "arcstream.schema.version"
H_RUN_ID = "arcstream.run.id"
H_EXTRACTED_AT = "arcstream.extracted.at"
#: Source commit time (ISO 8601, UTC) of the change that produced this message.
H_SOURCE_TS = "arcstream.source.ts"
H_CONTENT_HASH = "arcstream.content.hash"
H_ENGINE = "arcstream.engine"
H_ERROR_CODE = "arcstream.error.code"
H_ERROR_MESSAGE = "arcstream.error.message"
H_ERROR_STAGE = "arcstream.error.stage"
#: Where the input of an outcome or dead letter was read: topic, partition, offset and consumer group.
H_ORIGIN_TOPIC = "arcstream.origin.topic"
H_ORIGIN_PARTITION = "arcstream.origin.partition"
H_ORIGIN_OFFSET = "arcstream.origin.offset"
H_ORIGIN_GROUP = "arcstream.origin.group"
#: Headers a stage adds to a dead letter; a replayed dead letter has them removed again.
ERROR_HEADERS: frozenset[str] = frozenset(
    {H_ERROR_CODE, H_ERROR_MESSAGE, H_ERROR_STAGE, H_ORIGIN_TOPIC, H_ORIGIN_PARTITION, H_ORIGIN_OFFSET, H_ORIGIN_GROUP}
)

Kind = Literal["payload", "arc", "outcome", "run-start", "run-end"]
MARKER_KINDS: frozenset[str] = frozenset({"run-start", "run-end"})

Headers = list[tuple[str, bytes]]


def make_headers(values: Mapping[str, str | int | None]) -> Headers:
    """Kafka headers from a mapping, skipping ``None`` values."""
    return [(key, str(value).encode()) for key, value in values.items() if value is not None]


def header_dict(headers: Iterable[tuple[str, bytes]] | None) -> dict[str, str]:
    """Headers as a dict of strings (last value wins)."""
    return {key: value.decode("utf-8", "replace") for key, value in headers or ()}


def replace_headers(headers: Sequence[tuple[str, bytes]] | None, **updates: str | int | None) -> Headers:
    """Copy ``headers`` with some keys replaced (``None`` removes a key)."""
    wanted = {key.replace("_", "."): value for key, value in updates.items()}
    kept = [(key, value) for key, value in headers or () if key not in wanted]
    return kept + make_headers(wanted)


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes; fast (orjson) and deterministic for a given object."""
    return orjson.dumps(obj)


def loads(data: bytes | str) -> Any:
    """Parse JSON, mapping a parse failure to :class:`PayloadError`."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"malformed JSON: {exc}") from exc


class RunMarker(BaseModel):
    """A run-start or run-end marker on one partition."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["run-start", "run-end"]
    run_id: str
    partition: int
    partitions: int
    #: run-start: investigations the run expects in total (all partitions).
    expected: int
    #: run-end: payloads published to this partition during the run.
    published: int = 0
    #: run-end: investigations that failed extraction (all partitions).
    failed: int = 0
    started_at: str
    finished_at: str | None = None

    @property
    def key(self) -> bytes:
        """Compacted topics keep the latest per key, so each marker gets its own key."""
        return f"__run__/{self.run_id}/{self.kind}/{self.partition}".encode()
