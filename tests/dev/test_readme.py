"""README.md's configuration reference is the one the model generates."""

from __future__ import annotations

from services.dev.config_reference import render_reference
from services.dev.readme import README, generated_section


def test_readme_configuration_reference_matches_the_model() -> None:
    assert generated_section(README.read_text()) == render_reference(), (
        "README.md is out of date: run python -c 'from services.dev.readme import update_readme; update_readme()'"
    )
