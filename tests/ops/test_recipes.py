"""The replay and re-export recipes of docs/operations.md, run with the real builder, uploader and store.

- dead letters after a fix: ``replay-dlq`` sends the failed payload back, the fixed builder builds it;
- rebuild after a mapping change: stop the builder, ``replay --group <builder> --to earliest``, start it;
- re-export without the database: a second uploader with a new group, a new target and ``--force``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from services.builder.engines import register_engine
from services.builder.service import BuilderService
from services.common.config import Settings
from services.common.kafka.reading import read_topic
from services.common.payload import InvestigationPayload
from services.common.records import H_KIND, header_dict
from services.dev.stack.state import ServerRecord
from services.ops.dlq import replay_dlq
from services.ops.replay import GroupActiveError, ReplayTarget, replay
from services.uploader.service import Uploader

from .engines import V2_MARK
from .pipeline import FAST_GROUP, delivered, publish, run, running, stored, until

register_engine("recipe-v1", "tests.ops.engines:build_v1")
register_engine("recipe-v2", "tests.ops.engines:build_v2")


def title(arc: dict[str, Any]) -> str:
    root = next(node for node in arc["@graph"] if node["@id"] == "./")
    return str(root["name"])


async def arc_titles(settings: Settings) -> dict[str, list[str]]:
    """Every ARC in arc.arcs per identifier, oldest first, by its investigation title."""
    titles: dict[str, list[str]] = {}
    for record in await read_topic(settings.kafka, settings.topics.arcs):
        if record.value is not None and header_dict(record.headers).get(H_KIND) == "arc":
            titles.setdefault(record.key.decode(), []).append(title(orjson.loads(record.value)))
    return titles


async def dead_letters(settings: Settings) -> list[str]:
    return [r.key.decode() for r in await read_topic(settings.kafka, settings.topics.dlq) if r.key]


def test_dead_letters_then_rebuild_after_a_mapping_fix(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(kafka=FAST_GROUP, max_concurrent_arc_builds=1)
    run(_dead_letters_then_rebuild(settings, group=f"builder-{settings.topics.prefix}"))


async def _dead_letters_then_rebuild(settings: Settings, group: str) -> None:
    ok = InvestigationPayload(identifier="inv-a", title="Soil")
    gap = InvestigationPayload(identifier="inv-c", title="Roots", description_text="needs-v2")
    await publish(settings, ok, gap)

    async def built(identifier: str, suffix: str = "") -> bool:
        return any(t.endswith(suffix) for t in (await arc_titles(settings)).get(identifier, []))

    async def dead_lettered() -> bool:
        return "inv-c" in await dead_letters(settings)

    async with running(BuilderService(settings, engine="recipe-v1", group_id=group)):
        await until(lambda: built("inv-a"), "inv-a built by mapping v1")
        await until(dead_lettered, "inv-c dead-lettered by mapping v1")
        with pytest.raises(GroupActiveError):
            await replay(settings, group, ReplayTarget(kind="earliest"))  # the running builder is a member

    # Recipe: deploy the fix, then send the dead letters back.
    async with running(BuilderService(settings, engine="recipe-v2", group_id=group)):
        items = await replay_dlq(settings)
        assert [(item.key, item.action) for item in items] == [("inv-c", "republished")]
        await until(lambda: built("inv-c", V2_MARK), "inv-c built by mapping v2")
    assert (await arc_titles(settings))["inv-a"] == ["Soil"]  # only the dead letter was rebuilt

    # Recipe: rebuild everything after the mapping change.
    resets = await replay(settings, group, ReplayTarget(kind="earliest"))
    assert {r.after for r in resets} == {0} and sum(r.before or 0 for r in resets) == 3
    async with running(BuilderService(settings, engine="recipe-v2", group_id=group)):
        await until(lambda: built("inv-a", V2_MARK), "inv-a rebuilt by mapping v2")
    titles = await arc_titles(settings)
    assert titles["inv-a"] == ["Soil", f"Soil{V2_MARK}"]
    assert titles["inv-c"][-1] == f"Roots{V2_MARK}"


def test_reexport_to_a_new_target_without_the_database(
    make_settings: Callable[..., Settings], start_store: Callable[..., ServerRecord]
) -> None:
    first, second = (start_store(name, "--known-rdi", "recipe-rdi") for name in ("store-a", "store-b"))
    uploader = {"backoff_initial_s": 0.05, "backoff_max_s": 0.5}
    settings = make_settings(
        kafka=FAST_GROUP, rdi="recipe-rdi", max_concurrent_arc_builds=1, uploader=uploader | {"target_url": first.url}
    )
    export = make_settings(
        kafka=FAST_GROUP,
        rdi="recipe-rdi",
        topics=settings.topics.model_dump(),
        uploader=uploader | {"target_url": second.url, "group_id": f"export-{settings.topics.prefix}"},
    )
    run(_reexport(settings, export, first, second))


async def _reexport(settings: Settings, export: Settings, first: ServerRecord, second: ServerRecord) -> None:
    await publish(settings, *(InvestigationPayload(identifier=f"inv-{n}", title=f"Plot {n}") for n in range(3)))

    builder = BuilderService(settings, group_id=f"builder-{settings.topics.prefix}")
    async with running(builder), running(Uploader(settings)):
        await until(lambda: delivered(first, 3), "3 ARCs in the first store")

    # Recipe: a new uploader group and a new target re-deliver every ARC from arc.arcs; no builder runs.
    async with running(Uploader(export, force=True)):
        await until(lambda: delivered(second, 3), "3 ARCs in the new store")
    assert await asyncio.to_thread(stored, second) == await asyncio.to_thread(stored, first)
