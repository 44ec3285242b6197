"""Annotation tables -> arctrl's ``LabProcess`` nodes, one per row, and the data files they touch.

Mirrors the reference mapping (:mod:`services.builder.engines.arctrl.tables`) followed by
arctrl's ``ArcTable.GetProcesses``: every row is a process named
``<table>_<row>`` with id
``#Process_A_<assay>_<table>_<row>`` (``_S_`` for a study); its object is the
input (carrying the characteristic values), its result the output (carrying
the factor values), parameter values hang on the process, components on the
``#Protocol_<table>`` node, comment and date columns become
``disambiguatingDescription`` strings, a performer becomes the agent. A table
without rows is one empty process. Data file names are made relative to the
owner's folder (``assays/<id>/dataset/``, ``studies/<id>/resources/``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.builder.decisions import DATE_COMMENT
from services.builder.engines.fast.graph import Node, put
from services.builder.engines.fast.persons import performer
from services.builder.engines.fast.terms import comment_text, defined_term, has_tan_info, property_value, tan_url
from services.common.payload import AnnotationTable, Cell, Column

#: Column type -> arctrl property value kind; these are arctrl's "CvParam" columns, counted by ``columnIndex``.
TERM_KINDS = {
    "characteristic": "CharacteristicValue",
    "factor": "FactorValue",
    "parameter": "ParameterValue",
    "component": "Component",
}
#: io type -> (RO-Crate id prefix, additionalType) of an input/output name node.
SAMPLE_KINDS = {"source_name": "Source", "sample_name": "Sample", "material_name": "Material"}
DEFAULT_IO = {"input": "source_name", "output": "sample_name"}
#: Folder data file names are relative to, per owner kind.
DATA_FOLDERS = {"assay": "assays/{}/dataset/", "study": "studies/{}/resources/"}
#: Data paths arctrl leaves as they are: ARC folders and URLs ...
KEPT_PREFIXES = ("assays/", "studies/", "workflows/", "runs/", "http:", "https:")
#: ... and files at the ARC's root (``LICENSE`` too when the ARC has a licence: :mod:`support` sends that to arctrl).
ROOT_FILES = frozenset({"isa.investigation.xlsx"})
#: Protocol columns with free-text cells, by the protocol property they fill.
PROTOCOL_TEXT = {"protocol_ref": "name", "protocol_description": "description", "protocol_uri": "url"}


def data_path(value: str, folder: str) -> str:
    """arctrl's ``Data.GetAbsolutePathFor{Assay,Study}`` for the names :mod:`support` lets through."""
    path = value.lstrip("/")
    if path.startswith("./"):
        path = path[2:]
    if path.startswith(KEPT_PREFIXES) or path in ROOT_FILES:
        return path
    return folder + path.lstrip("/")


@dataclass(frozen=True)
class _Term:
    """A term column: arctrl kind, header name and property id, index among term columns."""

    kind: str
    name: str
    property_id: str | None
    index: str


def _term_header(column: Column, index: int) -> _Term:
    annotation = column.annotation
    if annotation is not None:
        name = annotation.term
        property_id = tan_url(annotation.uri) if has_tan_info(annotation.uri) else None
    else:
        name, property_id = column.column_value or "", None
    return _Term(TERM_KINDS[column.column_type], name, property_id, str(index))


def _term_value(term: _Term, cell: Cell | None) -> Node:
    """``BaseTypes.compose<Kind>`` of the cell the reference mapping builds (term or unitized)."""
    value = unit_text = unit_code = reference = None
    if cell is not None and cell.annotation is None:
        value = cell.value or None
    elif cell is not None and cell.annotation is not None:
        annotation = cell.annotation
        if cell.value is None or cell.value == annotation.term:
            value = annotation.term
            reference = tan_url(annotation.uri) if has_tan_info(annotation.uri) else None
        else:
            value = cell.value or None
            unit_text, unit_code = annotation.term, tan_url(annotation.uri)
    node = property_value(term.kind, term.name, value, term.property_id, unit_code, unit_text, reference)
    node["columnIndex"] = term.index
    return node


