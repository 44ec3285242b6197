"""The worker's copy-free content hash equals the API formula (:func:`content_hash`) exactly."""

from __future__ import annotations

import orjson

from services.builder.engines.fast import build_arc_json as fast_build
from services.common.content_hash import content_hash, content_hash_of_json
from services.dev.generator import generate_payloads


def test_nested_dates_and_non_ascii_hash_alike() -> None:
    document = {
        "@graph": [
            {"@id": "./", "datePublished": "2024", "name": "Bodenprobe ä/ß", "hasPart": [{"dateModified": "x"}]},
            {"nested": {"sdDatePublished": "y", "keep": [1, 2.5, None, True, {"datePublished": "z", "a": "é"}]}},
        ],
        "dateModified": "w",
    }
    assert content_hash_of_json(orjson.dumps(document)) == content_hash(document)


def test_every_generated_arc_hashes_alike() -> None:
    payloads = [*generate_payloads(40, 7, "mixed"), *generate_payloads(10, 3, "small")]
    for payload in payloads:
        arc = fast_build(payload).encode("utf-8")
        assert content_hash_of_json(arc) == content_hash(orjson.loads(arc)), payload.identifier
