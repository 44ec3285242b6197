"""Live CDC: Debezium (embedded) on the test PostgreSQL -> change topics -> ``extract cdc`` -> payloads.

One capture and one extractor serve the whole module (the JVM start is the
expensive part); each test uses its own investigation identifiers. The restart
test runs last because it stops and restarts both processes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from services.common.kafka.clients import make_producer, start_client
from services.common.kafka.reading import read_topic
from services.common.records import dumps, loads
from services.dev.stack.state import StackState
from services.extractor.source.loader import load_payloads
from tests.extractor.cdc_support import CdcStack, TopicWatcher, cdc_stack

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cdc(dev_stack: StackState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CdcStack]:
    with cdc_stack(dev_stack, tmp_path_factory) as stack:
        yield stack


def add_investigation(conn: psycopg.Connection[Any], identifier: str, title: str | None = None) -> None:
    """An investigation with one study (so assays and tables have something to point at)."""
    with conn.transaction():
        conn.execute(
            'INSERT INTO "vInvestigation" (identifier, title) VALUES (%s, %s)',
            (identifier, title or identifier),
        )
        conn.execute(
            'INSERT INTO "vStudy" (identifier, investigation_ref, title) VALUES (%s, %s, %s)',
            ("S-1", identifier, "first study"),
        )


def _studies(payload: Any) -> dict[str, Any]:
    return {study["identifier"]: study for study in payload["studies"]}


def _assays(payload: Any) -> dict[str, Any]:
    return {assay["identifier"]: assay for assay in payload["assays"]}


def _contacts(payload: Any) -> set[Any]:
    return {contact["last_name"] for contact in payload["contacts"]}


def _publications(payload: Any) -> set[Any]:
    return {publication["title"] for publication in payload["publications"]}


def _cells(payload: Any) -> set[Any]:
    return {
        cell["value"]
        for table in payload["annotation_tables"]
        if table["table_name"] == "T-new"
        for column in table["columns"]
        for cell in column["cells"]
    }


#: relation -> (insert SQL, check, update SQL, check, delete SQL, check).
#: ``%(inv)s`` is the investigation identifier.
CHILD_STEPS: dict[str, tuple[str, Callable[[Any], bool], str, Callable[[Any], bool], str, Callable[[Any], bool]]] = {
    "vStudy": (
        """INSERT INTO "vStudy" (identifier, investigation_ref, title)
           VALUES ('S-new', %(inv)s, 'new study')""",
        lambda p: "S-new" in _studies(p),
        """UPDATE "vStudy" SET title = 'renamed study'
           WHERE identifier = 'S-new' AND investigation_ref = %(inv)s""",
        lambda p: _studies(p).get("S-new", {}).get("title") == "renamed study",
        """DELETE FROM "vStudy" WHERE identifier = 'S-new' AND investigation_ref = %(inv)s""",
        lambda p: "S-new" not in _studies(p) and "S-1" in _studies(p),
    ),
    "vAssay": (
        """INSERT INTO "vAssay" (identifier, investigation_ref, study_ref, title)
           VALUES ('A-new', %(inv)s, '["S-1"]', 'new assay')""",
        lambda p: "A-new" in _assays(p),
        """UPDATE "vAssay" SET title = 'renamed assay' WHERE investigation_ref = %(inv)s""",
        lambda p: _assays(p).get("A-new", {}).get("title") == "renamed assay",
        """DELETE FROM "vAssay" WHERE investigation_ref = %(inv)s""",
        lambda p: not p["assays"],
    ),
    "vContact": (
        """INSERT INTO "vContact" (investigation_ref, target_type, last_name, first_name)
           VALUES (%(inv)s, 'investigation', 'Newman', 'Nia')""",
        lambda p: _contacts(p) == {"Newman"},
        """UPDATE "vContact" SET last_name = 'Newer' WHERE investigation_ref = %(inv)s""",
        lambda p: _contacts(p) == {"Newer"},
        """DELETE FROM "vContact" WHERE investigation_ref = %(inv)s""",
        lambda p: not p["contacts"],
    ),
    "vPublication": (
        """INSERT INTO "vPublication" (investigation_ref, target_type, title, doi)
           VALUES (%(inv)s, 'investigation', 'Paper X', '10.1/x')""",
        lambda p: _publications(p) == {"Paper X"},
        """UPDATE "vPublication" SET title = 'Paper Y' WHERE investigation_ref = %(inv)s""",
        lambda p: _publications(p) == {"Paper Y"},
        """DELETE FROM "vPublication" WHERE investigation_ref = %(inv)s""",
        lambda p: not p["publications"],
    ),
    "vAnnotationTable": (
        """INSERT INTO "vAnnotationTable" (investigation_ref, target_type, target_ref, table_name,
               column_type, column_io_type, row_index, cell_value)
           VALUES (%(inv)s, 'study', 'S-1', 'T-new', 'input', 'source_name', 0, 'plot 1')""",
        lambda p: _cells(p) == {"plot 1"},
        """UPDATE "vAnnotationTable" SET cell_value = 'plot 2' WHERE investigation_ref = %(inv)s""",
        lambda p: _cells(p) == {"plot 2"},
        """DELETE FROM "vAnnotationTable" WHERE investigation_ref = %(inv)s""",
        lambda p: not p["annotation_tables"],
    ),
}


def test_setup_prepared_the_captured_tables(cdc: CdcStack) -> None:
    with cdc.conn() as conn:
        identities = dict(
            conn.execute(
                "SELECT relname, relreplident::text FROM pg_class WHERE relname LIKE 'v%%' AND relkind = 'r'"
            ).fetchall()
        )
        published = {
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_publication_tables WHERE pubname = %s",
                (cdc.settings.cdc.publication_name,),
            )
        }
    assert published == {"vInvestigation", "vStudy", "vAssay", "vContact", "vPublication", "vAnnotationTable"}
    # Children need old values to find their investigation after a delete; the root's key is enough.
    assert {name for name, identity in identities.items() if identity == "f"} == published - {"vInvestigation"}


def test_capture_writes_what_kafka_connect_would(cdc: CdcStack) -> None:
    """Topics, keys and values shaped like the real captured examples (JsonConverter, no schemas)."""
    examples = json.loads((Path(__file__).parent / "data" / "debezium_examples.json").read_text(encoding="utf-8"))
    plain = examples["A_schemas_enable_false"]
    change_example = next(e["value"] for e in plain if e["value"] and e["value"].get("op") == "u")
    end_example = next(e["value"] for e in plain if e["value"] and e["value"].get("status") == "END")
    prefix = cdc.settings.cdc.topic_prefix
    with cdc.conn() as conn:
        add_investigation(conn, "CDC-SHAPE")
        conn.execute("""UPDATE "vStudy" SET title = 'x' WHERE investigation_ref = 'CDC-SHAPE'""")
        conn.execute("""DELETE FROM "vStudy" WHERE investigation_ref = 'CDC-SHAPE'""")

    async def scenario() -> None:
        async with TopicWatcher(cdc.settings.kafka, cdc.settings.topics.investigations) as watcher:
            with cdc.conn() as conn:
                conn.execute("""UPDATE "vInvestigation" SET title = 'done' WHERE identifier = 'CDC-SHAPE'""")
            await watcher.wait_for_latest("CDC-SHAPE", lambda p: p is not None and p["title"] == "done")

    asyncio.run(scenario())  # everything before this update has been captured by now

    def records(topic: str) -> list[tuple[Any, Any]]:
        found = asyncio.run(read_topic(cdc.settings.kafka, topic))
        return [(loads(r.key), None if r.value is None else loads(r.value)) for r in found]

    study_records = records(f"{prefix}.public.vStudy")
    mine = [
        index
        for index, (_, value) in enumerate(study_records)
        if value is not None and (value["after"] or value["before"])["investigation_ref"] == "CDC-SHAPE"
    ]
    changes = [study_records[index] for index in mine]
    assert [value["op"] for _, value in changes] == ["c", "u", "d"]
    key = changes[0][0]
    assert set(key) == {"id"} and all(k == key for k, _ in changes)
    assert study_records[mine[-1] + 1] == (key, None), "a tombstone follows the delete"
    for _, value in changes:
        assert set(value) == set(change_example)
        assert set(value["source"]) == set(change_example["source"])
        assert value["source"]["snapshot"] == "false" and value["transaction"]["id"].split(":")[0].isdigit()
    markers = [value for _, value in records(f"{prefix}.transaction")]
    assert {m["status"] for m in markers} == {"BEGIN", "END"}
    assert all(set(m) == set(end_example) for m in markers)
    heartbeats = records(f"__debezium-heartbeat.{prefix}")
    assert heartbeats and all(k == {"serverName": prefix} and set(v) == {"ts_ms"} for k, v in heartbeats)


def test_capture_and_extractor_report_health_readiness_and_metrics(cdc: CdcStack) -> None:
    for name, url in cdc.metrics_urls.items():
        deadline = time.monotonic() + 30
        while True:  # ready once streaming / assigned; the services may still be starting
            ready = httpx.get(f"{url}/readyz", timeout=5)
            if ready.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert ready.status_code == 200, (name, ready.json())
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        assert "process_cpu_seconds_total" in httpx.get(f"{url}/metrics", timeout=5).text
    extractor_metrics = httpx.get(f"{cdc.metrics_urls['extractor']}/metrics", timeout=5).text
    assert 'arcstream_messages_in_total{stage="extract"}' in extractor_metrics


def test_insert_update_delete_on_each_relation_changes_exactly_that_investigation(cdc: CdcStack) -> None:
    target, bystander = "CDC-A", "CDC-B"

    async def scenario() -> None:
        async with TopicWatcher(cdc.settings.kafka, cdc.settings.topics.investigations) as watcher:
            with cdc.conn() as conn:
                add_investigation(conn, target)
                add_investigation(conn, bystander)
                for key in (target, bystander):
                    await watcher.wait_for_latest(key, lambda p: p is not None and "S-1" in _studies(p))

                for relation, (insert, inserted, update, updated, delete, deleted) in CHILD_STEPS.items():
                    for statement, check in ((insert, inserted), (update, updated), (delete, deleted)):
                        since = watcher.mark()
                        conn.execute(statement, {"inv": target})
                        await watcher.wait_for_latest(target, lambda p, c=check: p is not None and c(p), since)
                        assert watcher.keys_seen(since) == {target}, f"{relation}: {statement.split()[0]}"

                since = watcher.mark()
                conn.execute("""UPDATE "vInvestigation" SET title = 'retitled' WHERE identifier = %s""", (target,))
                await watcher.wait_for_latest(target, lambda p: p is not None and p["title"] == "retitled", since)
                assert watcher.keys_seen(since) == {target}

                since = watcher.mark()
                with conn.transaction():
                    conn.execute('DELETE FROM "vStudy" WHERE investigation_ref = %s', (target,))
                    conn.execute('DELETE FROM "vInvestigation" WHERE identifier = %s', (target,))
                await watcher.wait_for_latest(target, lambda p: p is None, since)
                assert watcher.keys_seen(since) == {target}
                # The bystander's payload is still its whole, unchanged self.
                assert watcher.latest(bystander)["title"] == bystander

    asyncio.run(scenario())


def test_a_burst_of_updates_produces_few_payloads_ending_in_the_final_state(cdc: CdcStack) -> None:
    key = "CDC-BURST"

    async def scenario() -> None:
        async with TopicWatcher(cdc.settings.kafka, cdc.settings.topics.investigations) as watcher:
            with cdc.conn() as conn:
                add_investigation(conn, key)
                await watcher.wait_for_latest(key, lambda p: p is not None)
                since = watcher.mark()
                for i in range(100):
                    conn.execute('UPDATE "vInvestigation" SET title = %s WHERE identifier = %s', (f"v{i}", key))
            await watcher.wait_for_latest(key, lambda p: p is not None and p["title"] == "v99", since)
            published = watcher.values(key, since)
            assert len(published) <= 20, f"{len(published)} payloads for 100 updates"
            async with await psycopg.AsyncConnection.connect(cdc.database_url) as aconn:
                final = (await load_payloads(aconn, [key]))[key].payload_json
            assert final is not None
            assert published[-1] == json.loads(final)

    asyncio.run(scenario())


def test_bad_change_records_are_reported_and_skipped_heartbeats_and_signals_ignored(cdc: CdcStack) -> None:
    study_topic = f"{cdc.settings.cdc.topic_prefix}.public.vStudy"

    def change(table: str, op: str, before: Any, after: Any) -> bytes:
        source = {"schema": "public", "table": table, "ts_ms": 1, "snapshot": "false"}
        return dumps({"before": before, "after": after, "source": source, "op": op, "transaction": None})

    bad = [
        b"{not json",
        change("not_mapped", "c", None, {"id": 1, "investigation_ref": "CDC-X"}),
        # A delete without old values (REPLICA IDENTITY DEFAULT): placeholders name no investigation.
        change("vStudy", "d", {"id": 99, "identifier": "", "investigation_ref": ""}, None),
    ]
    ignored = [
        dumps({"ts_ms": 1}),
        change("debezium_signal", "c", None, {"id": "1", "type": "execute-snapshot", "data": "{}"}),
    ]

    async def scenario() -> None:
        async with (
            TopicWatcher(cdc.settings.kafka, cdc.settings.topics.report) as report,
            TopicWatcher(cdc.settings.kafka, cdc.settings.topics.investigations) as watcher,
        ):
            producer = make_producer(cdc.settings.kafka)
            await start_client(producer, cdc.settings.kafka)
            try:
                for value in bad + ignored:
                    await producer.send_and_wait(study_topic, key=b'{"id":99}', value=value)
            finally:
                await producer.stop()

            # The extractor carries on; this change sits behind the bad records on the same topic.
            with cdc.conn() as conn:
                add_investigation(conn, "CDC-AFTER-BAD")
            await watcher.wait_for_latest("CDC-AFTER-BAD", lambda p: p is not None)
            # (Other tests' investigations may still see a late duplicate; these records name only these.)
            assert not watcher.keys_seen() & {"CDC-X", ""}, "bad or ignored records must not publish anything"

            def failures() -> list[Any]:
                keys = [key for key in report.keys_seen() if key.startswith(f"{study_topic}/")]
                return [record for key in keys for record in report.values(key)]

            await report.wait_for("the failure reports", lambda: len(failures()) >= len(bad))
            assert len(failures()) == len(bad), "heartbeats and signals are not failures"
            assert {r["stage"] for r in failures()} == {"extract"}
            assert {r["status"] for r in failures()} == {"failed"}
            assert {r["error_code"] for r in failures()} == {"unreadable-change", "unmapped-table", "unmapped-change"}

    asyncio.run(scenario())


def test_capture_and_extractor_restarted_mid_stream_lose_no_change(cdc: CdcStack) -> None:
    keys = [f"CDC-R{i:02d}" for i in range(18)]

    async def scenario() -> None:
        async with TopicWatcher(cdc.settings.kafka, cdc.settings.topics.investigations) as watcher:
            with cdc.conn() as conn:
                with conn.transaction():
                    for key in keys:
                        conn.execute(
                            'INSERT INTO "vInvestigation" (identifier, title) VALUES (%s, %s)',
                            (key, "before"),
                        )
                await watcher.wait_for("all created", lambda: watcher.keys_seen() >= set(keys))

                def retitle(part: list[str]) -> None:
                    for key in part:
                        conn.execute('UPDATE "vInvestigation" SET title = %s WHERE identifier = %s', ("after", key))

                retitle(keys[:6])
                # Crash both mid-stream: no clean shutdown, offsets as last flushed.
                cdc.capture.stop(kill=True)
                cdc.extractor.stop(kill=True)
                retitle(keys[6:12])
                cdc.start_capture()
                cdc.start_extractor()
                retitle(keys[12:])
            for key in keys:
                await watcher.wait_for_latest(key, lambda p: p is not None and p["title"] == "after")

    asyncio.run(scenario())
