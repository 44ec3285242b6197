"""Valid and invalid investigation payloads, for the tests that compare validators."""

from __future__ import annotations

from typing import Any

from services.dev.generator import generate_payloads


def payload_samples() -> list[tuple[dict[str, Any], bool]]:
    """(sample, valid) pairs: generated payloads, then one mistake each."""
    good = [p.model_dump(mode="json") for p in generate_payloads(20, seed=2, profile="mixed")]
    base = good[0]
    bad = [
        {k: v for k, v in base.items() if k != "identifier"},
        base | {"identifier": ""},
        base | {"extra": 1},
        base | {"studies": [{"title": "no identifier"}]},
        base | {"contacts": [{"target_type": "department"}]},
        base
        | {
            "annotation_tables": [
                {
                    "target_type": "assay",
                    "target_ref": "a",
                    "table_name": "t",
                    "columns": [{"column_type": "unknown"}],
                }
            ]
        },
        base
        | {
            "annotation_tables": [
                {
                    "target_type": "assay",
                    "target_ref": "a",
                    "table_name": "t",
                    "columns": [{"column_type": "input", "cells": [{"row_index": -1}]}],
                }
            ]
        },
        base | {"assays": [{"identifier": "a", "measurement_type": {"term": ""}}]},
        base | {"schema_version": 2},
    ]
    return [(sample, True) for sample in good] + [(sample, False) for sample in bad]