def _protocol_type(cell: Cell | None) -> Node:
    """The ``intendedUse`` term of a Protocol Type cell (as the reference mapping builds the term cell)."""
    if cell is None or (cell.value is None and cell.annotation is None):
        return defined_term("", None)
    if cell.annotation is None:
        return defined_term(cell.value or "", None)
    return defined_term(cell.annotation.term, cell.annotation.uri)


class _Io:
    """An input or output column: builds the node of each row's cell."""

    def __init__(self, column: Column, kind: str, folder: str) -> None:
        self.io_type = column.column_io_type or DEFAULT_IO[kind]
        self.folder = folder
        # arctrl writes an output Source Name as a Sample.
        self.sample_kind = (
            "Sample" if kind == "output" and self.io_type == "source_name" else SAMPLE_KINDS.get(self.io_type)
        )

    def node(self, cell: Cell | None) -> Node:
        name = cell.value if cell is not None and cell.value is not None else ""
        if self.io_type == "data":
            path = data_path(name, self.folder)
            return {"@id": path, "@type": "File", "name": path}
        kind = self.sample_kind or ""
        return {"@id": f"#{kind}_{name}".replace(" ", "_"), "@type": "Sample", "additionalType": kind, "name": name}


def _sample(name: str, properties: list[Node]) -> Node:
    node: Node = {"@id": f"#Sample_{name}".replace(" ", "_"), "@type": "Sample", "additionalType": "Sample"}
    node["name"] = name
    node["additionalProperty"] = properties
    return node


class DataFiles:
    """The distinct data file nodes of one study or assay, in order of first use (arctrl's ``hasPart``).

    arctrl de-duplicates them structurally; so does this, by id first, so it stays linear.
    """

    def __init__(self) -> None:
        self.files: list[Node] = []
        self._by_id: dict[str, list[Node]] = {}

    def add(self, node: Node) -> None:
        if node["@type"] != "File":
            return
        variants = self._by_id.setdefault(node["@id"], [])
        if not any(node == seen for seen in variants):
            variants.append(node)
            self.files.append(node)


