"""``arcstream cdc setup``: publication, replica identity, checks; idempotent; and the mapping config."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from services.cli import main
from services.common.config import Settings
from services.common.errors import ConfigError
from services.extractor.cdc.capture.properties import connector_properties
from services.extractor.cdc.capture.setup import setup_cdc
from services.extractor.cdc.extractor import change_topic_pattern
from services.extractor.cdc.mapping import InvestigationMapper, UnmappableChangeError
from services.extractor.source.schema import ensure_source_schema

CHILDREN = {"vStudy", "vAssay", "vContact", "vPublication", "vAnnotationTable"}


def _setup(settings: Settings, prepare: str | None = None) -> list[str]:
    async def run() -> list[str]:
        url = settings.database_url.get_secret_value()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await ensure_source_schema(conn)
            if prepare:
                await conn.execute(prepare.encode())
            return await setup_cdc(conn, settings)

    return asyncio.run(run())


def _state(database_url: str, publication: str) -> tuple[dict[str, str], set[str]]:
    with psycopg.connect(database_url) as conn:
        identity = dict(
            conn.execute("SELECT relname, relreplident::text FROM pg_class WHERE relname LIKE 'v%%'").fetchall()
        )
        published = {
            row[0]
            for row in conn.execute("SELECT tablename FROM pg_publication_tables WHERE pubname = %s", (publication,))
        }
    return identity, published


def test_setup_prepares_the_contract_tables_and_is_idempotent(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    settings = make_settings(cdc={"publication_name": "p_setup", "slot_name": "s_setup"})
    first = _setup(settings)
    identity, published = _state(database_url, "p_setup")
    assert published == CHILDREN | {"vInvestigation"}
    assert {name for name in published if identity[name] == "f"} == CHILDREN
    assert "wal_level is logical" in first
    assert sum("set to FULL" in line for line in first) == len(CHILDREN)
    assert any(line.startswith("publication p_setup created") for line in first)

    second = _setup(settings)
    assert not any("set to FULL" in line or line.startswith("publication p_setup created") for line in second)
    assert any(line.startswith("publication p_setup already lists") for line in second)
    assert _state(database_url, "p_setup") == (identity, published)


def test_setup_follows_the_mappings_views_are_skipped_and_the_publication_is_updated(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    base = make_settings(cdc={"publication_name": "p_views", "slot_name": "s_views"})
    _setup(base)
    mapped = make_settings(
        cdc={
            "publication_name": "p_views",
            "table_mappings": {
                "public.samples": {"query": "SELECT 'x' WHERE %(id)s IS NOT NULL"},
                "public.samples_view": {"column": "investigation_ref"},
                "public.nowhere": {"column": "investigation_ref"},
            },
        }
    )
    lines = _setup(
        mapped,
        "CREATE TABLE samples (id int PRIMARY KEY, note text); CREATE VIEW samples_view AS SELECT * FROM samples",
    )
    assert any("samples_view: a view" in line for line in lines)
    assert any("public.nowhere: no such relation" in line for line in lines)
    assert any(line.startswith("publication p_views now lists") for line in lines)
    with psycopg.connect(database_url) as conn:
        published = {row[0] for row in conn.execute("SELECT tablename FROM pg_publication_tables")}
        identity = conn.execute("SELECT relreplident::text FROM pg_class WHERE relname = 'samples'").fetchone()
    assert "samples" in published
    assert identity == ("f",), "a query mapping may read any column: old values are needed"


def test_cli_setup_prints_what_it_did(
    make_settings: Callable[..., Settings],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _setup(make_settings(cdc={"publication_name": "arcstream"}))
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["cdc", "setup"]) == 0
    out = capsys.readouterr().out
    assert "wal_level is logical" in out and "publication arcstream already lists" in out


@pytest.mark.parametrize("spec", [{}, {"column": ""}, {"column": "a", "query": "SELECT 1"}, {"table": "x"}])
def test_a_mapping_must_be_one_column_or_one_query(spec: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="table_mappings"):
        InvestigationMapper({"public.t": spec})


def test_mappings_default_to_the_contract_and_configured_entries_win() -> None:
    mapper = InvestigationMapper({"public.vStudy": {"column": "other_ref"}})
    assert mapper.mapping_for("any", "vInvestigation").column == "identifier"  # type: ignore[union-attr]
    assert mapper.mapping_for("public", "vStudy").column == "other_ref"  # type: ignore[union-attr]
    assert mapper.mapping_for("other", "vStudy").column == "investigation_ref"  # type: ignore[union-attr]
    assert mapper.mapping_for("public", "unknown") is None


def test_a_column_mapping_needs_the_column(make_settings: Callable[..., Settings]) -> None:
    mapper = InvestigationMapper({})
    mapping = mapper.mapping_for("public", "vStudy")
    assert mapping is not None

    async def run() -> Any:
        return await mapper.investigations(None, mapping, {"id": 1})  # type: ignore[arg-type]

    with pytest.raises(UnmappableChangeError):
        asyncio.run(run())


def test_connector_properties_follow_the_settings(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(
        database_url="postgresql://reader:s3cret@db.example:6543/research?sslmode=require",
        cdc={"topic_prefix": "rdb", "slot_name": "slot1", "publication_name": "pub1"},
    )
    props = connector_properties(settings, ["public.vStudy", "public.vInvestigation"])
    assert props["database.hostname"] == "db.example" and props["database.port"] == "6543"
    assert props["database.user"] == "reader" and props["database.password"] == "s3cret"
    assert props["database.dbname"] == "research" and props["database.sslmode"] == "require"
    assert (props["topic.prefix"], props["slot.name"], props["publication.name"]) == ("rdb", "slot1", "pub1")
    assert props["table.include.list"] == r"\Qpublic\E\.\QvStudy\E,\Qpublic\E\.\QvInvestigation\E"
    assert props["snapshot.mode"] == "no_data"
    assert props["offset.storage.file.filename"].endswith("slot1.offsets")


def test_the_change_topic_prefix_must_not_match_our_own_topics(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    clash = make_settings(cdc={"topic_prefix": settings.topics.prefix})
    with pytest.raises(ConfigError, match=r"topics\.prefix"):
        change_topic_pattern(clash)
    assert re.match(change_topic_pattern(settings), f"{settings.cdc.topic_prefix}.public.vStudy")
    assert not re.match(change_topic_pattern(settings), settings.topics.investigations)


def test_capture_without_a_publication_fails_with_one_line(
    make_settings: Callable[..., Settings], database_url: str, tmp_path: Path
) -> None:
    settings = make_settings()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCSTREAM_")}
    env |= {
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "ARCSTREAM_CDC__PUBLICATION_NAME": "nothing_here",
        "ARCSTREAM_STATE_DIR": str(tmp_path / "none"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "cdc", "capture"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "arcstream cdc: error: publication 'nothing_here' is missing or empty: run 'arcstream cdc setup' first"
    )
