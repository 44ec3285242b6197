"""Real ARCs end to end (issue 11's "done when"): the fidelity harness over ../shared/fixtures/real-arcs/ro-crate/.

Each file is read by arctrl, loaded into the contract v2 relations of a real
PostgreSQL, extracted by the snapshot's read path and built by the builder
worker with both engines; the ARCs are read back by arctrl and compared fact by
fact with arctrl's own round trip. arctrl needs seconds per real ARC, so what
depends only on its inputs is cached in pytest's cache directory
(``.pytest_cache/d/arcstream-fidelity``): the first run takes minutes, later
runs seconds, and a change to the builder, the harness or arctrl invalidates
exactly what it affects.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from services.dev.fidelity.harness import Cache, FileReport, run_file
from tests.fidelity.conftest import REAL_ARCS, ROCRATE_FILES


def test_the_real_arc_fixtures_are_there() -> None:
    assert len(ROCRATE_FILES) >= 4, f"expected the real ARCs of {REAL_ARCS / 'MANIFEST.md'}"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", ROCRATE_FILES, ids=lambda path: path.name.split(".")[0])
def test_real_arc_goes_through_without_loss_beyond_arctrls_own_round_trip(
    path: Path, database_url: str, fidelity_cache: Cache
) -> None:
    report = run_file(path, database_url, fidelity_cache)
    assert report.error is None
    assert report.mapping_errors == []
    assert report.fallbacks == [], "the fast engine must cover what real ARCs contain"
    assert report.fast_equals_arctrl is True
    assert report.facts_original > 0
    assert report.facts_kept_fast == report.facts_kept_arctrl
    assert report.facts_kept_fast >= report.facts_arctrl_roundtrip
    _assert_every_loss_is_explained(report)


def _assert_every_loss_is_explained(report: FileReport) -> None:
    lost = sum(loss["count"] for loss in report.losses)
    assert lost == report.facts_original - report.facts_kept_fast
    for loss in report.losses:
        assert loss["kind"] and loss["reason"], loss
        assert all(orjson.loads(fact)[0] == loss["kind"] for fact in loss["facts"])
        # a fact arcstream loses although arctrl's own round trip keeps it would be a bug in the mapping
        assert loss["reason"] != "not carried from the source relations into the ARC", loss
