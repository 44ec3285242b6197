"""The extractors' fast payload validation is the payload model's validation."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.common.payload import InvestigationPayload, encode_document, validate_document
from tests.common.payload_samples import payload_samples


def _error_locations(validate: Any, sample: dict[str, Any]) -> list[tuple[Any, ...]] | None:
    try:
        validate(sample)
    except ValidationError as exc:
        return [error["loc"] for error in exc.errors()]
    return None


@pytest.mark.parametrize(("sample", "valid"), payload_samples())
def test_documents_are_rejected_where_the_model_rejects_them(sample: dict[str, Any], valid: bool) -> None:
    model_errors = _error_locations(InvestigationPayload.model_validate, sample)
    assert (model_errors is None) == valid
    assert _error_locations(validate_document, sample) == model_errors


@pytest.mark.parametrize(("sample", "valid"), [case for case in payload_samples() if case[1]])
def test_a_valid_document_encodes_to_the_bytes_of_the_model(sample: dict[str, Any], valid: bool) -> None:
    assert (
        encode_document(validate_document(sample))
        == InvestigationPayload.model_validate(sample).model_dump_json().encode()
    )


def test_defaults_are_filled_in_as_the_model_fills_them() -> None:
    document = validate_document({"identifier": "i"})
    assert document == InvestigationPayload(identifier="i").model_dump()
    assert document["studies"] == [] and document["schema_version"] == 1
