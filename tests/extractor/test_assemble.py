"""Grouping annotation cells into tables and columns (the snapshot's hot loop)."""

from __future__ import annotations

from services.extractor.source.assemble import tables_from_cells


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
