"""Mapping payload -> ARC -> RO-Crate with real arctrl: round trip, cannot-take cases, determinism, hash."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from typing import Any

import orjson
import pytest
from arctrl import ARC

from services.builder.accessions import term_source
from services.builder.engines.arctrl import build_arc_json
from services.builder.engines.arctrl.mapping import REGISTERED_STUDIES_COMMENT
from services.builder.engines.arctrl.rocrate import UNDATED
from services.builder.engines.arctrl.tables import DATE_COMMENT
from services.builder.identifiers import ORIGINAL_IDENTIFIER_COMMENT, decode_identifier, encode_identifier
from services.builder.worker import build, decode_result, init_worker
from services.common.content_hash import content_hash
from services.common.errors import MappingError
from services.common.payload import (
    AnnotationTable,
    Assay,
    Cell,
    Column,
    Contact,
    InvestigationPayload,
    OntologyAnnotation,
    Publication,
    Study,
)
from services.common.payload import Comment as PayloadComment

from .conftest import cells, minimal_payload, oa, rich_payload

IO_LABELS = {
    "source_name": "Source Name",
    "sample_name": "Sample Name",
    "material_name": "Material",
    "data": "Data",
}


def curie(uri: str | None) -> str | None:
    """arctrl reads full PURL accessions back as CURIEs (DESIGN.md, round-trip caveats)."""
    if uri is None:
        return None
    tail = uri.rsplit("/", 1)[-1]
    return tail.replace("_", ":", 1)


def comments(item: Any) -> dict[str, str]:
    return {c.Name: c.Value for c in item.Comments}


def original_id(item: Any) -> str:
    return comments(item).get(ORIGINAL_IDENTIFIER_COMMENT, item.Identifier)


def expected_cell(column: Column, row: int) -> str:
    cell = next((c for c in column.cells if c.row_index == row), None)
    if cell is None:
        return ""
    if column.column_type in ("characteristic", "factor", "parameter", "component") and cell.annotation:
        if cell.value is None or cell.value == cell.annotation.term:
            return cell.annotation.term
        return f"{cell.value} {cell.annotation.term}"
    return cell.value or ""


def expected_header(column: Column) -> str:
    kind = column.column_type
    if kind in ("input", "output"):
        return f"{kind.capitalize()} [{IO_LABELS[column.column_io_type or 'source_name']}]"
    if kind == "date":
        return f"Comment [{DATE_COMMENT}]"
    if kind == "comment":
        return f"Comment [{column.column_value}]"
    name = column.annotation.term if column.annotation else column.column_value
    return f"{kind.capitalize()} [{name}]"


def test_round_trip_field_by_field() -> None:
    payload = rich_payload()
    text = build_arc_json(payload)
    arc = ARC.from_rocrate_json_string(text)
    graph = {node["@id"]: node for node in json.loads(text)["@graph"]}

    assert (arc.Identifier, arc.Title, arc.Description) == (
        payload.identifier,
        payload.title,
        payload.description_text,
    )
    assert (arc.SubmissionDate, arc.PublicReleaseDate) == (
        payload.submission_date,
        payload.public_release_date,
    )

    studies = {original_id(s): s for s in arc.Studies}
    assert set(studies) == {s.identifier for s in payload.studies}
    for study in payload.studies:
        got = studies[study.identifier]
        assert got.Identifier == encode_identifier(study.identifier, "study")
        assert (got.Title, got.Description) == (study.title, study.description_text)
        assert (got.SubmissionDate, got.PublicReleaseDate) == (
            study.submission_date,
            study.public_release_date,
        )

    # The parser puts assays at investigation level; the registration travels in a comment.
    assays = {original_id(a): a for a in arc.Assays}
    assert set(assays) == {a.identifier for a in payload.assays}
    for assay in payload.assays:
        got = assays[assay.identifier]
        assert (got.Title, got.Description) == (assay.title, assay.description_text)
        registered = json.loads(comments(got)[REGISTERED_STUDIES_COMMENT])
        assert [original_id(studies_by_arc_id(arc)[r]) for r in registered] == assay.study_refs
        for mine, theirs in (
            (assay.measurement_type, got.MeasurementType),
            (assay.technology_type, got.TechnologyType),
        ):
            if mine is None:
                assert theirs is None
            else:
                assert (theirs.Name, theirs.TermAccessionNumber) == (mine.term, curie(mine.uri))
                assert theirs.TermSourceREF == term_source(mine.uri)
        platform = got.TechnologyPlatform.Name if got.TechnologyPlatform else None
        assert platform == assay.technology_platform

    def person_fields(p: Any) -> tuple[Any, ...]:
        return (p.FirstName or "", p.LastName, p.MidInitials, p.EMail, p.Phone, p.Fax, p.Address)

    def contact_fields(c: Contact) -> tuple[Any, ...]:
        return (c.first_name or "", c.last_name, c.mid_initials, c.email, c.phone, c.fax, c.postal_address)

    for contact in payload.contacts:
        if contact.target_type == "investigation":
            people = arc.Contacts
        elif contact.target_type == "study":
            people = studies[contact.target_ref].Contacts
        else:
            people = assays[contact.target_ref].Performers
        match = [p for p in people if person_fields(p) == contact_fields(contact)]
        assert match, f"contact {contact} missing"
        assert [r.Name for r in match[0].Roles] == [r.term for r in contact.roles]
        assert [r.TermAccessionNumber for r in match[0].Roles] == [curie(r.uri) for r in contact.roles]
        if contact.affiliation:
            assert graph[f"#Organization_{contact.affiliation}"]["name"] == contact.affiliation

    for publication in payload.publications:
        pubs = (
            arc.Publications
            if publication.target_type == "investigation"
            else studies[publication.target_ref].Publications
        )
        got = next(p for p in pubs if p.Title == publication.title)
        assert (got.DOI, got.PubMedID, got.Authors) == (
            publication.doi,
            publication.pubmed_id,
            publication.authors,
        )
        assert (got.Status.Name if got.Status else None) == (publication.status.term if publication.status else None)

    for table in payload.annotation_tables:
        owner = studies[table.target_ref] if table.target_type == "study" else assays[table.target_ref]
        got = next(t for t in owner.Tables if t.Name == table.table_name)
        # The parser does not restore Performer columns; they are checked in the JSON below.
        columns = [c for c in table.columns if c.column_type != "performer"]
        assert [c.header.ToString() for c in got.Columns] == [expected_header(c) for c in columns]
        for column, parsed in zip(columns, got.Columns, strict=True):
            values = [cell.ToString() for cell in parsed.cells]
            expected = [expected_cell(column, row) for row in range(len(values))]
            if column.column_io_type == "data":
                assert all(v.endswith("/" + e) for v, e in zip(values, expected, strict=True))
            else:
                assert values == expected
        for column in table.columns:
            if column.column_type == "performer":
                agents = {
                    graph[graph[pid]["agent"]["@id"]]["givenName"] for pid in graph if _is_process(graph[pid], table)
                }
                assert agents == {c.value for c in column.cells}


def studies_by_arc_id(arc: ARC) -> dict[str, Any]:
    return {s.Identifier: s for s in arc.Studies}


def _is_process(node: dict[str, Any], table: AnnotationTable) -> bool:
    return node.get("@type") == "LabProcess" and node["name"].startswith(table.table_name + "_")


def test_identifier_encoding_is_reversible_and_arctrl_safe() -> None:
    for original in ["soil/2021.a", "a#b", "Bödenprobe", " padded ", "plain id_1-2", "emoji😀"]:
        encoded = encode_identifier(original, "study")
        assert all(ch.isascii() and (ch.isalnum() or ch in "_- ") for ch in encoded)
        assert encoded == encoded.strip()
        assert decode_identifier(encoded) == original
    assert encode_identifier("plain id_1-2", "study") == "plain id_1-2"


def test_term_source_from_accession() -> None:
    assert term_source("http://purl.obolibrary.org/obo/OBI_0000070") == "OBI"
    assert term_source("http://purl.obolibrary.org/obo/NCBITaxon_4577") == "NCBITaxon"
    assert term_source("OBI:0000070") == "OBI"
    assert term_source("https://example.org/vocab/thing") is None
    assert term_source(None) is None


def test_missing_first_name_is_an_empty_given_name() -> None:
    payload = minimal_payload(contacts=[Contact(target_type="investigation", last_name="Curie")])
    arc = ARC.from_rocrate_json_string(build_arc_json(payload))
    assert [(p.FirstName or "", p.LastName) for p in arc.Contacts] == [("", "Curie")]


def _table(*columns: Column, target: str = "s1", name: str = "t") -> AnnotationTable:
    return AnnotationTable(target_type="study", target_ref=target, table_name=name, columns=list(columns))


S1 = [Study(identifier="s1")]


def _cell(row: int, value: str | None, annotation: OntologyAnnotation | None) -> Cell:
    return Cell(row_index=row, value=value, annotation=annotation)


CANNOT_TAKE: dict[str, tuple[dict[str, Any], str]] = {
    "blank investigation identifier": ({"identifier": "  "}, "empty identifier"),
    "empty study identifier": ({"studies": [Study(identifier="")]}, "empty identifier"),
    "blank assay identifier": ({"assays": [Assay(identifier="  ")]}, "empty identifier"),
    "duplicate study": (
        {"studies": [Study(identifier="s1", title="a"), Study(identifier="s1", title="b")]},
        "two study entries",
    ),
    "duplicate assay": (
        {"assays": [Assay(identifier="a1"), Assay(identifier="a1", title="x")]},
        "two assay entries",
    ),
    "study ids sharing an RO-Crate id": (
        {"studies": [Study(identifier="s 1"), Study(identifier="s_1")]},
        "would share RO-Crate ids",
    ),
    "unknown study ref": ({"assays": [Assay(identifier="a1", study_refs=["nope"])]}, "unknown study 'nope'"),
    "contact on unknown assay": (
        {"contacts": [Contact(target_type="assay", target_ref="nope", last_name="X")]},
        "unknown assay 'nope'",
    ),
    "duplicate table name": (
        {
            "studies": S1,
            "annotation_tables": [
                _table(Column(column_type="input", cells=cells("a"))),
                _table(Column(column_type="input", cells=cells("b"))),
            ],
        },
        "duplicate names",
    ),
    "sample names sharing an RO-Crate id": (
        {
            "studies": S1,
            "annotation_tables": [
                _table(Column(column_type="output", column_io_type="sample_name", cells=cells("s 1", "s_1")))
            ],
        },
        "same RO-Crate node '#Sample_s_1'",
    ),
    "annotation on a free-text cell": (
        {
            "studies": S1,
            "annotation_tables": [
                _table(Column(column_type="comment", column_value="c", cells=[_cell(0, "x", oa("x"))]))
            ],
        },
        "cannot carry an annotation",
    ),
    "comment column without name": (
        {"studies": S1, "annotation_tables": [_table(Column(column_type="comment", cells=cells("x")))]},
        "without a name",
    ),
    "header value and term disagree": (
        {
            "studies": S1,
            "annotation_tables": [
                _table(Column(column_type="factor", column_value="heat", annotation=oa("temperature")))
            ],
        },
        "disagree",
    ),
}


def cannot_take_payload(case: str) -> InvestigationPayload:
    """The payload of one cannot-take case (built past validation where the model itself would refuse it)."""
    fields, _ = CANNOT_TAKE[case]
    data = minimal_payload().model_dump() | fields
    return (
        InvestigationPayload.model_construct(**data) if case.startswith("blank inv") else InvestigationPayload(**data)
    )


@pytest.mark.parametrize("case", sorted(CANNOT_TAKE))
def test_cannot_take_cases_fail_with_a_precise_reason(case: str) -> None:
    with pytest.raises(MappingError, match=re.escape(CANNOT_TAKE[case][1])):
        build_arc_json(cannot_take_payload(case))


@pytest.fixture(scope="module")
def arctrl_worker() -> None:
    init_worker("services.builder.engines.arctrl:build_arc_json")


def test_worker_frames_results_and_hashes_like_the_target_api(arctrl_worker: None) -> None:
    payload = rich_payload()
    result = decode_result(build(orjson.dumps(payload.model_dump(mode="json"))))
    assert result.ok and result.arc_json is not None
    document = json.loads(result.arc_json)

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: strip(v) for k, v in value.items() if k not in ("datePublished", "sdDatePublished", "dateModified")
            }
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    expected = hashlib.sha256(json.dumps(strip(document), sort_keys=True).encode("utf-8")).hexdigest()
    assert result.content_hash == expected
    root = next(n for n in document["@graph"] if n["@id"] == "./")
    root["datePublished"] = root["sdDatePublished"] = "2099-01-01"
    assert content_hash(document) == expected


def test_worker_reports_bad_input_as_payload_errors(arctrl_worker: None) -> None:
    malformed = decode_result(build(b"{not json"))
    assert (malformed.ok, malformed.error_code) == (False, "malformed-json")
    invalid = decode_result(build(orjson.dumps({"identifier": "x", "studies": "nope"})))
    assert invalid.error_code == "schema-violation" and "studies" in (invalid.error_message or "")
    unmappable = decode_result(build(orjson.dumps({"identifier": "x", "studies": [{"identifier": " "}]})))
    assert unmappable.error_code == "mapping-failed"


def test_dates_are_pinned_from_the_payload_never_the_clock() -> None:
    def root(payload: InvestigationPayload) -> dict[str, Any]:
        return next(n for n in json.loads(build_arc_json(payload))["@graph"] if n["@id"] == "./")

    released = root(minimal_payload(submission_date="2020-01-01", public_release_date="2021-02-03"))
    assert (released["datePublished"], released["sdDatePublished"]) == ("2021-02-03", "2021-02-03")
    submitted = root(minimal_payload(submission_date="2020-01-01"))
    assert (submitted["datePublished"], submitted["sdDatePublished"]) == ("2020-01-01", "2020-01-01")
    undated = root(minimal_payload())
    assert (undated["datePublished"], undated["sdDatePublished"]) == (UNDATED, UNDATED)


_BUILD_IN_SUBPROCESS = """
import hashlib, sys
sys.path.insert(0, sys.argv[1])
from builder.conftest import rich_payload
from services.builder.engines.arctrl import build_arc_json
print(hashlib.sha256(build_arc_json(rich_payload()).encode()).hexdigest())
"""


def test_output_is_byte_identical_across_processes() -> None:
    tests_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digests = set()
    for seed in ("1", "2"):
        env = os.environ | {"PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", _BUILD_IN_SUBPROCESS, tests_dir],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        digests.add(done.stdout.strip())
    digests.add(hashlib.sha256(build_arc_json(rich_payload()).encode()).hexdigest())
    assert len(digests) == 1


def test_contract_v2_values_reach_the_arc() -> None:
    """Comments, licence, ORCID, platform accession, protocol columns, design descriptors, ontology sources."""
    table = AnnotationTable(
        target_type="assay",
        target_ref="a1",
        table_name="growth",
        columns=[
            Column(column_type="input", column_io_type="source_name", cells=cells("p1", "p2")),
            Column(column_type="protocol_ref", cells=cells("grow.md", "grow.md")),
            Column(
                column_type="protocol_type",
                cells=[Cell(row_index=r, annotation=OntologyAnnotation(term="growth", uri="DPBO:1")) for r in (0, 1)],
            ),
            Column(column_type="protocol_description", cells=cells("Grow it.", "Grow it.")),
            Column(column_type="protocol_uri", cells=cells("https://example.org/p", "https://example.org/p")),
            Column(column_type="protocol_version", cells=cells("2", "2")),
            Column(column_type="parameter", column_value="Test", cells=cells("1", "2")),
            Column(column_type="parameter", column_value="Test", cells=cells("3", "4")),
            Column(column_type="output", column_io_type="sample_name", cells=cells("s1", "s2")),
        ],
    )
    payload = minimal_payload(
        license="CC-BY-4.0",
        comments=[PayloadComment(name="Funding", value="DFG")],
        studies=[
            Study(
                identifier="s1",
                comments=[PayloadComment(name="Study Funding Agency", value="")],
                design_descriptors=[oa("factorial design", "http://purl.obolibrary.org/obo/OBI_0500014")],
            )
        ],
        assays=[
            Assay(
                identifier="a1",
                study_refs=["s1"],
                technology_platform=oa("HiSeq", "NCIT:C101293", "23"),
                comments=[PayloadComment(name="note", value="n")],
            )
        ],
        contacts=[
            Contact(
                target_type="investigation",
                first_name="Ada",
                last_name="Lovelace",
                orcid="https://orcid.org/0000-0002-1825-0097",
                comments=[PayloadComment(name="ResearcherID", value="A-1")],
            )
        ],
        publications=[
            Publication(target_type="investigation", title="P", comments=[PayloadComment(name="PMCID", value="PMC1")])
        ],
        annotation_tables=[table],
    )
    arc = ARC.from_rocrate_json_string(build_arc_json(payload))
    assert arc.License.Content == "CC-BY-4.0"
    assert comments(arc)["Funding"] == "DFG"
    assert json.loads(comments(arc)["arcstream:ontology-source-references"]) == [
        {"name": "NCIT", "version": "23"},
        {"name": "OBI"},
        {"name": "DPBO"},
    ]
    (study,) = arc.Studies
    assert comments(study)["Study Funding Agency"] == ""
    assert json.loads(comments(study)["arcstream:design-descriptors"]) == [
        {"term": "factorial design", "uri": "http://purl.obolibrary.org/obo/OBI_0500014"}
    ]
    (assay,) = arc.Assays
    assert comments(assay)["note"] == "n"
    assert (assay.TechnologyPlatform.Name, assay.TechnologyPlatform.TermAccessionNumber) == ("HiSeq", "NCIT:C101293")
    (person,) = arc.Contacts
    assert person.ORCID == "0000-0002-1825-0097"
    assert comments(person) == {"ResearcherID": "A-1"}
    assert comments(arc.Publications[0]) == {"PMCID": "PMC1"}
    (got,) = assay.Tables
    headers = [column.header.ToString() for column in got.Columns]
    for header in ("Protocol REF", "Protocol Type", "Protocol Description", "Protocol Uri", "Protocol Version"):
        assert header in headers
    by_header = {column.header.ToString(): [cell.ToString() for cell in column.cells] for column in got.Columns}
    assert by_header["Protocol REF"] == ["grow.md", "grow.md"]
    assert by_header["Protocol Version"] == ["2", "2"]
    test_columns = [
        [cell.ToString() for cell in c.cells] for c in got.Columns if c.header.ToString() == "Parameter [Test]"
    ]
    assert sorted(test_columns) == [["1", "2"], ["3", "4"]]  # equal headers stay two columns
