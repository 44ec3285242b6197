"""The ARC content hash, computed exactly as the upload target (FAIRagro API v3) computes ``arc_hash``.

Publishing dates are stamped per serialisation and so are left out; everything
else, including ``@graph`` order, counts. Keeping the formula identical lets the
uploader compare a built ARC with what the target already holds without a round trip.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: Keys the target ignores, at every depth of the document.
IGNORED_KEYS = frozenset({"datePublished", "sdDatePublished", "dateModified"})


def _without_dates(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_dates(item) for key, item in value.items() if key not in IGNORED_KEYS}
    if isinstance(value, list):
        return [_without_dates(item) for item in value]
    return value


def content_hash(document: Any) -> str:
    """Hex SHA-256 of ``json.dumps(document without date keys, sort_keys=True)`` as UTF-8."""
    text = json.dumps(_without_dates(document), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
