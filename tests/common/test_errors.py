"""The error codes on the wire are a closed vocabulary, documented in docs/stages.md row by row."""

from __future__ import annotations

import re
from pathlib import Path

from services.common.errors import ERROR_CODES, BuildTimeoutError, DeliveryError, MappingError, PayloadError

DOC = Path(__file__).resolve().parents[2] / "docs" / "stages.md"


def documented_codes() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    table = text[text.index("### Error codes") : text.index("## Broker capabilities")]
    rows = re.findall(r"^\| `([a-z-]+)` \| [^|]+ \| (.+) \|$", table, flags=re.M)
    return {code: meaning.replace("`", "") for code, meaning in rows}


def test_every_code_is_documented_with_its_meaning_and_nothing_else_is() -> None:
    assert documented_codes() == ERROR_CODES


def test_errors_carry_codes_not_class_names() -> None:
    assert PayloadError("x").code == "schema-violation"
    assert PayloadError("x", code="malformed-json").code == "malformed-json"
    assert MappingError("x").code == "mapping-failed"
    assert BuildTimeoutError("x").code == "build-timeout"
    assert DeliveryError("x", status=422).code == "target-rejected"
    assert DeliveryError("x", status=503).code == "target-failed"
    assert DeliveryError("x", status=None).code == "target-failed"
