"""Where the real ARCs are, and the harness cache kept in pytest's cache directory between runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.dev.fidelity.harness import Cache

REAL_ARCS = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real-arcs"
ROCRATE_FILES = sorted((REAL_ARCS / "ro-crate").glob("*.json"))


@pytest.fixture(scope="session")
def fidelity_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Cache:
    """arctrl needs seconds per real ARC: what depends only on its inputs is kept in .pytest_cache
    (in a temporary directory when pytest runs without its cache, ``-p no:cacheprovider``)."""
    cache = getattr(request.config, "cache", None)
    return Cache(Path(cache.mkdir("arcstream-fidelity")) if cache is not None else tmp_path_factory.mktemp("fidelity"))
