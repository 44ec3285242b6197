"""Request bodies validated exactly as the API validates them at ingest, with its error shapes.

The API's request models (``fairagro-middleware-shared``) are pydantic models with
``extra="forbid"``: ``{rdi, arc}`` for ``POST /v3/arcs``, ``{arc}`` for a harvest
submission, and ``arc`` itself only ``@context`` and ``@graph`` (a non-empty list of
objects holding a root ``./`` with a non-empty identifier). Ingest checks nothing more:
no descriptor, no ``Dataset`` type, no ``additionalType`` and no arctrl parse (those
matter only to the later git sync, see :mod:`services.store.gitsync`). The checks are
written out here instead of running pydantic over a multi-MB ``@graph``: they look at
the top level and the root node only, and produce FastAPI's 422 entries
(``type``/``loc``/``msg``, ``loc`` starting with ``body``).
"""

from __future__ import annotations

from typing import Any, Literal, cast

from services.store.responses import ApiError

Problem = dict[str, Any]
TerminalStatus = Literal["COMPLETED", "CANCELLED", "FAILED"]
TERMINAL_STATUSES: tuple[TerminalStatus, ...] = ("COMPLETED", "CANCELLED", "FAILED")

_MESSAGES = {
    "missing": "Field required",
    "json_invalid": "JSON decode error",
    "extra_forbidden": "Extra inputs are not permitted",
    "string_type": "Input should be a valid string",
    "int_type": "Input should be a valid integer",
    "list_type": "Input should be a valid list",
    "dict_type": "Input should be a valid dictionary",
    "model_attributes_type": "Input should be a valid dictionary or object to extract fields from",
    "too_short": "List should have at least 1 item after validation, not 0",
    "enum": "Input should be " + ", ".join(f"'{s}'" for s in TERMINAL_STATUSES[:-1]) + f" or '{TERMINAL_STATUSES[-1]}'",
}


def body_problem(kind: str, *loc: str | int, msg: str | None = None) -> Problem:
    """One FastAPI validation entry for the request body."""
    return {"type": kind, "loc": ["body", *loc], "msg": msg or _MESSAGES[kind]}


def _raise_if(problems: list[Problem]) -> None:
    if problems:
        raise ApiError(422, problems)


def normalized_identifier(value: Any) -> str | None:
    """The root's identifier as the API reads it: a string, a list's first item or ``{"@value": ...}``, stripped.

    Same rule as ``middleware.shared.api_models.common.rocrate.extract_identifier`` (any
    other scalar becomes its ``str``); ``None`` when nothing non-empty is left.
    """
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("@value")
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _arc_problems(arc: Any) -> tuple[list[Problem], str | None]:
    if not isinstance(arc, dict):
        return [body_problem("model_attributes_type", "arc")], None
    problems = [body_problem("extra_forbidden", "arc", key) for key in arc if key not in ("@context", "@graph")]
    if "@context" not in arc:
        problems.append(body_problem("missing", "arc", "@context"))
    graph = arc.get("@graph")
    if "@graph" not in arc:
        problems.append(body_problem("missing", "arc", "@graph"))
    elif not isinstance(graph, list):
        problems.append(body_problem("list_type", "arc", "@graph"))
    elif not graph:
        problems.append(body_problem("too_short", "arc", "@graph"))
    else:
        problems += [
            body_problem("dict_type", "arc", "@graph", i) for i, node in enumerate(graph) if not isinstance(node, dict)
        ]
    if problems or not isinstance(graph, list):
        return problems, None
    root = next((node for node in graph if node.get("@id") == "./"), None)
    if root is None:
        message = "Value error, RO-Crate must contain a root data entity with @id './'"
        return [body_problem("value_error", "arc", msg=message)], None
    identifier = normalized_identifier(root.get("identifier"))
    if identifier is None:
        message = "Value error, RO-Crate Dataset must contain a non-empty identifier"
        return [body_problem("value_error", "arc", msg=message)], None
    return [], identifier


def validate_arc_body(body: Any, *, with_rdi: bool) -> tuple[str | None, str]:
    """Check a ``POST /v3/arcs`` (``with_rdi``) or harvest submission body; return (rdi, identifier) or 422."""
    if not isinstance(body, dict):
        raise ApiError(422, [body_problem("model_attributes_type")])
    allowed = ("rdi", "arc") if with_rdi else ("arc",)
    problems = [body_problem("extra_forbidden", key) for key in body if key not in allowed]
    rdi = body.get("rdi") if with_rdi else None
    if with_rdi and "rdi" not in body:
        problems.append(body_problem("missing", "rdi"))
    elif with_rdi and not isinstance(rdi, str):
        problems.append(body_problem("string_type", "rdi"))
    identifier = None
    if "arc" not in body:
        problems.append(body_problem("missing", "arc"))
    else:
        arc_problems, identifier = _arc_problems(body["arc"])
        problems += arc_problems
    _raise_if(problems)
    assert identifier is not None
    return rdi, identifier


def validate_harvest_body(body: Any) -> tuple[str, int | None]:
    """Check a ``POST /v3/harvests`` body ``{rdi, expected_datasets?}``; other keys are ignored, as by the API."""
    if not isinstance(body, dict):
        raise ApiError(422, [body_problem("model_attributes_type")])
    problems: list[Problem] = []
    rdi, expected = body.get("rdi"), body.get("expected_datasets")
    if "rdi" not in body:
        problems.append(body_problem("missing", "rdi"))
    elif not isinstance(rdi, str):
        problems.append(body_problem("string_type", "rdi"))
    if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int)):
        problems.append(body_problem("int_type", "expected_datasets"))
    _raise_if(problems)
    assert isinstance(rdi, str)
    return rdi, expected


def validate_patch_body(body: Any) -> TerminalStatus:
    """Check a ``PATCH /v3/harvests/{id}`` body ``{status}``: a terminal status, else 422."""
    if not isinstance(body, dict):
        raise ApiError(422, [body_problem("model_attributes_type")])
    if "status" not in body:
        raise ApiError(422, [body_problem("missing", "status")])
    status = body["status"]
    if status not in TERMINAL_STATUSES:
        raise ApiError(422, [body_problem("enum", "status")])
    return cast(TerminalStatus, status)
