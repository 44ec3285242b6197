"""Outcome records: what travels on ``arc.report``, one per identifier, stage and version.

``schemas/report.schema.json`` is generated from :class:`OutcomeRecord`; a test
checks both agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.common.errors import ErrorCode

Stage = Literal["extract", "build", "upload"]
Status = Literal[
    # extract
    "published",
    # build
    "built",
    # upload
    "created",
    "updated",
    "unchanged",
    "deleted",
    #: a tombstone for a target that cannot delete: the ARC stays there (see docs/uploader.md)
    "retained",
    # build and upload: a newer version of the same identifier was taken in before this one was done
    "superseded",
    # any stage
    "failed",
]
#: Statuses that end a version without output: nothing more will happen to it.
NO_OUTPUT: frozenset[str] = frozenset({"superseded", "failed"})


def utc_now_iso() -> str:
    """Current UTC time as ISO 8601 with milliseconds and ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_utc(text: str) -> datetime | None:
    """An ISO 8601 time as an aware datetime, ``None`` when unreadable.

    ``Z`` is UTC; a time without offset is UTC too (Debezium and our headers write UTC); the real
    API's ``+00:00Z`` (an offset *and* ``Z``, see TARGET_API.md) reads as its offset.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.removesuffix("Z"))
        except ValueError:
            return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class OutcomeRecord(BaseModel):
    """The outcome of one stage for one identifier (one version of it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    identifier: str
    stage: Stage
    status: Status
    run_id: str | None = None
    #: Upload: the target (``<rdi>@<url>``) and the harvest the ARC went into (none: delivered on its own).
    target: str | None = None
    harvest_id: str | None = None
    arc_id: str | None = None
    content_hash: str | None = None
    attempts: int = Field(default=1, ge=0)
    http_status: int | None = None
    #: Why it failed, from the documented vocabulary (services/common/errors.py, docs/operations.md).
    error_code: ErrorCode | None = None
    error_message: str | None = None
    duration_ms: float | None = None
    #: Source commit (or extraction) time to acceptance by this stage, in milliseconds.
    latency_ms: float | None = None
    #: Build engine that produced the ARC, and whether it fell back to arctrl.
    engine: str | None = None
    #: Build: source values that did not reach the ARC as given, ``"<kind>: <what happened>"`` each.
    warnings: list[str] | None = None
    at: str = Field(default_factory=utc_now_iso)
