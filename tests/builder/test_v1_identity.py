"""A contract v1 source gives byte-identical ARCs to before contract v2 (issue 11).

``data/v1_arc_digests.json`` holds the SHA-256 of the ARC JSON of generated v1
investigations (the demo generator, profiles ``small`` and ``mixed`` and a cut
``large`` one), computed at commit 063dc6f, before contract v2. The fast engine
writes them here; that it writes arctrl's bytes is the differential test's job.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from services.builder.engines.fast import build_arc_json
from services.dev.generator import generate_payloads, shrink_payload

DIGESTS = json.loads((Path(__file__).parent / "data" / "v1_arc_digests.json").read_text())["digests"]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_generated_v1_investigations_give_the_arcs_they_gave_before_contract_v2() -> None:
    found = {}
    for profile, n, seed in (("small", 60, 5), ("mixed", 120, 7)):
        for payload in generate_payloads(n, seed, profile):  # type: ignore[arg-type]
            found[f"{profile}:{seed}:{payload.identifier}"] = _digest(build_arc_json(payload))
    large = shrink_payload(generate_payloads(1, 5, "large")[0], studies=3, assays=3, rows=20)
    found["large-shrunk:5"] = _digest(build_arc_json(large))
    assert found == DIGESTS
