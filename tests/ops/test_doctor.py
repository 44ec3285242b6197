"""``arcstream doctor`` on a healthy deployment and on one with each check failing.

Real servers throughout: the session's PostgreSQL and broker, ``arcstream store``
processes (plain HTTP, or HTTPS requiring client certificates from the shared test CA,
:mod:`tests.pki`, for the certificate checks), a second PostgreSQL started with
``wal_level=replica`` for that check. Only the overloaded target is a fake: the store
cannot answer a read with 503 (``fake_overloaded_api.py`` says why).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from services.common.config import Settings
from services.common.kafka.topics import ensure_topics
from services.dev.stack.ports import free_port
from services.dev.stack.postgres import start_postgres, stop_postgres
from services.dev.stack.state import ServerRecord, StackState
from services.extractor.cdc.capture.properties import offsets_file
from services.extractor.cdc.capture.setup import setup_cdc
from services.extractor.source.schema import DDL_FILE, ensure_source_schema
from services.ops.doctor import Check, blocking, render, run_doctor
from services.uploader.probe import PROBE_PATH
from tests.pki import Pki

from .fake_overloaded_api import FakeOverloadedApi, serving

#: A database made with the contract's first version (no optional v2 columns).
V1_DDL = Path(__file__).resolve().parents[1] / "extractor" / "data" / "source_contract_v1.sql"

RDI = "soil-rdi"


def doctor(settings: Settings, **kwargs: Any) -> dict[str, Check]:
    checks = asyncio.run(run_doctor(settings, **kwargs))
    assert len({check.name for check in checks}) == len(checks)
    return {check.name: check for check in checks}


def statuses(checks: dict[str, Check]) -> dict[str, str]:
    return {name: check.status for name, check in checks.items()}


def prepare(settings: Settings, *, cdc_setup: bool = True, topics: bool = True) -> None:
    async def run() -> None:
        url = settings.database_url.get_secret_value()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await ensure_source_schema(conn)
            if cdc_setup:
                await setup_cdc(conn, settings)
        if topics:
            await ensure_topics(settings)

    asyncio.run(run())


@pytest.fixture
def deployment(make_settings: Callable[..., Settings], start_store: Callable[..., ServerRecord]) -> Settings:
    """A configured deployment: its own slot, publication and topics; a store as the target."""
    store = start_store("store", "--known-rdi", RDI)
    tag = uuid.uuid4().hex[:8]
    return make_settings(
        rdi=RDI,
        uploader={"target_url": store.url},
        cdc={"slot_name": f"doc_{tag}", "publication_name": f"doc_{tag}", "topic_prefix": f"doc{tag}db"},
    )


def doctor_cli(settings: Settings) -> subprocess.CompletedProcess[str]:
    """``arcstream doctor`` as an operator runs it: configured by environment variables only."""
    tls = settings.uploader.tls
    files = {"CLIENT_CERT": tls.client_cert, "CLIENT_KEY": tls.client_key, "CA_BUNDLE": tls.ca_bundle}
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCSTREAM_")} | {
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "ARC_STORE_URL": settings.uploader.target_url,
        "ARCSTREAM_RDI": settings.rdi,
        "ARCSTREAM_STATE_DIR": str(settings.state_dir),
        "ARCSTREAM_TOPICS__PREFIX": settings.topics.prefix,
        "ARCSTREAM_TOPICS__PARTITIONS": str(settings.topics.partitions),
        "ARCSTREAM_CDC__SLOT_NAME": settings.cdc.slot_name,
        "ARCSTREAM_CDC__PUBLICATION_NAME": settings.cdc.publication_name,
    }
    env |= {f"ARCSTREAM_UPLOADER__TLS__{name}": str(path) for name, path in files.items() if path is not None}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "doctor"], env=env, capture_output=True, text=True, timeout=120
    )


def test_a_healthy_deployment_passes_every_check_through_the_cli(deployment: Settings) -> None:
    prepare(deployment)
    result = doctor_cli(deployment)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    names = ["database", "source contract", "wal_level", "replication role", "captured tables", "publication"]
    names += ["replica identity", "slot", "broker", "topics", "target", "certificate", "rdi"]
    assert [line.split("  ")[0] for line in lines[:-1]] == ["ok"] * len(names), result.stdout
    for line, name in zip(lines, names, strict=False):
        assert f"  {name}" in line
    assert lines[-1] == "ready: nothing blocks the pipeline"
    assert "6 table(s)" in result.stdout


def test_an_unreachable_database_and_broker_fail_and_what_needs_them_is_skipped(
    deployment: Settings, make_settings: Callable[..., Settings]
) -> None:
    dead = make_settings(
        database_url=f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/x",
        kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}"},
        uploader={"target_url": deployment.uploader.target_url},
        rdi=RDI,
    )
    checks = doctor(dead)
    assert checks["database"].status == "fail" and "cannot connect to the database" in checks["database"].message
    assert "s3cret" not in checks["database"].message
    assert {checks[n].status for n in ("source contract", "wal_level", "publication", "slot")} == {"skip"}
    assert checks["broker"].status == "fail" and "cannot reach Kafka" in checks["broker"].message
    assert checks["topics"].status == "skip"
    assert checks["target"].status == "ok"
    lines = render(list(checks.values()))
    assert lines[-1].startswith("2 problem(s) block the pipeline")


def test_a_missing_contract_column_is_named(deployment: Settings) -> None:
    prepare(deployment)
    with psycopg.connect(deployment.database_url.get_secret_value(), autocommit=True) as conn:
        conn.execute('ALTER TABLE "vAssay" DROP COLUMN technology_platform')
    check = doctor(deployment)["source contract"]
    assert check.status == "fail"
    assert 'relation "vAssay" lacks required column(s): technology_platform' in check.message


def test_views_satisfy_the_contract_but_cdc_needs_the_tables_under_them(deployment: Settings) -> None:
    with psycopg.connect(deployment.database_url.get_secret_value(), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA provider")
        conn.execute("SET search_path TO provider")
        conn.execute(DDL_FILE.read_text(encoding="utf-8").encode())
        for relation in ("vInvestigation", "vStudy", "vAssay", "vContact", "vPublication", "vAnnotationTable"):
            conn.execute(f'CREATE VIEW public."{relation}" AS SELECT * FROM provider."{relation}"')
    checks = doctor(deployment)
    assert checks["source contract"].status == "ok" and "6 view(s)" in checks["source contract"].message
    assert checks["captured tables"].status == "fail"
    assert "map the tables under your views in cdc.table_mappings" in checks["captured tables"].message
    assert checks["publication"].status == "skip"


def test_cdc_prerequisites_fail_one_by_one_with_their_fix(
    deployment: Settings, make_settings: Callable[..., Settings], dev_stack: StackState
) -> None:
    prepare(deployment, cdc_setup=False)
    first = doctor(deployment)
    assert first["publication"].status == "fail" and "run 'arcstream cdc setup'" in first["publication"].message
    assert first["replica identity"].status == "fail" and "need FULL" in first["replica identity"].message
    assert first["slot"].status == "ok", "no slot yet: capture creates it"

    prepare(deployment)
    url = deployment.database_url.get_secret_value()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute('ALTER TABLE "vStudy" REPLICA IDENTITY DEFAULT')
    check = doctor(deployment)["replica identity"]
    assert check.status == "fail" and "public.vStudy (DEFAULT)" in check.message

    reader = f"reader_{deployment.cdc.slot_name}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {reader} LOGIN")
    try:
        as_reader = make_settings(
            database_url=url.replace("postgres@", f"{reader}@"),
            cdc=deployment.cdc.model_dump(),
            uploader={"target_url": deployment.uploader.target_url},
        )
        role = doctor(as_reader)["replication role"]
        assert role.status == "fail" and f"ALTER ROLE {reader} REPLICATION" in role.message
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP ROLE {reader}")

    # Offsets from an earlier capture, but no slot: the database was recreated.
    stored = offsets_file(deployment)
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_bytes(b'["arcstream",{"server":"x"}] {"lsn":28516792,"txId":762}')
    slot = doctor(deployment)["slot"]
    assert slot.status == "fail" and "CDC position stale" in slot.message and "arcstream cdc reset" in slot.message
    stored.unlink()

    # A slot of that name held by another database.
    assert dev_stack.postgres is not None
    with psycopg.connect(dev_stack.postgres.url, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (deployment.cdc.slot_name,))
    try:
        other = doctor(deployment)["slot"]
        assert other.status == "fail" and "belongs to database 'postgres'" in other.message
    finally:
        with psycopg.connect(dev_stack.postgres.url, autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (deployment.cdc.slot_name,))


@pytest.fixture
def replica_server() -> Iterator[ServerRecord]:
    """A PostgreSQL as many providers run it: wal_level=replica (not under pytest's private tmp: see conftest)."""
    data_dir = Path(tempfile.mkdtemp(prefix="arcstream-test-replica-"))
    record = start_postgres(data_dir, server_options={"wal_level": "replica"})
    try:
        yield record
    finally:
        stop_postgres(record)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_wal_level_replica_fails_with_the_fix(
    replica_server: ServerRecord, make_settings: Callable[..., Settings], deployment: Settings
) -> None:
    settings = make_settings(database_url=replica_server.url, uploader={"target_url": deployment.uploader.target_url})
    check = doctor(settings)["wal_level"]
    assert check.status == "fail"
    assert "set wal_level=logical in postgresql.conf and restart PostgreSQL" in check.message


def test_missing_topics_warn_and_no_cdc_skips_the_cdc_checks(deployment: Settings) -> None:
    prepare(deployment, topics=False)
    checks = doctor(deployment, cdc=False)
    assert checks["topics"].status == "warn" and "arcstream topics ensure" in checks["topics"].message
    assert "wal_level" not in checks and "slot" not in checks
    assert not blocking(list(checks.values()))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def store_log(store: ServerRecord, ca: Path | None) -> list[tuple[str, str, dict[str, str], int]]:
    """(method, path, query, status) of every API request the store received (its request log)."""
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca)) if ca else True
    answer = httpx.get(f"{store.url}/_store/requests", verify=verify, timeout=10)
    answer.raise_for_status()
    return [(e["method"], e["path"], e["query"], e["status"]) for e in answer.json()]


