"""The configuration reference table in README.md, generated from :class:`Settings`.

``arcstream config reference`` prints it; a test fails when README.md and the model drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from services.common.config import WELL_KNOWN_ENV, Settings


def _type_name(field: FieldInfo) -> str:
    text = str(field.annotation).replace("typing.", "").replace("pathlib.", "").replace("pydantic.types.", "")
    return text.replace("<class '", "").replace("'>", "").replace("|", "\\|")


def _default(field: FieldInfo) -> str:
    extra = field.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("reference_default"), str):
        return str(extra["reference_default"])  # a default derived from another setting
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
        if not isinstance(value, list | dict):
            return "(depends on the machine)"
    else:
        value = field.default
    if value is PydanticUndefined:
        return "(required)"
    if isinstance(value, SecretStr):
        return "(secret)"
    return json.dumps(value, default=str)


def _leaves(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _leaves(annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field


def render_reference() -> str:
    """Markdown table: key, environment variable, type, default."""
    aliases = {dotted: env for env, dotted in WELL_KNOWN_ENV.items()}
    lines = ["| key | environment | type | default |", "|---|---|---|---|"]
    for key, field in _leaves(Settings):
        env = "ARCSTREAM_" + key.upper().replace(".", "__")
        if key in aliases:
            env += f" or {aliases[key]}"
        lines.append(f"| `{key}` | `{env}` | {_type_name(field)} | `{_default(field)}` |")
    return "\n".join(lines) + "\n"
