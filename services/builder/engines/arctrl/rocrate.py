"""ARC -> RO-Crate JSON-LD string, deterministic: the same payload gives the same bytes.

arctrl stamps the root dataset's ``sdDatePublished`` (always) and
``datePublished`` (when the investigation has no public release date) with the
wall clock on every serialisation. Both are pinned from the payload: the
release date, else the submission date, else :data:`UNDATED` - never the clock.
Everything else is arctrl's output unchanged, in arctrl's key and ``@graph`` order.
"""

from __future__ import annotations

from typing import Any

import orjson
from arctrl import ARC

from services.common.errors import MappingError
from services.common.payload import InvestigationPayload

#: Publishing date written when the payload has neither release nor submission date.
UNDATED = "1970-01-01"
ROOT_ID = "./"


def pinned_date(payload: InvestigationPayload) -> str:
    """The date standing in for the clock: release date, else submission date, else :data:`UNDATED`."""
    return payload.public_release_date or payload.submission_date or UNDATED


def pin_dates(document: dict[str, Any], payload: InvestigationPayload) -> dict[str, Any]:
    """Replace the clock-stamped dates of the root dataset in place; return the document."""
    date = pinned_date(payload)
    for node in document.get("@graph", []):
        if isinstance(node, dict) and node.get("@id") == ROOT_ID:
            node["sdDatePublished"] = date
            if not payload.public_release_date:
                node["datePublished"] = date
    return document


def to_rocrate_json(arc: ARC, payload: InvestigationPayload) -> str:
    """The ARC's RO-Crate JSON-LD with pinned dates; arctrl's refusals become :class:`MappingError`."""
    try:
        text = arc.ToROCrateJsonString()
    except Exception as exc:  # arctrl raises plain Exception for content its writer refuses
        raise MappingError(f"arctrl cannot write this investigation as RO-Crate: {exc}") from exc
    document = pin_dates(orjson.loads(text), payload)
    return orjson.dumps(document).decode("utf-8")
