"""The builder's decisions for real-data values (one place for both engines), and the warnings naming them."""

from __future__ import annotations

import json

from services.builder.decisions import (
    DESIGN_DESCRIPTORS_COMMENT,
    INVALID_ORCID_COMMENT,
    ONTOLOGY_SOURCES_COMMENT,
    orcid_number,
    prepare,
)
from services.common.payload import (
    AnnotationTable,
    Cell,
    Column,
    Comment,
    Contact,
    OntologySourceReference,
    Publication,
    Study,
)
from services.dev.generator import generate_payloads

from .conftest import cells, minimal_payload, oa

OBO = "http://purl.obolibrary.org/obo/"


def kinds(warnings: tuple[str, ...]) -> list[str]:
    return [warning.partition(":")[0] for warning in warnings]


def test_a_payload_needing_no_decision_comes_back_untouched() -> None:
    for payload in generate_payloads(40, 3, "mixed"):
        prepared = prepare(payload)
        assert prepared.payload is payload
        assert prepared.warnings == ()


def test_untitled_investigation_uses_its_identifier() -> None:
    prepared = prepare(minimal_payload("inv-7", title="  "))
    assert prepared.payload.title == "inv-7"
    assert prepared.warnings == ("untitled-investigation: investigation has no title; its identifier 'inv-7' is used",)


def test_publications_without_title_use_doi_then_pubmed_id_else_are_left_out_by_name() -> None:
    prepared = prepare(
        minimal_payload(
            publications=[
                Publication(target_type="investigation", doi="10.1/x", pubmed_id="1"),
                Publication(target_type="investigation", pubmed_id="42"),
                Publication(target_type="investigation", authors="Roe, J."),
                Publication(target_type="investigation", title="Kept", doi="10.2/y"),
            ]
        )
    )
    assert [p.title for p in prepared.payload.publications] == ["10.1/x", "42", "Kept"]
    assert kinds(prepared.warnings) == ["untitled-publication", "untitled-publication", "dropped-publication"]
    assert "'Roe, J.'" in prepared.warnings[2]


def test_nameless_contacts_are_identified_by_orcid_or_a_stand_in_else_left_out_by_name() -> None:
    prepared = prepare(
        minimal_payload(
            contacts=[
                Contact(target_type="investigation", orcid="0000-0002-1825-0097", email="x@y.org"),
                Contact(target_type="investigation", email="lab@example.org"),
                Contact(target_type="investigation", affiliation="Institute"),
                Contact(target_type="investigation", roles=[oa("curator")]),
                Contact(target_type="investigation", last_name="Curie"),
            ]
        )
    )
    assert [(c.first_name, c.last_name) for c in prepared.payload.contacts] == [
        ("", None),
        ("lab@example.org", None),
        ("Institute", None),
        (None, "Curie"),  # a missing first name alone is the known quirk, mapped as an empty given name
    ]
    assert kinds(prepared.warnings) == ["nameless-contact", "nameless-contact", "nameless-contact", "dropped-contact"]


def test_invalid_orcid_becomes_a_comment_and_urls_are_accepted() -> None:
    assert orcid_number("https://orcid.org/0000-0002-1825-0097") == "0000-0002-1825-0097"
    assert orcid_number("0000-0002-1825-009X") == "0000-0002-1825-009X"
    assert orcid_number("1234") is None
    prepared = prepare(
        minimal_payload(contacts=[Contact(target_type="investigation", first_name="A", orcid="orcid: 1234")])
    )
    (contact,) = prepared.payload.contacts
    assert contact.orcid is None
    assert contact.comments == [Comment(name=INVALID_ORCID_COMMENT, value="orcid: 1234")]
    assert kinds(prepared.warnings) == ["invalid-orcid"]


