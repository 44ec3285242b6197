"""An ARC's identity and content hash, computed exactly as the upload target (FAIRagro API v3) does.

Publishing dates are stamped per serialisation and so are left out; everything
else, including ``@graph`` order, counts. Keeping the formula identical lets the
uploader compare a built ARC with what the target already holds without a round trip.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import orjson

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


def _strip_dates_in_place(value: Any) -> None:
    """Remove the ignored keys at every depth of a document this process owns (no copy).

    Recursion visits only containers (most values are strings), which is what makes it
    about twice as fast as the copying :func:`_without_dates`.
    """
    items: Iterable[Any]
    if type(value) is dict:
        for key in IGNORED_KEYS:
            value.pop(key, None)
        items = value.values()
    elif type(value) is list:
        items = value
    else:
        return
    for item in items:
        if type(item) is dict or type(item) is list:
            _strip_dates_in_place(item)


def content_hash_of_json(arc_json: bytes) -> str:
    """:func:`content_hash` of serialised JSON: the same formula and bytes, without copying the document.

    Used by the build worker on every ARC, where the copy in :func:`content_hash` cost about as
    much as the serialisation itself; the parsed document is private here, so it is changed in place.
    """
    document = orjson.loads(arc_json)
    _strip_dates_in_place(document)
    text = json.dumps(document, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def arc_id(identifier: str, rdi: str) -> str:
    """The API's ARC id: hex SHA-256 of ``"<identifier>:<rdi>"``, both stripped of surrounding whitespace."""
    return hashlib.sha256(f"{identifier.strip()}:{rdi.strip()}".encode()).hexdigest()


def root_identifier(document: Any) -> str | None:
    """The ARC's identifier as the API reads it: the root node's (``@id: "./"``) ``identifier``,
    a string, a one-element list or ``{"@value": ...}``, stripped; ``None`` when there is none."""
    graph = document.get("@graph") if isinstance(document, dict) else None
    for node in graph if isinstance(graph, list) else ():
        if isinstance(node, dict) and node.get("@id") == "./":
            value = node.get("identifier")
            if isinstance(value, list) and len(value) == 1:
                value = value[0]
            if isinstance(value, dict):
                value = value.get("@value")
            return value.strip() if isinstance(value, str) and value.strip() else None
    return None
