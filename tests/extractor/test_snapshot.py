"""Snapshot extractor against a real PostgreSQL and a real broker."""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from services.common import metrics
from services.common.config import Settings
from services.dev.generator import generate, generate_payloads
from services.dev.writer import write_rows
from services.extractor import snapshot
from services.extractor.snapshot import run_snapshot, shard_count
from services.extractor.source.schema import connect
from tests.extractor.conftest import markers_on_topic, payloads_on_topic, reports_on_topic

DATA = Path(__file__).parent / "data"


def _annotation(row: dict[str, Any], prefix: str) -> dict[str, Any] | None:
    term = row[f"{prefix}_term"]
    if term is None or term.strip() == "":
        return None
    return {"term": term, "uri": row[f"{prefix}_uri"], "version": row[f"{prefix}_version"]}


def _date(value: Any) -> str | None:
    return value if value is None or isinstance(value, str) else value.isoformat()


def _comments(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": c.get("name"), "value": c.get("value")} for c in row.get("comments") or []]


def _terms(items: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [{"term": i["term"], "uri": i.get("uri"), "version": i.get("version")} for i in items or [] if i.get("term")]


def reference_payload(conn: psycopg.Connection, identifier: str) -> dict[str, Any]:
    """The payload of one investigation, the slow way: one query per relation, no batching.

    Contract v2 columns are read where the relations have them (``SELECT *``); without
    them the defaults stand.
    """

    def rows(relation: str, key: str = "investigation_ref") -> list[dict[str, Any]]:
        return conn.execute(f'SELECT * FROM "{relation}" WHERE {key} = %s ORDER BY 1', (identifier,)).fetchall()

    (inv,) = rows("vInvestigation", "identifier")
    studies: list[dict[str, Any]] = []
    for row in rows("vStudy"):
        study = {
            "identifier": row["identifier"],
            "title": row["title"],
            "description_text": row["description_text"],
            "submission_date": _date(row["submission_date"]),
            "public_release_date": _date(row["public_release_date"]),
            "comments": _comments(row),
            "design_descriptors": _terms(row.get("design_descriptors")),
        }
        if study not in studies:
            studies.append(study)
    assays: list[dict[str, Any]] = []
    for row in rows("vAssay"):
        ref = row["study_ref"]
        refs = json.loads(ref) if ref and ref.startswith("[") else ([ref] if ref else [])
        platform_uri, platform_version = row.get("technology_platform_uri"), row.get("technology_platform_version")
        assay = {
            "identifier": row["identifier"],
            "study_refs": refs,
            "title": row["title"],
            "description_text": row["description_text"],
            "measurement_type": _annotation(row, "measurement_type"),
            "technology_type": _annotation(row, "technology_type"),
            "technology_platform": row["technology_platform"]
            if platform_uri is None and platform_version is None
            else {"term": row["technology_platform"], "uri": platform_uri, "version": platform_version},
            "comments": _comments(row),
        }
        same = [a for a in assays if a["identifier"] == assay["identifier"]]
        if same:
            same[0]["study_refs"] += [r for r in refs if r not in same[0]["study_refs"]]
        else:
            assays.append(assay)
    contacts = [
        {
            "target_type": row["target_type"],
            "target_ref": row["target_ref"],
            **{
                key: row[key]
                for key in (
                    "last_name",
                    "first_name",
                    "mid_initials",
                    "email",
                    "phone",
                    "fax",
                    "postal_address",
                    "affiliation",
                )
            },
            "roles": _terms(row["roles"]),
            "orcid": row.get("orcid"),
            "comments": _comments(row),
        }
        for row in rows("vContact")
    ]
    publications = [
        {
            "target_type": row["target_type"],
            "target_ref": row["target_ref"],
            **{key: row[key] for key in ("pubmed_id", "doi", "authors", "title")},
            "status": _annotation(row, "status"),
            "comments": _comments(row),
        }
        for row in rows("vPublication")
    ]
    tables: list[dict[str, Any]] = []
    for row in rows("vAnnotationTable"):
        table = next(
            (
                t
                for t in tables
                if (t["target_type"], t["target_ref"], t["table_name"])
                == (row["target_type"], row["target_ref"], row["table_name"])
            ),
            None,
        )
        if table is None:
            table = {
                "target_type": row["target_type"],
                "target_ref": row["target_ref"],
                "table_name": row["table_name"],
                "columns": [],
            }
            tables.append(table)
        if row["column_type"] is None:
            continue
        header = {
            "column_type": row["column_type"],
            "column_io_type": row["column_io_type"],
            "column_value": row["column_value"],
            "annotation": _annotation(row, "column_annotation"),
        }
        position = row.get("column_index")
        column = next(
            (c for c in table["columns"] if {k: c[k] for k in header} == header and c["position"] == position), None
        )
        if column is None:
            column = header | {"cells": [], "position": position}
            table["columns"].append(column)
        column["cells"].append(
            {
                "row_index": row["row_index"],
                "value": row["cell_value"],
                "annotation": _annotation(row, "cell_annotation"),
            }
        )
    for table in tables:
        table["columns"].sort(key=lambda c: (c["position"] is None, c["position"] or 0))
        for column in table["columns"]:
            del column["position"]
    sources = [
        {key: source.get(key) for key in ("name", "file", "version", "description")}
        for source in inv.get("ontology_source_references") or []
    ]
    return {
        "schema_version": 1,
        "identifier": inv["identifier"],
        "title": inv["title"],
        "description_text": inv["description_text"],
        "submission_date": _date(inv["submission_date"]),
        "public_release_date": _date(inv["public_release_date"]),
        "comments": _comments(inv),
        "license": inv.get("license"),
        "ontology_source_references": sources,
        "studies": studies,
        "assays": assays,
        "contacts": contacts,
        "publications": publications,
        "annotation_tables": tables,
    }


@pytest.mark.parametrize("contract", [1, 2])
def test_snapshot_publishes_each_investigation_as_the_reference_query_sees_it(
    fill_source: Callable[..., int],
    settings: Settings,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    contract: int,
) -> None:
    fill_source(rows=generate(500, 7, "small", contract))
    monkeypatch.setattr(snapshot, "MIN_INVESTIGATIONS_PER_SHARD", 100)  # two shard processes for 500
    extracted_before = metrics.MESSAGES_IN.labels(stage="extract")._value.get()
    summary = asyncio.run(run_snapshot(settings, progress=False, workers=2))
    assert metrics.MESSAGES_IN.labels(stage="extract")._value.get() - extracted_before == 500

    published = payloads_on_topic(settings)
    assert summary.expected == 500 and summary.published == 500 and summary.failed == 0
    assert summary.processes == 2
    assert len(published) == 500
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        for identifier, payload in published.items():
            assert payload == reference_payload(conn, identifier), identifier


def test_a_v1_database_keeps_working_with_the_payloads_it_always_gave(settings: Settings, database_url: str) -> None:
    """The six relations exactly as contract v1 defined them (date columns, no v2 column)."""

    async def fill() -> None:
        conn = await connect(database_url)
        try:
            await conn.execute((DATA / "source_contract_v1.sql").read_text(encoding="utf-8").encode())
            await conn.commit()
            await write_rows(conn, generate(60, 7, "small"))
        finally:
            await conn.close()

    asyncio.run(fill())
    summary = asyncio.run(run_snapshot(settings, progress=False))
    assert summary.published == 60 and summary.failed == 0
    published = payloads_on_topic(settings)
    assert published == {p.identifier: p.model_dump(mode="json") for p in generate_payloads(60, 7, "small")}


def test_run_markers_frame_the_run_on_every_partition(fill_source: Callable[..., int], settings: Settings) -> None:
    fill_source(40, seed=3)
    summary = asyncio.run(run_snapshot(settings, progress=False))

    markers = markers_on_topic(settings)
    starts = [m for m in markers if m["kind"] == "run-start"]
    ends = [m for m in markers if m["kind"] == "run-end"]
    assert sorted(m["partition"] for m in starts) == sorted(m["partition"] for m in ends) == [0, 1, 2]
    assert {m["run_id"] for m in markers} == {summary.run_id}
    assert all(m["expected"] == 40 for m in starts)
    assert sum(m["published"] for m in ends) == 40
    assert {m["partition"]: m["published"] for m in ends} == {p: summary.partitions.get(p, 0) for p in range(3)}


class _CountingCursor(psycopg.AsyncCursor[Any]):
    """Counts every statement run through a client-side cursor (all but the snapshot's FETCHes)."""

    executed = 0

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        _CountingCursor.executed += 1
        return await super().execute(*args, **kwargs)


def _statements(settings: Settings) -> int:
    _CountingCursor.executed = 0
    asyncio.run(
        run_snapshot(
            settings,
            progress=False,
            connect_kwargs={"cursor_factory": _CountingCursor},
        )
    )
    return _CountingCursor.executed


def test_statements_grow_with_batches_not_investigations(
    fill_source: Callable[..., int], make_settings: Callable[..., Settings]
) -> None:
    """Also with every contract v2 column present and filled: v2 costs no query of its own."""
    fill_source(rows=generate(120, 5, "small", contract=2))
    one_batch = _statements(make_settings(db_batch_size=120))
    twelve_batches = _statements(make_settings(db_batch_size=10))
    six_batches = _statements(make_settings(db_batch_size=20))

    per_batch = (twelve_batches - six_batches) / 6
    assert per_batch == 5  # one query per child relation (plus one FETCH on the server-side cursor)
    assert one_batch < 20  # 120 investigations, a constant handful of statements
    assert twelve_batches == one_batch + 11 * per_batch


def test_quirks_are_accepted_and_invalid_rows_reported_without_stopping(
    fill_source: Callable[..., int], settings: Settings, database_url: str
) -> None:
    fill_source(3, seed=11)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            """
            INSERT INTO "vInvestigation"(identifier, title) VALUES ('Q-1', 'quirks'), ('BAD-1', 'conflict'),
                ('BAD-2', 'bad contact');
            INSERT INTO "vStudy"(identifier, investigation_ref, title) VALUES
                ('S-a', 'Q-1', 'same'), ('S-a', 'Q-1', 'same'), ('S-b', 'Q-1', 'b'),
                ('S-x', 'BAD-1', 'one'), ('S-x', 'BAD-1', 'other');
            INSERT INTO "vAssay"(identifier, investigation_ref, study_ref, title) VALUES
                ('A-1', 'Q-1', 'S-a', 'bare id'),
                ('A-2', 'Q-1', '["S-a"]', 'linked twice'), ('A-2', 'Q-1', '["S-b"]', 'linked twice');
            INSERT INTO "vContact"(investigation_ref, target_type, target_ref, last_name, first_name, roles) VALUES
                ('Q-1', 'investigation', 'Q-1', 'Nofirst', NULL, '[{"term": "curator", "uri": null}]'),
                ('Q-1', 'investigation', 'Q-1', 'Text', 'Roles',
                    to_jsonb('[{"term": "pi", "uri": "http://x/pi", "version": "1"}, {"term": ""}]'::text)),
                ('BAD-2', 'department', 'BAD-2', 'Who', 'Ever', NULL);
            """
        )
    summary = asyncio.run(run_snapshot(settings, progress=False))

    published = payloads_on_topic(settings)
    assert summary.published == 4 and summary.failed == 2
    assert set(published) == {"INV-000000", "INV-000001", "INV-000002", "Q-1"}
    quirky = published["Q-1"]
    assert quirky is not None
    assert [s["identifier"] for s in quirky["studies"]] == ["S-a", "S-b"]
    assert {a["identifier"]: a["study_refs"] for a in quirky["assays"]} == {
        "A-1": ["S-a"],
        "A-2": ["S-a", "S-b"],
    }
    nofirst, text_roles = quirky["contacts"]
    assert nofirst["first_name"] is None and nofirst["roles"] == [{"term": "curator", "uri": None, "version": None}]
    assert text_roles["roles"] == [{"term": "pi", "uri": "http://x/pi", "version": "1"}]

    failures = {r["identifier"]: r for r in reports_on_topic(settings)}
    assert set(failures) == {"BAD-1", "BAD-2"}
    assert all(r["stage"] == "extract" and r["status"] == "failed" for r in failures.values())
    assert "study 'S-x' appears twice with different values" in failures["BAD-1"]["error_message"]
    assert "target_type" in failures["BAD-2"]["error_message"]
    ends = [m for m in markers_on_topic(settings) if m["kind"] == "run-end"]
    assert all(m["failed"] == 2 for m in ends)


def test_payloads_over_1_mb_and_10_mb_go_through(
    fill_source: Callable[..., int], settings: Settings, database_url: str
) -> None:
    fill_source(0)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            """INSERT INTO "vInvestigation"(identifier, title, description_text)
               VALUES ('BIG-1', 'one MB', repeat('a', 1200000)), ('BIG-10', 'ten MB', repeat('b', 10500000))"""
        )
    summary = asyncio.run(run_snapshot(settings, progress=False))

    published = payloads_on_topic(settings)
    assert summary.published == 2
    assert len(published["BIG-1"]["description_text"]) == 1_200_000  # type: ignore[index]
    assert len(published["BIG-10"]["description_text"]) == 10_500_000  # type: ignore[index]


def test_one_process_per_five_thousand_investigations_up_to_the_worker_count() -> None:
    assert shard_count(workers=4, expected=2_000) == 1
    assert shard_count(workers=4, expected=12_000) == 2
    assert shard_count(workers=2, expected=1_000_000) == 2
    assert shard_count(workers=1, expected=1_000_000) == 1


class _Node:
    """An object that can sit in a reference cycle (only the collector frees those)."""

    partner: _Node | None = None


def _cycle() -> _Node:
    first, second = _Node(), _Node()
    first.partner, second.partner = second, first
    return first


def test_garbage_is_collected_between_batches_once_it_piles_up() -> None:
    assert gc.isenabled()
    with snapshot.collection_between_batches() as collect:
        assert not gc.isenabled(), "no automatic collection inside a batch"
        early = weakref.ref(_cycle())
        collect()
        assert early() is not None, "a little garbage waits for the next boundary"
        for _ in range(snapshot.UNCOLLECTED_OBJECTS_LIMIT // 2 + 1):
            _cycle()
        collect()
        assert early() is None, "piled-up garbage is collected at the boundary"
    assert gc.isenabled()
