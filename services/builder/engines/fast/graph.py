"""Nested nodes -> arctrl's flat ``@graph``: the same order, merges and list shapes.

arctrl builds a tree of nodes and flattens it depth first: a node's property
values are flattened in key order (children before their parent), then the
node is added to the graph. A node whose ``@id`` is already there is *merged*
into the first one, which keeps its position; the merge rules below are
arctrl 3.2.3's ``LDNode.MergeAppendInto_InPlace``. Finally every list of
length one is written as its single element (``Compact_InPlace``).

Nodes here are plain dicts: ``@id``, ``@type``, optional ``additionalType``,
then properties in arctrl's order. A value is a string, a nested node, or a
list of those; a reference is ``{"@id": ...}``.
"""

from __future__ import annotations

from typing import Any

Node = dict[str, Any]

#: Keys of a node that are not properties (arctrl keeps them out of flattening and merging).
_STATIC_KEYS = frozenset({"@id", "@type", "additionalType"})


def put(node: Node, key: str, value: Any) -> None:
    """Set an optional property: ``None`` leaves the key out, an empty list is kept."""
    if value is not None:
        node[key] = value


def _key(value: Any) -> Any:
    """What arctrl compares when merging: a node or reference by id, anything else by value."""
    return value["@id"] if type(value) is dict else value


def _merge_property(existing: Any, new: Any) -> Any | None:
    """The merged value of one property, or ``None`` to keep the existing value as it is."""
    if type(new) is list:
        if type(existing) is list:
            seen: set[Any] = set()
            merged = []
            for item in (*existing, *new):
                key = _key(item)
                if key not in seen:
                    seen.add(key)
                    merged.append(item)
            return merged
        target = _key(existing)
        if any(_key(item) == target for item in new):
            return None
        return [*new, existing]
    if type(existing) is list:
        target = _key(new)
        if any(_key(item) == target for item in existing):
            return None
        return [*existing, new]
    if new == existing or _key(new) == _key(existing):
        return None
    return [new, existing]


class Graph:
    """Nodes by ``@id`` in order of first appearance."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}

    def add(self, node: Node) -> None:
        existing = self.nodes.get(node["@id"])
        if existing is None:
            self.nodes[node["@id"]] = node
            return
        for key, value in node.items():
            if key in _STATIC_KEYS:
                continue
            if key not in existing:
                existing[key] = value
                continue
            merged = _merge_property(existing[key], value)
            if merged is not None:
                existing[key] = merged

    def flatten(self, node: Node) -> dict[str, str]:
        """Add ``node`` and everything below it (children first); return a reference to it.

        Values are strings, nodes (a dict with ``@type``), references, or lists of those.
        """
        for key, value in node.items():
            kind = type(value)
            if kind is list:
                node[key] = [self.flatten(item) if type(item) is dict and "@type" in item else item for item in value]
            elif kind is dict and "@type" in value and key not in _STATIC_KEYS:
                node[key] = self.flatten(value)
        self.add(node)
        return {"@id": node["@id"]}

    def compacted(self) -> list[Node]:
        """The graph as written, in place: a list of one element becomes that element."""
        nodes = list(self.nodes.values())
        for node in nodes:
            for key, value in node.items():
                if type(value) is list and len(value) == 1:
                    node[key] = value[0]
        return nodes
