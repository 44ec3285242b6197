"""Generated demo data: deterministic, realistic, with the real-data quirks."""

from __future__ import annotations

from services.dev.generator import generate, generate_payloads


def test_same_seed_same_data_other_seed_other_data() -> None:
    first = [p.model_dump() for p in generate_payloads(30, seed=4, profile="mixed")]
    again = [p.model_dump() for p in generate_payloads(30, seed=4, profile="mixed")]
    other = [p.model_dump() for p in generate_payloads(30, seed=5, profile="mixed")]
    assert first == again
    assert first != other


def test_investigation_does_not_depend_on_how_many_came_before() -> None:
    assert list(generate(5, 1, "small"))[4] == list(generate(9, 1, "small"))[4]


def test_every_relation_column_type_and_quirk_appears() -> None:
    rows = list(generate(300, seed=1, profile="small"))
    payloads = [r.payload() for r in rows]
    assert all(r.studies and r.assays and r.contacts and r.publications and r.annotation_cells for r in rows)
    column_types = {c.column_type for p in payloads for t in p.annotation_tables for c in t.columns}
    assert column_types == {
        "characteristic",
        "comment",
        "component",
        "date",
        "factor",
        "input",
        "output",
        "parameter",
        "performer",
    }
    io_types = {c.column_io_type for p in payloads for t in p.annotation_tables for c in t.columns}
    assert {"data", "material_name", "sample_name", "source_name"} <= io_types
    assert any(c.annotation and c.annotation.uri for p in payloads for t in p.annotation_tables for c in t.columns)
    assert any(x.annotation for p in payloads for t in p.annotation_tables for c in t.columns for x in c.cells)
    assert any(c.roles for p in payloads for c in p.contacts)
    assert any(p.status for x in payloads for p in x.publications)
    # quirks
    assert any(a["study_ref"] and not a["study_ref"].startswith("[") for r in rows for a in r.assays)
    assert any(len(a.study_refs) > 1 for p in payloads for a in p.assays)
    assert any(len(r.studies) > len(r.payload().studies) for r in rows)
    assert any(c["first_name"] is None for r in rows for c in r.contacts)


def test_profiles_have_their_shapes() -> None:
    small = generate_payloads(50, 1, "small")
    assert all(1 <= len(p.studies) <= 2 for p in small)
    assert max(len(c.cells) for p in small for t in p.annotation_tables for c in t.columns) <= 5
    mixed = generate_payloads(200, 1, "mixed")
    medium = [p for p in mixed if max(len(c.cells) for t in p.annotation_tables for c in t.columns) == 50]
    assert 1 <= len(medium) <= 12
    (large,) = generate_payloads(1, 1, "large")
    assert len(large.studies) == 20 and len(large.assays) == 100
    assert {len(c.cells) for t in large.annotation_tables for c in t.columns} == {200}


def test_contract_2_adds_the_v2_columns_to_the_same_investigations() -> None:
    v1 = list(generate(40, seed=2, profile="small"))
    v2 = list(generate(40, seed=2, profile="small", contract=2))
    assert [r.investigation["identifier"] for r in v1] == [r.investigation["identifier"] for r in v2]
    assert [len(r.studies) for r in v1] == [len(r.studies) for r in v2]
    payloads = [r.payload() for r in v2]
    assert all("T" in (p.submission_date or "") for p in payloads)  # dates with a time of day
    assert all(p.comments and p.ontology_source_references for p in payloads)
    assert any(p.license for p in payloads) and any(p.license is None for p in payloads)
    assert all(s.comments and s.design_descriptors for p in payloads for s in p.studies)
    assert any(not isinstance(a.technology_platform, str | None) for p in payloads for a in p.assays)
    assert any(c.orcid for p in payloads for c in p.contacts)
    assert all(pub.comments for p in payloads for pub in p.publications)
    column_types = {c.column_type for p in payloads for t in p.annotation_tables for c in t.columns}
    assert {"protocol_ref", "protocol_type", "protocol_description", "protocol_version"} <= column_types
    # equal headers at two positions stay two columns (column_index)
    assert all(
        [c.column_value for c in t.columns].count("plant structure") == 2
        for p in payloads
        for t in p.annotation_tables
        if t.target_type == "study"
    )
