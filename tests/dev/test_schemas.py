"""The JSON Schemas in schemas/ and the pydantic models agree, both ways, on samples."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel, ValidationError

from services.common.payload import InvestigationPayload
from services.common.report import OutcomeRecord
from services.dev.schemas import SCHEMA_DIR, SCHEMA_FILES, render
from tests.common.payload_samples import payload_samples


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_schema_files_are_generated_from_the_models(name: str) -> None:
    assert (SCHEMA_DIR / name).read_text() == render(SCHEMA_FILES[name]), "run 'arcstream schemas write'"


def _both_accept(model: type[BaseModel], schema_file: str, sample: Any) -> tuple[bool, bool]:
    schema = json.loads((SCHEMA_DIR / schema_file).read_text())
    try:
        jsonschema.validate(sample, schema)
        schema_ok = True
    except jsonschema.ValidationError:
        schema_ok = False
    try:
        model.model_validate(sample)
        model_ok = True
    except ValidationError:
        model_ok = False
    return schema_ok, model_ok


@pytest.mark.parametrize(("sample", "valid"), payload_samples())
def test_payload_schema_and_model_agree(sample: dict[str, Any], valid: bool) -> None:
    assert _both_accept(InvestigationPayload, "investigation.schema.json", sample) == (valid, valid)


@pytest.mark.parametrize(
    ("sample", "valid"),
    [
        (
            {"identifier": "i", "stage": "upload", "status": "created", "attempts": 2, "http_status": 200},
            True,
        ),
        ({"identifier": "i", "stage": "build", "status": "failed", "error_code": "mapping-failed"}, True),
        ({"identifier": "i", "stage": "ship", "status": "created"}, False),
        ({"identifier": "i", "stage": "upload", "status": "lost"}, False),
        ({"stage": "upload", "status": "created"}, False),
        ({"identifier": "i", "stage": "upload", "status": "created", "attempts": -1}, False),
    ],
)
def test_report_schema_and_model_agree(sample: dict[str, Any], valid: bool) -> None:
    assert _both_accept(OutcomeRecord, "report.schema.json", sample) == (valid, valid)
