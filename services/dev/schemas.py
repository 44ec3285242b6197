"""JSON Schemas in ``schemas/`` generated from the pydantic models (one source of truth).

``arcstream schemas write`` regenerates the files; a test fails when they drift.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from services.common.payload import InvestigationPayload
from services.common.records import RunMarker
from services.common.report import OutcomeRecord

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"

#: File name -> model whose JSON Schema it holds.
SCHEMA_FILES: dict[str, type[BaseModel]] = {
    "investigation.schema.json": InvestigationPayload,
    "report.schema.json": OutcomeRecord,
    "run-marker.schema.json": RunMarker,
}


def schema_for(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def render(model: type[BaseModel]) -> str:
    return json.dumps(schema_for(model), indent=2, sort_keys=True) + "\n"


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    written = []
    for name, model in SCHEMA_FILES.items():
        path = directory / name
        path.write_text(render(model), encoding="utf-8")
        written.append(path)
    return written
