"""A documented, reversible encoding for study and assay identifiers arctrl refuses.

arctrl accepts study/assay identifiers matching ``^[a-zA-Z0-9_\\- ]+$`` and
silently strips surrounding whitespace. Real databases hold identifiers such as
``soil/2021.a`` or ``Bödenprobe``; failing every such investigation would lose
whole ARCs, and stripping would silently rename them. So an identifier that
arctrl would reject or alter is encoded: every other character (and leading or
trailing whitespace) becomes ``_xHHHH_`` (its Unicode code point in upper-case
hex, at least four digits, as in XML name escaping). The original is kept
verbatim in a comment named :data:`ORIGINAL_IDENTIFIER_COMMENT` on the study or
assay, so readers recover it exactly; identifiers arctrl accepts unchanged are
left alone and carry no comment.
"""

from __future__ import annotations

import re

from services.common.errors import MappingError

#: Comment name holding the original identifier of an encoded study or assay.
ORIGINAL_IDENTIFIER_COMMENT = "arcstream:original-identifier"

_ALLOWED_CHAR = re.compile(r"[a-zA-Z0-9_\- ]")
_ENCODED = re.compile(r"_x([0-9A-F]{4,6})_")


def needs_encoding(identifier: str) -> bool:
    """True if arctrl would reject or strip this identifier."""
    return identifier != identifier.strip() or not all(_ALLOWED_CHAR.fullmatch(char) for char in identifier)


def encode_identifier(identifier: str, what: str) -> str:
    """The identifier arctrl gets; raises :class:`MappingError` for an empty one."""
    if not identifier.strip():
        raise MappingError(f"{what} has an empty identifier")
    if not needs_encoding(identifier):
        return identifier
    core = identifier.strip()
    start = identifier.index(core)
    end = start + len(core)
    out = []
    for position, char in enumerate(identifier):
        inside = start <= position < end
        if inside and _ALLOWED_CHAR.fullmatch(char):
            out.append(char)
        else:
            out.append(f"_x{ord(char):04X}_")
    return "".join(out)


def decode_identifier(encoded: str) -> str:
    """Inverse of :func:`encode_identifier` for identifiers it encoded."""
    return _ENCODED.sub(lambda match: chr(int(match.group(1), 16)), encoded)
