"""Build engines: payload -> ARC RO-Crate JSON-LD string, selected by name.

An engine is a module-level function ``build_arc_json(payload) -> str`` that
raises :class:`~services.common.errors.MappingError` for what it cannot take.
The registry maps names to ``"module:function"`` paths rather than functions so
that the parent process never imports an engine (arctrl costs ~0.5 s and 50 MB
per process) and spawned worker processes can import it by path.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from services.common.errors import ConfigError
from services.common.payload import InvestigationPayload

EngineFunction = Callable[[InvestigationPayload], str]

#: Engine name -> ``"module:function"``. ``builder.engine`` in the settings picks one.
ENGINES: dict[str, str] = {
    "arctrl": "services.builder.engines.arctrl:build_arc_json",
    "fast": "services.builder.engines.fast:build_arc_json",
}


def register_engine(name: str, path: str) -> None:
    """Make an engine selectable by name (``path`` is ``"module:function"``)."""
    ENGINES[name] = path


def engine_path(name: str) -> str:
    """The import path of a named engine; an unknown name is a configuration error."""
    try:
        return ENGINES[name]
    except KeyError:
        known = ", ".join(sorted(ENGINES))
        raise ConfigError(f"unknown build engine '{name}' (available: {known})") from None


def load_engine(path: str) -> EngineFunction:
    """Import an engine function from its ``"module:function"`` path."""
    module_name, _, attribute = path.partition(":")
    function: EngineFunction = getattr(importlib.import_module(module_name), attribute)
    return function