def test_nameless_comments_are_left_out_by_name_everywhere() -> None:
    nameless = [Comment(name="ok", value="1"), Comment(name=" ", value="lost?")]
    prepared = prepare(
        minimal_payload(
            comments=nameless,
            studies=[Study(identifier="s1", comments=nameless)],
            contacts=[Contact(target_type="investigation", first_name="A", comments=nameless)],
            publications=[Publication(target_type="investigation", title="T", comments=nameless)],
        )
    )
    payload = prepared.payload
    for item in (payload, payload.studies[0], payload.contacts[0], payload.publications[0]):
        assert item.comments == [Comment(name="ok", value="1")]
    assert kinds(prepared.warnings) == ["nameless-comment"] * 4
    assert all("'lost?'" in warning for warning in prepared.warnings)


def test_ontology_sources_and_design_descriptors_travel_as_documented_comments() -> None:
    prepared = prepare(
        minimal_payload(
            ontology_source_references=[OntologySourceReference(name="NCBITaxon", file="http://x/t.owl")],
            studies=[Study(identifier="s1", design_descriptors=[oa("factorial design", f"{OBO}OBI_0500014")])],
            contacts=[Contact(target_type="investigation", first_name="A", roles=[oa("pi", f"{OBO}MS_1", "4.1")])],
        )
    )
    sources = {c.name: c.value for c in prepared.payload.comments}[ONTOLOGY_SOURCES_COMMENT]
    assert json.loads(sources or "") == [
        {"name": "NCBITaxon", "file": "http://x/t.owl"},
        {"name": "OBI"},
        {"name": "MS", "version": "4.1"},
    ]
    descriptors = {c.name: c.value for c in prepared.payload.studies[0].comments}[DESIGN_DESCRIPTORS_COMMENT]
    assert json.loads(descriptors or "") == [{"term": "factorial design", "uri": f"{OBO}OBI_0500014"}]
    assert prepared.warnings == ()


def test_a_version_without_an_ontology_to_attach_it_to_is_named() -> None:
    prepared = prepare(
        minimal_payload(contacts=[Contact(target_type="investigation", first_name="A", roles=[oa("pi", None, "1")])])
    )
    assert kinds(prepared.warnings) == ["unsourced-version"]
    assert ONTOLOGY_SOURCES_COMMENT not in {c.name for c in prepared.payload.comments}


def test_repeated_single_use_columns_become_numbered_comment_columns() -> None:
    table = AnnotationTable(
        target_type="study",
        target_ref="s1",
        table_name="t",
        columns=[
            Column(column_type="output", column_io_type="sample_name", cells=cells("a")),
            Column(column_type="output", column_io_type="data", cells=cells("f.csv")),
            Column(column_type="output", cells=cells("c")),
            Column(column_type="comment", column_value="note", cells=cells("x")),
            Column(column_type="comment", column_value="note", cells=cells("y")),
            Column(column_type="comment", column_value="other", cells=cells("z")),
            Column(column_type="date", cells=cells("2021-01-01")),
            Column(column_type="date", cells=cells("2021-01-02")),
            Column(column_type="protocol_type", cells=[Cell(row_index=0, annotation=oa("growth", "EFO:1"))]),
            Column(column_type="protocol_type", cells=[Cell(row_index=0, annotation=oa("assay", "DPBO:2"))]),
            Column(column_type="parameter", column_value="p", cells=cells("1")),
            Column(column_type="parameter", column_value="p", cells=cells("2")),
        ],
    )
    prepared = prepare(minimal_payload(studies=[Study(identifier="s1")], annotation_tables=[table]))
    columns = prepared.payload.annotation_tables[0].columns
    assert [(c.column_type, c.column_value) for c in columns] == [
        ("output", None),
        ("comment", "arcstream:Output [Data] #2"),
        ("comment", "arcstream:Output [Sample Name] #3"),
        ("comment", "note"),
        ("comment", "arcstream:Comment [note] #2"),
        ("comment", "other"),
        ("date", None),
        ("comment", "arcstream:Date #2"),
        ("protocol_type", None),
        ("comment", "arcstream:Protocol Type #2"),
        ("parameter", "p"),  # term columns may repeat: arctrl keeps both
        ("parameter", "p"),
    ]
    assert columns[9].cells == [Cell(row_index=0, value="assay <DPBO:2>")]
    assert kinds(prepared.warnings) == ["repeated-column"] * 5
