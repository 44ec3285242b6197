"""The engine registry and the worker pool's start-up check."""

from __future__ import annotations

import asyncio

import pytest

from services.builder.engines import ENGINES, engine_path, load_engine, register_engine
from services.builder.pool import BuildPool
from services.common.errors import ConfigError

from . import fakes


def test_engines_are_looked_up_by_name() -> None:
    assert load_engine(engine_path("arctrl")).__name__ == "build_arc_json"
    register_engine("fake-slow", f"{fakes.__name__}:fake_slow_build_arc_json")
    assert load_engine(engine_path("fake-slow")) is fakes.fake_slow_build_arc_json
    with pytest.raises(ConfigError, match="unknown build engine 'nope'"):
        engine_path("nope")
    ENGINES.pop("fake-slow")


def test_a_pool_whose_workers_cannot_load_the_engine_is_a_config_error() -> None:
    async def scenario() -> None:
        pool = BuildPool(1, "services.builder.no_such_module:build", 10, 10)
        try:
            with pytest.raises(ConfigError, match="cannot start the engine"):
                await pool.check()
        finally:
            await pool.close()

    asyncio.run(scenario())
