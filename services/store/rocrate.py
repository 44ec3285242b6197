"""What makes a payload an ARC for the v3 API: the RO-Crate descriptor and an Investigation root.

The reference API rejects (422) a payload whose ``@graph`` lacks the descriptor
``ro-crate-metadata.json`` or a root ``./`` Dataset with ``additionalType:
Investigation`` and a non-empty ``identifier``; the identifier names the ARC.
"""

from __future__ import annotations

from typing import Any


class InvalidArcError(ValueError):
    """The payload is not an ARC RO-Crate the API accepts (HTTP 422)."""


def _types(node: dict[str, Any], key: str) -> list[Any]:
    value = node.get(key)
    return value if isinstance(value, list) else [value]


def arc_identifier(arc: Any) -> str:
    """The investigation identifier of an ARC RO-Crate, or :class:`InvalidArcError` saying what is missing."""
    if not isinstance(arc, dict):
        raise InvalidArcError("arc must be a JSON object (RO-Crate JSON-LD)")
    graph = arc.get("@graph")
    if not isinstance(graph, list):
        raise InvalidArcError("arc has no @graph list")
    nodes = {node.get("@id"): node for node in graph if isinstance(node, dict)}
    descriptor = nodes.get("ro-crate-metadata.json")
    if descriptor is None:
        raise InvalidArcError("@graph has no RO-Crate descriptor 'ro-crate-metadata.json'")
    about = descriptor.get("about")
    if not isinstance(about, dict) or about.get("@id") != "./":
        raise InvalidArcError("the RO-Crate descriptor is not 'about' the root './'")
    root = nodes.get("./")
    if root is None:
        raise InvalidArcError("@graph has no root dataset './'")
    if "Dataset" not in _types(root, "@type"):
        raise InvalidArcError("the root './' is not a Dataset")
    if "Investigation" not in _types(root, "additionalType"):
        raise InvalidArcError("the root './' has no additionalType 'Investigation'")
    identifier = root.get("identifier")
    if isinstance(identifier, list):
        identifier = identifier[0] if identifier else None
    if isinstance(identifier, dict):
        identifier = identifier.get("value") or identifier.get("@id")
    if not isinstance(identifier, str) or not identifier.strip():
        raise InvalidArcError("the root './' has no non-empty identifier")
    return identifier
