"""The whole near-real-time path: a committed change becomes an updated ARC in the store.

PostgreSQL -> Debezium (``cdc capture``) -> ``extract cdc`` -> builder (arctrl) -> uploader -> ARC store;
an investigation delete removes its ARC from the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from services.common.devstack.state import StackState
from services.store.rocrate import arc_id
from tests.extractor.cdc_support import WAIT_TIMEOUT_S, CdcStack, cdc_stack

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def pipeline(dev_stack: StackState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CdcStack]:
    with cdc_stack(dev_stack, tmp_path_factory, pipeline=True) as stack:
        yield stack


def _stored(stack: CdcStack, identifier: str) -> Any:
    """The ARC the store holds for ``identifier`` (parsed), or ``None``."""
    response = httpx.get(f"{stack.store_url}/v3/arcs/{arc_id(identifier, stack.settings.rdi)}", timeout=10)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.json()


def _root(arc: Any) -> dict[str, Any]:
    return next(node for node in arc["@graph"] if node.get("@id") == "./")


def _wait_for_store(stack: CdcStack, identifier: str, check: Callable[[Any], bool], what: str) -> Any:
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while time.monotonic() < deadline:
        arc = _stored(stack, identifier)
        if check(arc):
            return arc
        for service in stack.downstream:
            assert service.alive(), service.log_tail()
        time.sleep(0.3)
    raise AssertionError(f"store never showed {what} for {identifier}")


def test_changes_reach_the_store_and_a_delete_removes_the_arc(pipeline: CdcStack) -> None:
    key, other = "E2E-1", "E2E-2"
    with pipeline.conn() as conn:
        with conn.transaction():
            for identifier in (key, other):
                conn.execute(
                    'INSERT INTO "vInvestigation" (identifier, title) VALUES (%s, %s)', (identifier, f"{identifier} v1")
                )
                conn.execute(
                    'INSERT INTO "vStudy" (identifier, investigation_ref, title) VALUES (%s, %s, %s)',
                    ("S1", identifier, "study"),
                )
        for identifier in (key, other):
            _wait_for_store(
                pipeline, identifier, lambda a, i=identifier: a is not None and _root(a)["name"] == f"{i} v1", "v1"
            )

        conn.execute("""UPDATE "vInvestigation" SET title = 'E2E-1 v2' WHERE identifier = %s""", (key,))
        _wait_for_store(pipeline, key, lambda a: a is not None and _root(a)["name"] == "E2E-1 v2", "the new title")

        conn.execute(
            """INSERT INTO "vContact" (investigation_ref, target_type, last_name, first_name)
               VALUES (%s, 'investigation', 'Curie', 'Marie')""",
            (key,),
        )
        _wait_for_store(pipeline, key, lambda a: a is not None and "Curie" in str(a), "the new contact")

        with conn.transaction():
            conn.execute('DELETE FROM "vContact" WHERE investigation_ref = %s', (key,))
            conn.execute('DELETE FROM "vStudy" WHERE investigation_ref = %s', (key,))
            conn.execute('DELETE FROM "vInvestigation" WHERE identifier = %s', (key,))
        _wait_for_store(pipeline, key, lambda a: a is None, "the ARC removed")

    # The other investigation was never touched by these changes.
    assert _root(_stored(pipeline, other))["name"] == "E2E-2 v1"
