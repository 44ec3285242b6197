"""Payload annotation tables to arctrl ``ArcTable`` objects, cell by cell.

Headers: characteristic / factor / parameter / component carry an ontology
annotation (the term names the header, the URI is its accession); comment uses
``column_value`` as its name; input / output use the io type (``source_name``,
``sample_name``, ``material_name``, ``data``; none given means Source Name for
an input and Sample Name for an output, as upstream); performer is plain; date
becomes the comment column :data:`DATE_COMMENT` because arctrl's RO-Crate
writer silently drops Date columns; the ISA protocol columns (contract v2) are
arctrl's Protocol REF / Type / Description / Uri / Version. Cells of term
columns (and Protocol Type) become terms (an annotation whose term equals the
value, or a bare value as a free-text term) or unitized values (a value plus a
different annotation, the unit; an empty value is a unit without value); data
columns get data cells; everything else free text. Equal headers at two
positions are two columns (arctrl allows that for all but single-use columns,
which the builder's decisions have already turned into comment columns).
Whatever arctrl would refuse or silently merge raises :class:`MappingError`
naming the table, column and row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from arctrl import ArcTable, CompositeCell, CompositeHeader, IOType

from services.builder.decisions import DATE_COMMENT
from services.builder.engines.arctrl.ontology import named, term, to_arctrl
from services.common.errors import MappingError
from services.common.payload import AnnotationTable, Cell, Column

_TERM_COLUMNS: dict[str, Callable[..., CompositeHeader]] = {
    "characteristic": CompositeHeader.characteristic,
    "factor": CompositeHeader.factor,
    "parameter": CompositeHeader.parameter,
    "component": CompositeHeader.component,
}
#: Protocol columns without header annotation; Protocol Type holds terms, the others free text.
_PROTOCOL_COLUMNS: dict[str, Callable[[], CompositeHeader]] = {
    "protocol_ref": CompositeHeader.protocol_ref,
    "protocol_type": CompositeHeader.protocol_type,
    "protocol_description": CompositeHeader.protocol_description,
    "protocol_uri": CompositeHeader.protocol_uri,
    "protocol_version": CompositeHeader.protocol_version,
}
_IO_TYPES: dict[str, Callable[[], IOType]] = {
    "source_name": IOType.source,
    "sample_name": IOType.sample,
    "material_name": IOType.material,
    "data": IOType.data,
}
#: RO-Crate ``@id`` prefix arctrl gives the node of an input/output name, per io type.
_NODE_KIND = {"source_name": "Source", "sample_name": "Sample", "material_name": "Material"}
_DEFAULT_IO = {"input": "source_name", "output": "sample_name"}


@dataclass
class NodeNames:
    """Input/output names seen across one investigation, by the RO-Crate ``@id`` arctrl gives them.

    arctrl builds node ids from names with only spaces replaced, so ``s 1`` and
    ``s_1`` become one node; the same name in two tables is one node on purpose.
    """

    by_id: dict[str, tuple[str, str]] = field(default_factory=dict)

    def add(self, io_type: str, name: str, where: str) -> None:
        kind = _NODE_KIND.get(io_type)
        if kind is None or not name:
            return
        node_id = f"#{kind}_{name.replace(' ', '_')}"
        seen = self.by_id.setdefault(node_id, (name, where))
        if seen[0] != name:
            raise MappingError(
                f"{where}: {io_type} '{name}' and '{seen[0]}' ({seen[1]}) would become the same "
                f"RO-Crate node '{node_id}'"
            )


def _column_label(table: AnnotationTable, index: int, column: Column) -> str:
    where = f"{table.target_type} '{table.target_ref}' table '{table.table_name}'"
    return f"{where} column {index} ({column.column_type})"


def _term_header(column: Column, label: str) -> CompositeHeader:
    annotation = column.annotation
    value = (column.column_value or "").strip() or None
    if annotation is not None and value is not None and value != annotation.term:
        raise MappingError(
            f"{label}: column_value '{column.column_value}' and annotation term '{annotation.term}' disagree"
        )
    if annotation is not None:
        oa = to_arctrl(annotation)
    elif value is not None:
        oa = named(column.column_value or "")
    else:
        raise MappingError(f"{label}: header has neither column_value nor annotation")
    return _TERM_COLUMNS[column.column_type](oa)


def _header(column: Column, label: str) -> tuple[CompositeHeader, str | None]:
    """The arctrl header and, for input/output columns, the io type used."""
    kind = column.column_type
    if kind in _TERM_COLUMNS:
        return _term_header(column, label), None
    if column.annotation is not None:
        raise MappingError(f"{label}: a {kind} column cannot carry an ontology annotation")
    if kind == "comment":
        if not (column.column_value or "").strip():
            raise MappingError(f"{label}: comment column without a name (column_value)")
        return CompositeHeader.comment(column.column_value), None
    if kind in ("input", "output"):
        io_type = column.column_io_type or _DEFAULT_IO[kind]
        io = _IO_TYPES[io_type]()
        header = CompositeHeader.input(io) if kind == "input" else CompositeHeader.output(io)
        return header, io_type
    if kind == "date":
        return CompositeHeader.comment(DATE_COMMENT), None
    if kind in _PROTOCOL_COLUMNS:
        return _PROTOCOL_COLUMNS[kind](), None
    return CompositeHeader.performer(), None


def _term_cell(cell: Cell | None) -> CompositeCell:
    if cell is None or (cell.value is None and cell.annotation is None):
        return CompositeCell.term(named(""))
    if cell.annotation is None:
        return CompositeCell.term(named(cell.value or ""))
    if cell.value is None or cell.value == cell.annotation.term:
        return CompositeCell.term(term(cell.annotation))
    return CompositeCell.unitized(cell.value, term(cell.annotation))


def _plain_cell(cell: Cell | None, label: str, data: bool) -> CompositeCell:
    if cell is not None and cell.annotation is not None:
        raise MappingError(f"{label} row {cell.row_index}: a free-text cell cannot carry an annotation")
    value = cell.value if cell is not None and cell.value is not None else ""
    return CompositeCell.create_data_from_string(value) if data else CompositeCell.free_text(value)


def _cells_by_row(column: Column, label: str) -> dict[int, Cell]:
    by_row: dict[int, Cell] = {}
    for cell in column.cells:
        if cell.row_index in by_row:
            raise MappingError(f"{label}: two cells for row {cell.row_index}")
        by_row[cell.row_index] = cell
    return by_row


def build_table(table: AnnotationTable, nodes: NodeNames) -> ArcTable:
    """One arctrl table; rows are ``0..max(row_index)``, missing cells stay empty."""
    if not table.table_name.strip():
        raise MappingError(f"{table.target_type} '{table.target_ref}' has a table without a name")
    rows = 1 + max((cell.row_index for column in table.columns for cell in column.cells), default=-1)
    arc_table = ArcTable.init(table.table_name)
    for index, column in enumerate(table.columns):
        label = _column_label(table, index, column)
        header, io_type = _header(column, label)
        by_row = _cells_by_row(column, label)
        if column.column_type in _TERM_COLUMNS or column.column_type == "protocol_type":
            cells = [_term_cell(by_row.get(row)) for row in range(rows)]
        else:
            cells = [_plain_cell(by_row.get(row), label, data=io_type == "data") for row in range(rows)]
        if io_type is not None:
            # arctrl writes an Output [Source Name] as a Sample node, so it can clash with sample names.
            node_type = "sample_name" if column.column_type == "output" and io_type == "source_name" else io_type
            for cell in by_row.values():
                nodes.add(node_type, cell.value or "", label)
        try:
            arc_table.AddColumn(header, cells)
        except Exception as exc:  # arctrl raises plain Exception for invalid columns
            raise MappingError(f"{label}: arctrl refused the column: {exc}") from exc
    return arc_table
