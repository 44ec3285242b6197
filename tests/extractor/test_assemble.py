"""Grouping annotation cells into tables and columns (the snapshot's hot loop)."""

from __future__ import annotations

import pytest

from services.common.payload import InvestigationPayload
from services.extractor.source.assemble import (
    AssemblyError,
    CellLayout,
    assemble,
    comments,
    ontology_source_references,
    tables_from_cells,
    technology_platform,
)


def _cell(row_index: int, value: object, column_term: str | None, column_uri: str | None) -> tuple[object, ...]:
    return (
        "inv-1",
        "assay",
        "a1",
        "measurements",
        "characteristic",
        None,
        "organism",
        column_term,
        column_uri,
        None,
        row_index,
        value,
        "Homo sapiens" if row_index == 2 else None,
        "http://purl.obolibrary.org/obo/NCBITaxon_9606" if row_index == 2 else None,
        None,
    )


def test_raw_columns_that_name_the_same_column_share_it_in_row_order() -> None:
    # An empty or blank term is no annotation, whatever the URI says: all three rows are one column.
    rows = [_cell(0, "a", "", "http://x/1"), _cell(1, 7, None, None), _cell(2, "c", "  ", "http://x/2")]
    (table,) = tables_from_cells(rows)
    (column,) = table["columns"]
    assert column["annotation"] is None
    assert [cell["row_index"] for cell in column["cells"]] == [0, 1, 2]
    assert [cell["value"] for cell in column["cells"]] == ["a", "7", "c"]
    assert column["cells"][2]["annotation"] == {
        "term": "Homo sapiens",
        "uri": "http://purl.obolibrary.org/obo/NCBITaxon_9606",
        "version": None,
    }


def test_an_annotated_header_is_a_column_of_its_own() -> None:
    rows = [_cell(0, "a", None, None), _cell(1, "b", "organism", "http://x/o"), _cell(2, "c", None, None)]
    (table,) = tables_from_cells(rows)
    plain, annotated = table["columns"]
    assert [cell["value"] for cell in plain["cells"]] == ["a", "c"]
    assert annotated["annotation"] == {"term": "organism", "uri": "http://x/o", "version": None}
    assert [cell["value"] for cell in annotated["cells"]] == ["b"]


# -- contract v2 ------------------------------------------------------------------------------------

V2 = CellLayout(column_index=True)


def _v2_cell(
    column_index: int | None,
    row_index: int,
    value: object,
    column_type: str | None = "parameter",
    column_value: str | None = "Test",
    table: str = "growth",
) -> tuple[object, ...]:
    """A cell row as the loader reads it when ``column_index`` exists: it sits right before ``row_index``."""
    column = (column_type, None, column_value, None, None, None)
    return ("inv-1", "study", "s1", table, *column, column_index, row_index, value, None, None, None)


def test_equal_headers_at_two_positions_are_two_columns_in_position_order() -> None:
    rows = [
        _v2_cell(5, 0, "b0"),
        _v2_cell(2, 0, "a0"),
        _v2_cell(2, 1, "a1"),
        _v2_cell(5, 1, "b1"),
        _v2_cell(0, 0, "src", column_type="input", column_value=None),
    ]
    (table,) = tables_from_cells(rows, V2)
    assert [(c["column_type"], [cell["value"] for cell in c["cells"]]) for c in table["columns"]] == [
        ("input", ["src"]),
        ("parameter", ["a0", "a1"]),
        ("parameter", ["b0", "b1"]),
    ]


def test_v1_layout_merges_equal_headers_as_before() -> None:
    rows = [row[:10] + row[11:] for row in (_v2_cell(2, 0, "a0"), _v2_cell(5, 1, "b1"))]
    (table,) = tables_from_cells(rows)
    (column,) = table["columns"]
    assert [cell["value"] for cell in column["cells"]] == ["a0", "b1"]


def test_a_row_without_column_type_declares_a_table_without_columns() -> None:
    rows = [_v2_cell(None, 0, None, column_type=None, column_value=None, table="empty"), _v2_cell(0, 0, "x")]
    empty, growth = tables_from_cells(rows, V2)
    assert (empty["table_name"], empty["columns"]) == ("empty", [])
    assert len(growth["columns"]) == 1
    with pytest.raises(AssemblyError, match="cell without column_type"):
        tables_from_cells([_v2_cell(None, 0, "lost", column_type=None, column_value=None)], V2)


def test_v2_json_columns_in_every_accepted_form() -> None:
    assert comments('[{"name": "a", "value": 1}]') == [{"name": "a", "value": "1"}]
    assert comments({"a": "x", "b": None}) == [{"name": "a", "value": "x"}, {"name": "b", "value": None}]
    assert comments(None) == []
    with pytest.raises(AssemblyError, match="comments must be a list"):
        comments('"just text"')
    assert ontology_source_references([{"name": "OBI", "version": "2024"}, {"name": ""}]) == [
        {"name": "OBI", "file": None, "version": "2024", "description": None}
    ]


def test_technology_platform_is_a_name_unless_the_v2_columns_say_more() -> None:
    assert technology_platform({"technology_platform": "HiSeq"}) == "HiSeq"
    v2_empty = {"technology_platform": "HiSeq", "technology_platform_uri": None, "technology_platform_version": None}
    assert technology_platform(v2_empty) == "HiSeq"
    assert technology_platform(v2_empty | {"technology_platform_uri": "NCIT:C101293"}) == {
        "term": "HiSeq",
        "uri": "NCIT:C101293",
        "version": None,
    }


def test_a_v2_investigation_assembles_every_optional_column() -> None:
    document = assemble(
        {
            "identifier": "inv-1",
            "title": "T",
            "submission_date": "2025-07-31T17:41:41.5577612",
            "comments": [{"name": "Funding", "value": "DFG"}],
            "license": "CC0-1.0",
            "ontology_source_references": '[{"name": "OBI", "file": "obi.owl"}]',
        },
        studies=[
            {
                "identifier": "s1",
                "comments": None,
                "design_descriptors": [{"term": "factorial design", "uri": "OBI:0500014"}],
            }
        ],
        contacts=[{"target_type": "investigation", "first_name": "A", "orcid": "0000-0002-1825-0097", "comments": {}}],
        publications=[{"target_type": "investigation", "title": "P", "comments": [{"name": "PMCID"}]}],
    )
    payload = InvestigationPayload.model_validate(document)
    assert payload.submission_date == "2025-07-31T17:41:41.5577612"
    assert (payload.license, payload.comments[0].value, payload.ontology_source_references[0].file) == (
        "CC0-1.0",
        "DFG",
        "obi.owl",
    )
    assert payload.studies[0].design_descriptors[0].uri == "OBI:0500014"
    assert payload.contacts[0].orcid == "0000-0002-1825-0097"
    assert payload.publications[0].comments[0].name == "PMCID"
