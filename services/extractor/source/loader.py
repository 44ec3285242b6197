"""Load whole investigations from the source relations, a batch at a time.

Used by both the snapshot extractor and the CDC extractor, so a payload is the
same whichever path produced it. For a batch of investigations the children
are read with one query per relation (``investigation_ref = ANY(%s)``): the
number of statements grows with batches, not investigations, and nothing
loads a whole table.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row, tuple_row

from services.common.payload import encode_document
from services.extractor.source.assemble import AssemblyError, CellLayout, assemble
from services.extractor.source.schema import CHILD_RELATIONS, CONTRACT, selected_columns

Row = Mapping[str, Any]
#: The relation with one row per annotation table cell.
CELLS = "vAnnotationTable"
#: relation -> investigation identifier -> rows
Children = dict[str, dict[str, list[Any]]]


@dataclass(frozen=True)
class LoadResult:
    """One investigation: its validated payload as JSON, or why it could not be assembled."""

    identifier: str
    payload_json: bytes | None = None
    error: str | None = None


def relation_query(
    relation: str, ordered_by_id: bool, where: str, columns: Sequence[str] | None = None
) -> sql.Composed:
    """``SELECT <columns> FROM "<relation>" WHERE <where> [ORDER BY id]`` (default: the v1 contract columns)."""
    order = (
        sql.SQL(" ORDER BY {}, {}").format(sql.Identifier(where), sql.Identifier("id"))
        if ordered_by_id
        else sql.SQL("")
    )
    return sql.SQL("SELECT {cols} FROM {rel} WHERE {key} = ANY(%s){order}").format(
        cols=sql.SQL(", ").join(sql.Identifier(name) for name in (columns or CONTRACT[relation])),
        rel=sql.Identifier(relation),
        key=sql.Identifier(where),
        order=order,
    )


def investigation_query(shard: int = 0, shards: int = 1, columns: Sequence[str] | None = None) -> sql.Composed:
    """Investigations in identifier order; with ``shards`` > 1 only those whose identifier hashes to ``shard``.

    ``columns`` defaults to the v1 contract columns (pass :meth:`PayloadLoader.investigation_columns`).
    """
    where = (
        sql.SQL(" WHERE ((hashtext(identifier) % {n}) + {n}) % {n} = {i}").format(
            n=sql.Literal(shards), i=sql.Literal(shard)
        )
        if shards > 1
        else sql.SQL("")
    )
    return sql.SQL("SELECT {cols} FROM {rel}{where} ORDER BY identifier").format(
        cols=sql.SQL(", ").join(sql.Identifier(name) for name in (columns or CONTRACT["vInvestigation"])),
        rel=sql.Identifier("vInvestigation"),
        where=where,
    )


class PayloadLoader:
    """Loads children for batches of investigation rows and assembles payloads.

    ``columns`` (from :func:`check_source_contract`) tells which relations have
    a surrogate ``id`` to order rows by (without one, the database's order is
    used) and which optional contract v2 columns to read: the queries are
    fixed here, once, so v2 costs no query of its own.
    """

    def __init__(self, columns: Mapping[str, set[str]]) -> None:
        self._child_queries = {
            relation: relation_query(
                relation,
                "id" in columns.get(relation, set()),
                "investigation_ref",
                selected_columns(relation, columns),
            )
            for relation in CHILD_RELATIONS
        }
        self.investigation_columns = selected_columns("vInvestigation", columns)
        self._by_identifier = relation_query("vInvestigation", False, "identifier", self.investigation_columns)
        self._cells = CellLayout(column_index="column_index" in columns.get(CELLS, set()))

    async def fetch_children(self, conn: psycopg.AsyncConnection, identifiers: Sequence[str]) -> Children:
        """Child rows of these investigations, one query per relation, grouped by investigation.

        The queries go out together in one pipeline: the server works through all
        of them while the caller is busy, instead of waiting for one round trip each.
        Cells are the bulk of the rows: they stay tuples (``investigation_ref`` first).
        """
        keys = (list(identifiers),)
        async with conn.pipeline():
            queued = [
                (relation, await conn.cursor(row_factory=dict_row).execute(query, keys))
                for relation, query in self._child_queries.items()
                if relation != CELLS
            ]
            cells = await conn.cursor(row_factory=tuple_row).execute(self._child_queries[CELLS], keys)
            children: Children = {}
            for relation, cursor in queued:
                grouped: dict[str, list[Any]] = defaultdict(list)
                for row in await cursor.fetchall():
                    grouped[row["investigation_ref"]].append(row)
                children[relation] = grouped
                await cursor.close()
            grouped = defaultdict(list)
            for cell in await cells.fetchall():
                grouped[cell[0]].append(cell)
            children[CELLS] = grouped
            await cells.close()
        return children

    def assemble_batch(self, investigations: Sequence[Row], children: Children) -> list[LoadResult]:
        """Payloads (or reasons) for investigation rows whose children were fetched."""
        results = []
        for row in investigations:
            identifier = str(row["identifier"])
            try:
                payload = assemble(
                    row,
                    studies=children["vStudy"].get(identifier, ()),
                    assays=children["vAssay"].get(identifier, ()),
                    contacts=children["vContact"].get(identifier, ()),
                    publications=children["vPublication"].get(identifier, ()),
                    annotation_cells=children[CELLS].get(identifier, ()),
                    cell_layout=self._cells,
                )
            except AssemblyError as exc:
                results.append(LoadResult(identifier, error=str(exc)))
            else:
                results.append(LoadResult(identifier, payload_json=encode_document(payload)))
        return results

    async def load_batch(self, conn: psycopg.AsyncConnection, investigations: Sequence[Row]) -> list[LoadResult]:
        """Payloads for these investigation rows."""
        children = await self.fetch_children(conn, [str(row["identifier"]) for row in investigations])
        return self.assemble_batch(investigations, children)

    async def load_payloads(self, conn: psycopg.AsyncConnection, identifiers: Sequence[str]) -> dict[str, LoadResult]:
        """Payloads for these identifiers; identifiers no longer in ``vInvestigation`` are absent."""
        async with conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(self._by_identifier, (list(identifiers),))
            rows = await cursor.fetchall()
        return {result.identifier: result for result in await self.load_batch(conn, rows)}


async def load_payloads(conn: psycopg.AsyncConnection, identifiers: Sequence[str]) -> dict[str, LoadResult]:
    """One-shot convenience: check the contract and load these identifiers."""
    from services.extractor.source.schema import check_source_contract

    loader = PayloadLoader(await check_source_contract(conn))
    return await loader.load_payloads(conn, identifiers)
