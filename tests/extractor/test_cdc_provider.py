"""A provider-style source: the six relations are views over the provider's own tables.

CDC captures the tables (``prov_project``, ``prov_sample``), so which
investigation a change touches comes from configuration: a column for the
project table, a parameterised query for the sample table (whose rows only
know their project's numeric id).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from services.dev.stack.state import StackState
from services.extractor.source.schema import DDL_FILE
from tests.extractor.cdc_support import CdcStack, TopicWatcher, cdc_stack

pytestmark = pytest.mark.timeout(300)

PROVIDER_DDL = """
CREATE TABLE prov_project (id serial PRIMARY KEY, code text NOT NULL UNIQUE, name text, summary text);
CREATE TABLE prov_sample (id serial PRIMARY KEY, project_id integer NOT NULL, label text NOT NULL, note text);
CREATE VIEW "vInvestigation" AS
    SELECT code AS identifier, name AS title, summary AS description_text,
           NULL::date AS submission_date, NULL::date AS public_release_date
      FROM prov_project;
CREATE VIEW "vStudy" AS
    SELECT s.id, s.label AS identifier, p.code AS investigation_ref, s.note AS title,
           NULL::text AS description_text, NULL::date AS submission_date, NULL::date AS public_release_date
      FROM prov_sample s JOIN prov_project p ON p.id = s.project_id;
"""

MAPPINGS = {
    "public.prov_project": {"column": "code"},
    "public.prov_sample": {"query": "SELECT code FROM prov_project WHERE id = %(project_id)s"},
}


def prepare_provider(conn: psycopg.Connection[Any]) -> None:
    """Provider tables and views; the four relations this provider lacks are empty views."""
    conn.execute("CREATE SCHEMA contract")
    conn.execute("SET search_path TO contract")
    conn.execute(DDL_FILE.read_text(encoding="utf-8").encode())
    conn.execute("SET search_path TO public")
    for relation in ("vAssay", "vContact", "vPublication", "vAnnotationTable"):
        conn.execute(f'CREATE VIEW "{relation}" AS SELECT * FROM contract."{relation}"')
    conn.execute(PROVIDER_DDL.encode())


@pytest.fixture(scope="module")
def provider(dev_stack: StackState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CdcStack]:
    with cdc_stack(dev_stack, tmp_path_factory, prepare=prepare_provider, table_mappings=MAPPINGS) as stack:
        yield stack


def test_setup_captures_the_tables_under_the_views(provider: CdcStack) -> None:
    with provider.conn() as conn:
        published = {
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_publication_tables WHERE pubname = %s",
                (provider.settings.cdc.publication_name,),
            )
        }
    assert published == {"prov_project", "prov_sample"}
    assert any("vInvestigation: a view" in line for line in provider.setup_lines)


def test_changes_to_provider_tables_reach_the_right_investigation(provider: CdcStack) -> None:
    def studies(payload: Any) -> dict[str, Any]:
        return {study["identifier"]: study["title"] for study in payload["studies"]}

    async def scenario() -> None:
        async with TopicWatcher(provider.settings.kafka, provider.settings.topics.investigations) as watcher:
            with provider.conn() as conn:
                with conn.transaction():
                    for code, name in (("PRJ-1", "Soil"), ("PRJ-2", "Roots")):
                        project_id = conn.execute(
                            "INSERT INTO prov_project (code, name) VALUES (%s, %s) RETURNING id", (code, name)
                        ).fetchone()[0]  # type: ignore[index]
                        conn.execute(
                            "INSERT INTO prov_sample (project_id, label, note) VALUES (%s, %s, 'fresh')",
                            (project_id, f"{code}-S1"),
                        )
                for code, name in (("PRJ-1", "Soil"), ("PRJ-2", "Roots")):
                    await watcher.wait_for_latest(
                        code, lambda p, n=name, c=code: p is not None and p["title"] == n and c + "-S1" in studies(p)
                    )

                # A sample row knows only its project's id: the query mapping finds the investigation.
                since = watcher.mark()
                conn.execute("UPDATE prov_sample SET note = 'dried' WHERE label = 'PRJ-1-S1'")
                await watcher.wait_for_latest(
                    "PRJ-1", lambda p: p is not None and studies(p) == {"PRJ-1-S1": "dried"}, since
                )
                assert watcher.keys_seen(since) == {"PRJ-1"}

                since = watcher.mark()
                conn.execute("DELETE FROM prov_sample WHERE label = 'PRJ-1-S1'")
                await watcher.wait_for_latest("PRJ-1", lambda p: p is not None and not p["studies"], since)
                assert watcher.keys_seen(since) == {"PRJ-1"}

                since = watcher.mark()
                conn.execute("UPDATE prov_project SET name = 'Roots 2' WHERE code = 'PRJ-2'")
                await watcher.wait_for_latest("PRJ-2", lambda p: p is not None and p["title"] == "Roots 2", since)
                assert watcher.keys_seen(since) == {"PRJ-2"}

                since = watcher.mark()
                with conn.transaction():
                    conn.execute(
                        "DELETE FROM prov_sample WHERE project_id = (SELECT id FROM prov_project WHERE code = 'PRJ-2')"
                    )
                    conn.execute("DELETE FROM prov_project WHERE code = 'PRJ-2'")
                await watcher.wait_for_latest("PRJ-2", lambda p: p is None, since)
                assert watcher.keys_seen(since) == {"PRJ-2"}

    asyncio.run(scenario())