@pytest.mark.parametrize(
    ("known_rdis", "mtls", "certificate_rdis", "status", "expected"),
    [
        pytest.param(["other"], False, None, 400, {"target": "ok", "certificate": "ok", "rdi": "fail"},
                     id="unknown RDI"),
        pytest.param([RDI], True, None, 401, {"target": "ok", "certificate": "fail", "rdi": "skip"},
                     id="no client certificate"),
        pytest.param([RDI, "other"], True, ["other"], 403, {"target": "ok", "certificate": "fail", "rdi": "ok"},
                     id="certificate without the RDI"),
        pytest.param([RDI], True, [RDI], 200, {"target": "ok", "certificate": "ok", "rdi": "ok"},
                     id="certificate listing the RDI"),
    ],
)  # fmt: skip
def test_target_answers_say_which_part_to_fix(
    deployment: Settings,
    make_settings: Callable[..., Settings],
    start_store: Callable[..., ServerRecord],
    pki: Pki,
    known_rdis: list[str],
    mtls: bool,
    certificate_rdis: list[str] | None,
    status: int,
    expected: dict[str, str],
) -> None:
    prepare(deployment)
    flags = [arg for rdi in known_rdis for arg in ("--known-rdi", rdi)] + (list(pki.store_flags()) if mtls else [])
    store = start_store("target", *flags)
    tls: dict[str, str] = {"ca_bundle": str(pki.ca)} if mtls else {}
    if certificate_rdis is not None:
        client = pki.client("doctor-uploader", certificate_rdis)
        tls |= {"client_cert": str(client.cert), "client_key": str(client.key)}
    settings = make_settings(rdi=RDI, uploader={"target_url": store.url, "tls": tls}, cdc=deployment.cdc.model_dump())
    checks = doctor(settings)
    assert statuses({name: checks[name] for name in expected}) == expected
    assert blocking(list(checks.values())) == ("fail" in expected.values())
    for check in checks.values():
        assert "\n" not in check.message
    assert store_log(store, pki.ca if mtls else None) == [("GET", PROBE_PATH, {"rdi": RDI, "limit": "1"}, status)]


