"""Parsing real Debezium records (captured from the connector, both converter modes) and grouping them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from services.common.records import dumps
from services.extractor.cdc.events import (
    ChangeRecordError,
    is_heartbeat,
    iso_from_ms,
    parse_change,
    parse_transaction,
    tx_part,
)
from services.extractor.cdc.grouping import ChangeGrouper

EXAMPLES = json.loads((Path(__file__).parent / "data" / "debezium_examples.json").read_text(encoding="utf-8"))
PLAIN: list[dict[str, Any]] = EXAMPLES["A_schemas_enable_false"]
ENVELOPED: list[dict[str, Any]] = EXAMPLES["B_schemas_enable_true"]


def _value(example: dict[str, Any]) -> bytes:
    return dumps(example["value"])


def _changes(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in examples if e["value"] is not None and "op" in (e["value"].get("payload") or e["value"])]


def test_every_captured_change_event_parses() -> None:
    changes = _changes(PLAIN)
    assert {e["value"]["op"] for e in changes} == {"r", "c", "u", "d"}
    for example in changes:
        change = parse_change(_value(example))
        assert (change.schema, change.table) == ("arc", example["topic"].split(".")[-1])
        assert change.op == example["value"]["op"]
        assert change.commit_ts_ms == example["value"]["source"]["ts_ms"]


def test_transaction_correlates_on_the_txid_part_only() -> None:
    begin, end = (parse_transaction(_value(e)) for e in PLAIN if e["topic"] == "arcdb.transaction")
    first_insert = next(e for e in PLAIN if e["value"] and e["value"].get("op") == "c")
    change = parse_change(_value(first_insert))
    assert begin.status == "BEGIN" and end.status == "END"
    assert begin.tx_id == end.tx_id == change.tx_id == "750"
    assert end.event_count == 3


def test_snapshot_reads_have_no_transaction_and_old_values_only_with_full_identity() -> None:
    snapshot = parse_change(_value(PLAIN[0]))
    assert snapshot.op == "r" and snapshot.tx_id is None and snapshot.rows == [snapshot.after]
    full_update = next(e for e in PLAIN if e["topic"] == "arcdb.arc.study" and e["value"]["op"] == "u")
    assert [row["title"] for row in parse_change(_value(full_update)).rows] == ["Field trial", "Field trial 2025"]
    default_update = next(e for e in PLAIN if e["topic"] == "arcdb.arc.investigation" and e["value"]["op"] == "u")
    assert parse_change(_value(default_update)).before is None


def test_the_schema_envelope_is_unwrapped() -> None:
    enveloped = next(e for e in ENVELOPED if e["value"] is not None)
    change = parse_change(_value(enveloped))
    assert change.after == enveloped["value"]["payload"]["after"]


def test_heartbeats_are_recognised() -> None:
    heartbeat = next(e for e in PLAIN if e["topic"].startswith("__debezium-heartbeat"))
    assert is_heartbeat(_value(heartbeat))
    assert not is_heartbeat(_value(PLAIN[0]))


@pytest.mark.parametrize(
    "value",
    [b"{not json", b"[1, 2]", b'{"op": "c"}', b'{"op": "x", "source": {}}', b'{"op": "c", "source": {"table": 1}}'],
)
def test_malformed_change_records_raise_record_errors(value: bytes) -> None:
    with pytest.raises(ChangeRecordError):
        parse_change(value)


def test_malformed_transaction_markers_raise_record_errors() -> None:
    with pytest.raises(ChangeRecordError):
        parse_transaction(b'{"status": "END", "id": "1:2"}')
    with pytest.raises(ChangeRecordError):
        parse_transaction(b'{"status": "MAYBE", "id": "1:2"}')


def test_helpers() -> None:
    assert tx_part("750:22487512") == "750"
    assert iso_from_ms(1795326216581) == "2026-11-22T05:43:36.581Z"


TP = TopicPartition("arcdb.public.vStudy", 0)
TX = TopicPartition("arcdb.transaction", 0)


def test_a_transaction_flushes_once_complete_even_when_end_arrives_first() -> None:
    grouper = ChangeGrouper(debounce_s=0.3, transaction_timeout_s=5)
    grouper.end((TX, 1), "7", event_count=2, now=0.0)
    grouper.change((TP, 10), "7", {"INV-1"}, 1000, now=0.1)
    assert grouper.due(now=0.5) is None, "one event of two is missing"
    grouper.change((TP, 11), "7", {"INV-2"}, 900, now=0.6)
    group = grouper.due(now=0.6)
    assert group is not None, "complete after a quiet spell: flushed at once"
    assert group.roots == {"INV-1": 1000, "INV-2": 900}
    assert sorted(group.positions) == sorted([(TX, 1), (TP, 10), (TP, 11)])


def test_a_burst_of_transactions_coalesces_into_one_flush_per_window() -> None:
    grouper = ChangeGrouper(debounce_s=0.3, transaction_timeout_s=5)
    grouper.change((TP, 0), "1", {"INV-1"}, 1000, now=0.0)
    grouper.end((TX, 0), "1", event_count=1, now=0.0)
    first = grouper.due(now=0.0)
    assert first is not None and first.roots == {"INV-1": 1000}
    for i, tx in enumerate(("2", "3", "4"), start=1):
        grouper.change((TP, i), tx, {"INV-1"}, 1000 + i, now=0.05 * i)
        grouper.end((TX, i), tx, event_count=1, now=0.05 * i)
        assert grouper.due(now=0.05 * i) is None, "flushes are spaced by the debounce"
    assert grouper.seconds_to_next(now=0.2) == pytest.approx(0.1)
    second = grouper.due(now=0.3)
    assert second is not None and second.roots == {"INV-1": 1001}, "the oldest commit time is kept"
    assert len(second.positions) == 6
    assert grouper.seconds_to_next(now=0.4) is None


def test_an_incomplete_transaction_is_flushed_after_its_timeout() -> None:
    grouper = ChangeGrouper(debounce_s=0.3, transaction_timeout_s=2)
    grouper.change((TP, 1), "9", {"INV-9"}, None, now=0.0)
    assert grouper.due(now=1.0) is None
    assert grouper.seconds_to_next(now=1.0) == pytest.approx(1.0)
    group = grouper.due(now=2.0)
    assert group is not None and group.roots == {"INV-9": None}


def test_changes_without_transaction_metadata_are_debounced_and_drain_takes_everything() -> None:
    grouper = ChangeGrouper(debounce_s=0.3, transaction_timeout_s=5)
    grouper.change((TP, 1), None, {"INV-1"}, 5, now=0.0)
    assert grouper.due(now=0.0) is not None
    grouper.change((TP, 2), None, {"INV-2"}, 6, now=0.1)
    grouper.change((TP, 3), "4", {"INV-3"}, 7, now=0.1)
    assert grouper.due(now=0.1) is None
    drained = grouper.drain()
    assert drained.roots == {"INV-2": 6, "INV-3": 7}
    assert not grouper.drain()


def test_a_transaction_completing_after_its_investigation_was_re_read_adds_no_duplicate() -> None:
    grouper = ChangeGrouper(debounce_s=0.3, transaction_timeout_s=5)
    grouper.change((TP, 1), "1", {"INV-1"}, 1000, now=0.0)
    grouper.end((TX, 1), "1", event_count=1, now=0.0)
    grouper.change((TP, 2), "2", {"INV-1", "INV-2"}, 1001, now=0.05)  # END of tx 2 still on its way
    first = grouper.due(now=0.1)
    assert first is not None and set(first.roots) == {"INV-1"}, "this read already sees tx 2's change"
    grouper.end((TX, 2), "2", event_count=1, now=0.2)
    second = grouper.due(now=0.4)
    assert second is not None
    assert second.roots == {"INV-2": 1001}, "INV-1 was re-read after tx 2 reached us; INV-2 was not"
    assert sorted(second.positions) == sorted([(TP, 2), (TX, 2)])
    # A change that arrives after a flush is re-read again.
    grouper.change((TP, 3), "3", {"INV-1"}, 1002, now=0.5)
    grouper.end((TX, 3), "3", event_count=1, now=0.5)
    third = grouper.due(now=0.8)
    assert third is not None and third.roots == {"INV-1": 1002}
