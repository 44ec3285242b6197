"""Which investigation(s) a captured row belongs to: configuration per table, not code.

Providers expose the six source relations as views over their own tables, and
CDC captures tables, so each captured table says how its rows lead to
investigation identifiers (``settings.cdc.table_mappings``, keyed
``schema.table`` or a bare table name):

- ``{"column": "investigation_ref"}``: the identifier is a column of the row;
- ``{"query": "SELECT code FROM project WHERE id = %(project_id)s"}``: a
  parameterised query over the row's values (psycopg named placeholders),
  every value of its first column is an identifier.

The six relations of the source contract are mapped by default
(``vInvestigation`` by ``identifier``, the others by ``investigation_ref``);
configured entries win.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from services.common.errors import ConfigError, RecordError, SourceUnavailableError

#: The source contract's relations and the column naming their investigation.
DEFAULT_MAPPINGS: dict[str, dict[str, str]] = {
    "vInvestigation": {"column": "identifier"},
    "vStudy": {"column": "investigation_ref"},
    "vAssay": {"column": "investigation_ref"},
    "vContact": {"column": "investigation_ref"},
    "vPublication": {"column": "investigation_ref"},
    "vAnnotationTable": {"column": "investigation_ref"},
}


class UnmappableChangeError(RecordError):
    """A captured row cannot be attributed to any investigation."""

    default_code = "unmapped-change"


@dataclass(frozen=True)
class TableMapping:
    """How rows of one captured table name their investigations: a column or a query."""

    column: str | None = None
    query: str | None = None

    @classmethod
    def parse(cls, table: str, spec: Mapping[str, str]) -> TableMapping:
        keys = set(spec)
        if keys == {"column"} and spec["column"].strip():
            return cls(column=spec["column"].strip())
        if keys == {"query"} and spec["query"].strip():
            return cls(query=spec["query"].strip())
        raise ConfigError(
            f"cdc.table_mappings[{table!r}] must be {{'column': NAME}} or {{'query': SQL}}, got {sorted(keys)}"
        )


class InvestigationMapper:
    """Maps row values of captured tables to investigation identifiers."""

    def __init__(self, configured: Mapping[str, Mapping[str, str]]) -> None:
        merged = {**DEFAULT_MAPPINGS, **configured}
        self.mappings: dict[str, TableMapping] = {
            table: TableMapping.parse(table, spec) for table, spec in merged.items()
        }

    def mapping_for(self, schema: str, table: str) -> TableMapping | None:
        """The mapping of ``schema.table`` (exact entry first, then the bare table name)."""
        return self.mappings.get(f"{schema}.{table}") or self.mappings.get(table)

    async def investigations(
        self, conn: psycopg.AsyncConnection[Any], mapping: TableMapping, row: Mapping[str, Any]
    ) -> set[str]:
        """Identifiers this row belongs to (empty values are not identifiers)."""
        if mapping.column is not None:
            if mapping.column not in row:
                raise UnmappableChangeError(f"the row has no column {mapping.column!r}")
            return _identifiers([row[mapping.column]])
        assert mapping.query is not None
        try:
            async with conn.cursor() as cursor:
                await cursor.execute(mapping.query, dict(row))
                return _identifiers([found[0] for found in await cursor.fetchall()])
        except KeyError as exc:
            raise UnmappableChangeError(f"the mapping query needs column {exc} the row does not have") from exc
        except psycopg.OperationalError as exc:
            raise SourceUnavailableError(f"the database went away while mapping a change: {exc}") from exc
        except psycopg.Error as exc:
            raise UnmappableChangeError(f"the mapping query failed on this row: {exc}") from exc


def _identifiers(values: list[Any]) -> set[str]:
    return {str(value) for value in values if value is not None and str(value) != ""}