def test_a_certificate_refusal_fails_the_cli_with_the_fix_on_its_line(
    deployment: Settings, make_settings: Callable[..., Settings], start_store: Callable[..., ServerRecord], pki: Pki
) -> None:
    prepare(deployment)
    store = start_store("target", *pki.store_flags(), "--known-rdi", RDI, "--known-rdi", "other")
    client = pki.client("doctor-uploader", ["other"])
    tls = {"client_cert": str(client.cert), "client_key": str(client.key), "ca_bundle": str(pki.ca)}
    settings = make_settings(rdi=RDI, uploader={"target_url": store.url, "tls": tls}, cdc=deployment.cdc.model_dump())
    result = doctor_cli(settings)
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert line.split()[1] == "certificate"
    assert f"use the certificate issued for {RDI!r}, or set rdi to an RDI it lists" in line
    assert result.stdout.strip().splitlines()[-1].startswith("1 problem(s) block the pipeline")


def test_an_overloaded_target_warns_and_blocks_nothing(
    deployment: Settings, make_settings: Callable[..., Settings]
) -> None:
    prepare(deployment)
    api = FakeOverloadedApi()

    async def run() -> list[Check]:
        async with serving(api) as url:
            settings = make_settings(rdi=RDI, uploader={"target_url": url}, cdc=deployment.cdc.model_dump())
            return await run_doctor(settings)

    checks = {check.name: check for check in asyncio.run(run())}
    expected = {"target": "warn", "certificate": "skip", "rdi": "skip"}
    assert {name: checks[name].status for name in expected} == expected
    assert "try again later" in checks["target"].message
    assert not blocking(list(checks.values()))
    assert api.requests == [("GET", PROBE_PATH, {"rdi": RDI, "limit": "1"})]