def table_processes(table: AnnotationTable, owner_id: str, files: DataFiles) -> list[Node]:
    """The process nodes of one table of a study or assay with (encoded) identifier ``owner_id``."""
    name = table.table_name
    rows = 1 + max((cell.row_index for column in table.columns for cell in column.cells), default=-1)
    if rows == 0:
        empty = f"{name}_0"
        return [
            {
                "@id": f"#Process_{empty}".replace(" ", "_"),
                "@type": "LabProcess",
                "name": empty,
                "object": [],
                "result": [],
            }
        ]
    folder = DATA_FOLDERS[table.target_type].format(owner_id)
    tag = "A" if table.target_type == "assay" else "S"
    id_root = f"#Process_{tag}_{owner_id}_{name}".replace(" ", "_")

    by_row = [{cell.row_index: cell for cell in column.cells} for column in table.columns]
    chars: list[tuple[int, _Term]] = []
    factors: list[tuple[int, _Term]] = []
    parameters: list[tuple[int, _Term]] = []
    components: list[tuple[int, _Term]] = []
    comments: list[tuple[int, str]] = []
    groups = {"characteristic": chars, "factor": factors, "parameter": parameters, "component": components}
    inputs: tuple[int, _Io] | None = None
    outputs: tuple[int, _Io] | None = None
    agent: int | None = None
    protocol_text: dict[str, int] = {}
    protocol_type: int | None = None
    version: int | None = None
    term_index = 0
    for position, column in enumerate(table.columns):
        kind = column.column_type
        if kind in TERM_KINDS:
            groups[kind].append((position, _term_header(column, term_index)))
            term_index += 1
        elif kind == "comment":
            comments.append((position, column.column_value or ""))
        elif kind == "date":
            comments.append((position, DATE_COMMENT))
        elif kind == "input":
            inputs = (position, _Io(column, kind, folder))
        elif kind == "output":
            outputs = (position, _Io(column, kind, folder))
        elif kind in PROTOCOL_TEXT:
            protocol_text.setdefault(PROTOCOL_TEXT[kind], position)
        elif kind == "protocol_type":
            protocol_type = position if protocol_type is None else protocol_type
        elif kind == "protocol_version":
            version = position if version is None else version
        elif agent is None:
            agent = position

    has_protocol_columns = bool(protocol_text) or protocol_type is not None or version is not None
    protocol_id = f"#Protocol_{name}".replace(" ", "_")

    def text(position: int, row: int) -> str:
        cell = by_row[position].get(row)
        return cell.value if cell is not None and cell.value is not None else ""

    processes: list[Node] = []
    for row in range(rows):
        row_chars = [_term_value(term, by_row[pos].get(row)) for pos, term in chars]
        row_factors = [_term_value(term, by_row[pos].get(row)) for pos, term in factors]
        objects = _io_nodes(inputs, row, by_row, row_chars, f"{name}_Input_{row}")
        results = _io_nodes(outputs, row, by_row, row_factors, f"{name}_Output_{row}")
        if has_protocol_columns:
            equipment = [_term_value(term, by_row[pos].get(row)) for pos, term in components] or None
            protocol = _protocol(protocol_text, protocol_type, version, row, name, text, by_row, equipment)
        else:  # the common case, kept cheap: one protocol per table
            protocol = {"@id": protocol_id, "@type": "LabProtocol"}
            if components:
                protocol["labEquipment"] = [_term_value(term, by_row[pos].get(row)) for pos, term in components]
        process: Node = {"@id": f"{id_root}_{row}", "@type": "LabProcess", "name": f"{name}_{row}"}
        if agent is not None:
            process["agent"] = performer(text(agent, row))
        process["object"] = objects
        process["result"] = results
        process["executesLabProtocol"] = protocol
        if parameters:
            process["parameterValue"] = [_term_value(term, by_row[pos].get(row)) for pos, term in parameters]
        put(process, "disambiguatingDescription", [comment_text(c, text(pos, row)) for pos, c in comments] or None)
        for node in (*objects, *results):
            files.add(node)
        processes.append(process)
    return processes


def _protocol(
    protocol_text: dict[str, int],
    protocol_type: int | None,
    version: int | None,
    row: int,
    table_name: str,
    text: Callable[[int, int], str],
    by_row: list[dict[int, Cell]],
    equipment: list[Node] | None,
) -> Node:
    """``LDLabProtocol.create`` for one row: the id from its Protocol REF, then the properties in arctrl's order."""
    values = {prop: text(position, row) for prop, position in protocol_text.items()}
    ref = values.get("name")
    protocol_id = "_".join(["#Protocol", *([ref] if ref is not None else []), table_name]).replace(" ", "_")
    protocol: Node = {"@id": protocol_id, "@type": "LabProtocol"}
    put(protocol, "name", ref)
    put(protocol, "description", values.get("description"))
    if protocol_type is not None:
        protocol["intendedUse"] = _protocol_type(by_row[protocol_type].get(row))
    put(protocol, "labEquipment", equipment)
    put(protocol, "url", values.get("url"))
    if version is not None:
        protocol["version"] = text(version, row)
    return protocol


def _io_nodes(
    io: tuple[int, _Io] | None, row: int, by_row: list[dict[int, Cell]], properties: list[Node], fallback: str
) -> list[Node]:
    """A row's input (output) node carrying its characteristics (factors); a stand-in sample if no column."""
    if io is None:
        return [_sample(fallback, properties)] if properties else []
    position, builder = io
    node = builder.node(by_row[position].get(row))
    if properties:
        node["additionalProperty"] = properties
    return [node]


def owner_processes(tables: list[AnnotationTable], owner_id: str) -> tuple[list[Node], list[Node]]:
    """All processes of a study's or assay's tables, in table order, and its data files."""
    files = DataFiles()
    processes: list[Any] = []
    for table in tables:
        processes += table_processes(table, owner_id, files)
    return processes, files.files
