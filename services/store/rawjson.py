"""Raw text of a JSON object's top-level members, so the store keeps an ARC byte for byte.

The uploader splices the ARC bytes from ``arc.arcs`` into the request body
unchanged; the store cuts the same bytes back out instead of re-serialising the
parsed object, which is what lets a test compare stored files with the topic.
"""

from __future__ import annotations

import json
from typing import Any

_WHITESPACE = " \t\n\r"
_DECODER = json.JSONDecoder()


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def parse_members(text: str) -> dict[str, tuple[Any, str]]:
    """Parse a JSON object into ``{key: (value, raw value text)}``; ``ValueError`` if it is not one."""
    pos = _skip(text, 0)
    if text[pos : pos + 1] != "{":
        raise ValueError("not a JSON object")
    pos = _skip(text, pos + 1)
    members: dict[str, tuple[Any, str]] = {}
    if text[pos : pos + 1] == "}":
        return members
    while True:
        key, pos = _DECODER.raw_decode(text, pos)
        if not isinstance(key, str):
            raise ValueError("object key is not a string")
        pos = _skip(text, pos)
        if text[pos : pos + 1] != ":":
            raise ValueError("expected ':' after an object key")
        start = _skip(text, pos + 1)
        value, end = _DECODER.raw_decode(text, start)
        members[key] = (value, text[start:end])
        pos = _skip(text, end)
        if text[pos : pos + 1] == ",":
            pos = _skip(text, pos + 1)
            continue
        if text[pos : pos + 1] == "}" and _skip(text, pos + 1) == len(text):
            return members
        raise ValueError("expected ',' or '}' in an object")