def test_an_unreachable_target_fails(deployment: Settings, make_settings: Callable[..., Settings]) -> None:
    prepare(deployment)
    closed = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(uploader={"target_url": closed}, cdc=deployment.cdc.model_dump())
    checks = doctor(settings)
    assert statuses(checks)["target"] == "fail" and "cannot reach the ARC store" in checks["target"].message
    assert (checks["certificate"].status, checks["rdi"].status) == ("skip", "skip")


def test_an_invalid_table_mapping_is_a_failing_check_not_a_crash(
    deployment: Settings, make_settings: Callable[..., Settings]
) -> None:
    prepare(deployment)
    cdc = deployment.cdc.model_dump() | {"table_mappings": {"public.samples": {"table": "x"}}}
    settings = make_settings(rdi=RDI, uploader={"target_url": deployment.uploader.target_url}, cdc=cdc)
    checks = doctor(settings)
    assert checks["captured tables"].status == "fail" and "cdc.table_mappings" in checks["captured tables"].message
    assert (checks["publication"].status, checks["slot"].status) == ("skip", "ok")


def test_the_contract_check_says_which_contract_version_it_found(deployment: Settings) -> None:
    """The reference DDL has the optional v2 columns; a database made with the v1 DDL has none."""
    prepare(deployment, cdc_setup=False, topics=False)
    v2 = doctor(deployment, cdc=False)["source contract"]
    assert v2.status == "ok" and "contract v2:" in v2.message and "vAnnotationTable" in v2.message
    with psycopg.connect(deployment.database_url.get_secret_value(), autocommit=True) as conn:
        for relation in ("vInvestigation", "vStudy", "vAssay", "vContact", "vPublication", "vAnnotationTable"):
            conn.execute(f'DROP TABLE "{relation}"')
        conn.execute(V1_DDL.read_text(encoding="utf-8").encode())
    v1 = doctor(deployment, cdc=False)["source contract"]
    assert v1.status == "ok" and "contract v1" in v1.message
