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

from services.common.content_hash import arc_id
from services.dev.stack.state import StackState
from tests.extractor.cdc_support import WAIT_TIMEOUT_S, CdcStack, cdc_stack

pytestmark = pytest.mark.timeout(300)


#: relation, insert, update (old marker -> new marker); ``%(inv)s`` is the investigation.
CHILD_CHANGES = [
    (
        "vStudy",
        """INSERT INTO "vStudy" (identifier, investigation_ref, title) VALUES ('S-new', %(inv)s, 'Study Alpha')""",
        """UPDATE "vStudy" SET title = 'Study Beta' WHERE identifier = 'S-new' AND investigation_ref = %(inv)s""",
        "Study Alpha",
        "Study Beta",
    ),
    (
        "vAssay",
        """INSERT INTO "vAssay" (identifier, investigation_ref, study_ref, title)
           VALUES ('A-new', %(inv)s, '["S1"]', 'Assay Alpha')""",
        """UPDATE "vAssay" SET identifier = 'A-other' WHERE investigation_ref = %(inv)s""",
        "A-new",
        "A-other",
    ),
    (
        "vContact",
        """INSERT INTO "vContact" (investigation_ref, target_type, last_name, first_name)
           VALUES (%(inv)s, 'investigation', 'Curie', 'Marie')""",
        """UPDATE "vContact" SET last_name = 'Meitner' WHERE investigation_ref = %(inv)s""",
        "Curie",
        "Meitner",
    ),
    (
        "vPublication",
        """INSERT INTO "vPublication" (investigation_ref, target_type, title, doi)
           VALUES (%(inv)s, 'investigation', 'Paper Alpha', '10.1/alpha')""",
        """UPDATE "vPublication" SET title = 'Paper Beta' WHERE investigation_ref = %(inv)s""",
        "Paper Alpha",
        "Paper Beta",
    ),
    (
        "vAnnotationTable",
        """INSERT INTO "vAnnotationTable" (investigation_ref, target_type, target_ref, table_name, column_type,
               column_io_type, row_index, cell_value)
           VALUES (%(inv)s, 'study', 'S1', 'sampling', 'input', 'source_name', 0, 'plot alpha')""",
        """UPDATE "vAnnotationTable" SET cell_value = 'plot beta' WHERE investigation_ref = %(inv)s""",
        "plot alpha",
        "plot beta",
    ),
]
#: Which rows a relation's delete removes (the study S1 stays).
MARK = {
    "vStudy": "identifier = 'S-new'",
    "vAssay": "true",
    "vContact": "true",
    "vPublication": "true",
    "vAnnotationTable": "true",
}


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

        # Insert, update and delete on each child relation show up in (and vanish from) the ARC.
        for relation, insert, update, old, new in CHILD_CHANGES:
            conn.execute(insert, {"inv": key})
            _wait_for_store(pipeline, key, lambda a, m=old: a is not None and m in str(a), f"{relation} insert")
            conn.execute(update, {"inv": key})
            _wait_for_store(
                pipeline, key, lambda a, o=old, n=new: a is not None and n in str(a) and o not in str(a), relation
            )
            conn.execute(
                f'DELETE FROM "{relation}" WHERE investigation_ref = %(inv)s AND {MARK[relation]}', {"inv": key}
            )
            _wait_for_store(pipeline, key, lambda a, n=new: a is not None and n not in str(a), f"{relation} delete")

        with conn.transaction():
            conn.execute('DELETE FROM "vStudy" WHERE investigation_ref = %s', (key,))
            conn.execute('DELETE FROM "vInvestigation" WHERE identifier = %s', (key,))
        _wait_for_store(pipeline, key, lambda a: a is None, "the ARC removed")

    # The other investigation was never touched by these changes.
    assert _root(_stored(pipeline, other))["name"] == "E2E-2 v1"
