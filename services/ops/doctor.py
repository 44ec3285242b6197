"""``arcstream doctor``: check a configured deployment end to end, one line per check with what to fix.

Every problem a provider's first hour runs into would otherwise surface later, in a
different service: a missing view column in the snapshot, ``wal_level`` in capture, an
unknown RDI in the uploader. The doctor asks each question up front, in the order
the pipeline needs the answers, and says which ones block:

- **database**: reachable with the configured URL;
- **source contract**: the relations and columns the extractor reads (tables or views),
  by calling the extractor's own contract check, so the doctor always checks what the
  snapshot will;
- **CDC** (unless ``--no-cdc``): ``wal_level=logical``, the REPLICATION privilege, the
  publication listing the mapped tables, their replica identity, the slot and the stored
  position (:mod:`services.extractor.cdc.capture.position`);
- **broker** and **topics**;
- **target**, **certificate**, **RDI**: one side-effect-free request to the ARC store
  (:mod:`services.uploader.probe`).

A check that cannot run because an earlier one failed is shown as ``skip``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from aiokafka.admin import AIOKafkaAdminClient

from services.common.config import Settings
from services.common.errors import ConfigError, FatalError, SourceContractError
from services.common.kafka.clients import make_admin, start_client
from services.common.kafka.topics import topic_specs
from services.common.logs import mask_url
from services.extractor.cdc.capture.position import check_position
from services.extractor.cdc.capture.setup import IDENTITY_NAMES, needs_full_identity, publication_tables, resolve_tables
from services.extractor.cdc.mapping import InvestigationMapper
from services.extractor.source.schema import CONTRACT, check_source_contract, connect, optional_columns_found
from services.uploader.probe import TargetProbe, probe_target

Status = Literal["ok", "warn", "fail", "skip"]


@dataclass(frozen=True)
class Check:
    """One line of the doctor's answer."""

    name: str
    status: Status
    message: str


def render(checks: list[Check]) -> list[str]:
    """``STATUS  name  message`` per check, then a closing line with the count of blocking problems."""
    width = max(len(check.name) for check in checks)
    lines = [f"{_label(check):<4}  {check.name:<{width}}  {check.message}" for check in checks]
    counts = Counter(check.status for check in checks)
    if counts["fail"]:
        lines.append(f"{counts['fail']} problem(s) block the pipeline; fix the FAIL lines above and run doctor again")
    else:
        warned = f" ({counts['warn']} warning(s))" if counts["warn"] else ""
        lines.append(f"ready: nothing blocks the pipeline{warned}")
    return lines


def _label(check: Check) -> str:
    """``FAIL`` stands out in capitals; the others stay quiet."""
    return "FAIL" if check.status == "fail" else check.status


def blocking(checks: list[Check]) -> bool:
    return any(check.status == "fail" for check in checks)


async def run_doctor(settings: Settings, *, cdc: bool = True) -> list[Check]:
    """Every check, in pipeline order."""
    checks = await _database_checks(settings, cdc=cdc)
    checks += await _kafka_checks(settings)
    checks += target_checks(settings, await probe_target(settings))
    return checks


# --- database: contract and CDC -------------------------------------------------------------------


async def _database_checks(settings: Settings, *, cdc: bool) -> list[Check]:
    url = settings.database_url.get_secret_value()
    names = ["source contract", *(_CDC_CHECKS if cdc else ())]
    try:
        conn = await connect(url, autocommit=True, connect_timeout=10)
    except FatalError as exc:
        return [Check("database", "fail", str(exc)), *(Check(n, "skip", "needs the database") for n in names)]
    try:
        version = (await (await conn.execute("SHOW server_version")).fetchone() or ("?",))[0]
        checks = [Check("database", "ok", f"{mask_url(url)} reachable (PostgreSQL {version})")]
        checks.append(await contract_check(conn))
        if cdc:
            checks += await _cdc_checks(conn, settings)
        return checks
    finally:
        await conn.close()


async def contract_check(conn: psycopg.AsyncConnection[Any]) -> Check:
    """The extractor's contract check, plus what kind of relation each one is (a provider's are often views).

    Calling :func:`check_source_contract` itself keeps the doctor and the snapshot in step: when the
    contract grows (optional v2 columns), what that check detects is what to report here.
    """
    try:
        found = await check_source_contract(conn)
    except SourceContractError as exc:
        return Check(
            "source contract",
            "fail",
            f"{exc}: create it as a table or a view over your tables (schemas/source/source_contract.sql)",
        )
    kinds = await _relation_kinds(conn)
    summary = ", ".join(f"{count} {kind}(s)" for kind, count in sorted(Counter(kinds.values()).items()))
    optional = optional_columns_found(found)
    version = (
        f"contract v2: {sum(len(names) for names in optional.values())} optional column(s) in "
        f"{', '.join(sorted(optional))}"
        if optional
        else "contract v1 (no optional v2 columns: docs/contract.md lists what they add)"
    )
    return Check(
        "source contract", "ok", f"the {len(CONTRACT)} relations and their columns are there ({summary}); {version}"
    )


async def _relation_kinds(conn: psycopg.AsyncConnection[Any]) -> dict[str, str]:
    cursor = await conn.execute(
        """
        SELECT c.relname, CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                                         WHEN 'f' THEN 'foreign table' ELSE 'table' END
          FROM pg_catalog.pg_class c
         WHERE c.relname = ANY(%s) AND pg_catalog.pg_table_is_visible(c.oid)
        """,
        (list(CONTRACT),),
    )
    return {str(name): str(kind) for name, kind in await cursor.fetchall()}


#: REPLICATION (or superuser); on Amazon RDS membership in ``rds_replication`` grants the same.
_MAY_REPLICATE = """
SELECT current_user,
       rolreplication OR rolsuper OR EXISTS (
           SELECT 1 FROM pg_roles r WHERE r.rolname = 'rds_replication' AND pg_has_role(current_user, r.oid, 'member'))
  FROM pg_roles WHERE rolname = current_user
"""

_CDC_CHECKS = ("wal_level", "replication role", "captured tables", "publication", "replica identity", "slot")


async def _cdc_checks(conn: psycopg.AsyncConnection[Any], settings: Settings) -> list[Check]:
    cdc = settings.cdc
    checks: list[Check] = []
    wal_level = (await (await conn.execute("SHOW wal_level")).fetchone() or ("?",))[0]
    checks.append(
        Check("wal_level", "ok", "logical")
        if wal_level == "logical"
        else Check(
            "wal_level", "fail", f"is {wal_level!r}: set wal_level=logical in postgresql.conf and restart PostgreSQL"
        )
    )
    role = await (await conn.execute(_MAY_REPLICATE)).fetchone()
    user, may_replicate = (str(role[0]), bool(role[1])) if role else ("?", False)
    checks.append(
        Check("replication role", "ok", f"{user} may stream changes")
        if may_replicate
        else Check("replication role", "fail", f"{user} lacks REPLICATION: ALTER ROLE {user} REPLICATION")
    )
    try:
        mapper = InvestigationMapper(cdc.table_mappings)
    except ConfigError as exc:
        skipped = [Check(name, "skip", "needs valid table mappings") for name in ("publication", "replica identity")]
        return [*checks, Check("captured tables", "fail", str(exc)), *skipped, await _slot_check(conn, settings)]
    tables, notes = await resolve_tables(conn, mapper)
    noted = f" ({'; '.join(notes)})" if notes else ""
    if not tables:
        checks.append(
            Check(
                "captured tables",
                "fail",
                f"no mapped relation is a table{noted}: map the tables under your views in cdc.table_mappings "
                "(docs/cdc.md)",
            )
        )
        checks += [Check(name, "skip", "needs captured tables") for name in ("publication", "replica identity")]
    else:
        checks.append(Check("captured tables", "ok", f"{', '.join(sorted(tables))}{noted}"))
        checks.append(await _publication_check(conn, cdc.publication_name, sorted(tables)))
        lacking = [
            f"{table.qualified} ({IDENTITY_NAMES.get(table.replica_identity, '?')})"
            for table, mapping in tables.values()
            if needs_full_identity(table, mapping) and table.replica_identity != "f"
        ]
        checks.append(
            Check("replica identity", "fail", f"{', '.join(lacking)} need FULL: run 'arcstream cdc setup'")
            if lacking
            else Check("replica identity", "ok", "deletes and updates carry the old row where the mapping needs it")
        )
    checks.append(await _slot_check(conn, settings))
    return checks


async def _slot_check(conn: psycopg.AsyncConnection[Any], settings: Settings) -> Check:
    position = await check_position(conn, settings)
    return Check("slot", "ok" if position.resumable else "fail", position.message)


async def _publication_check(conn: psycopg.AsyncConnection[Any], name: str, wanted: list[str]) -> Check:
    exists = await (await conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,))).fetchone()
    if not exists:
        return Check("publication", "fail", f"{name!r} does not exist: run 'arcstream cdc setup'")
    listed = sorted(await publication_tables(conn, name))
    missing = sorted(set(wanted) - set(listed))
    if missing:
        return Check("publication", "fail", f"{name!r} lacks {', '.join(missing)}: run 'arcstream cdc setup'")
    return Check("publication", "ok", f"{name!r} lists the {len(wanted)} captured table(s)")


# --- Kafka ----------------------------------------------------------------------------------------


async def _kafka_checks(settings: Settings) -> list[Check]:
    admin = make_admin(settings.kafka)
    try:
        await start_client(admin, settings.kafka)
    except FatalError as exc:
        return [Check("broker", "fail", str(exc)), Check("topics", "skip", "needs the broker")]
    try:
        return [
            Check("broker", "ok", f"{settings.kafka.bootstrap_servers} reachable"),
            await _topics_check(admin, settings),
        ]
    finally:
        await admin.close()


async def _topics_check(admin: AIOKafkaAdminClient, settings: Settings) -> Check:
    specs = topic_specs(settings)
    existing = set(await admin.list_topics())
    missing = [spec.name for spec in specs if spec.name not in existing]
    if missing:
        return Check(
            "topics",
            "warn",
            f"{', '.join(missing)} missing: 'arcstream topics ensure' creates them (the extractors do too)",
        )
    described = {t["topic"]: len(t.get("partitions", [])) for t in await admin.describe_topics([s.name for s in specs])}
    odd = [f"{s.name} has {described.get(s.name)}" for s in specs if described.get(s.name) not in (None, s.partitions)]
    if odd:
        return Check("topics", "warn", f"{'; '.join(odd)} partition(s), configured {settings.topics.partitions}")
    return Check("topics", "ok", f"the {len(specs)} topics under prefix {settings.topics.prefix!r} exist")


# --- the upload target ----------------------------------------------------------------------------


def target_checks(settings: Settings, probe: TargetProbe) -> list[Check]:
    """The probe as three lines: is there a v3 API, is the certificate accepted, is the RDI accepted.

    The real API checks the certificate (401) before the RDI (400 unknown, 403 not in the
    certificate), so each answer also says which of the earlier checks passed.
    """
    rdi = settings.rdi
    answers = Check("target", "ok", f"{settings.uploader.target_url} answers (ARC store API v3)")
    certificate = Check(
        "certificate", "ok", "accepted" if settings.uploader.tls.client_cert else "none configured, none required"
    )
    if probe.ok:
        return [answers, certificate, Check("rdi", "ok", f"{rdi!r} accepted")]
    match probe.problem:
        case "unavailable":
            untested = "the target did not answer the check"
            return [
                Check("target", "warn", probe.message),
                Check("certificate", "skip", untested),
                Check("rdi", "skip", untested),
            ]
        case "certificate-missing" | "certificate-refused" if probe.status != 403:
            # 401, or a TLS handshake that asked for a certificate: the RDI was not looked at.
            return [answers, Check("certificate", "fail", probe.message), Check("rdi", "skip", "needs the certificate")]
        case "certificate-refused":  # 403: the RDI is known, the certificate does not list it
            known = Check("rdi", "ok", f"{rdi!r} known to the API")
            return [answers, Check("certificate", "fail", probe.message), known]
        case "rdi-unknown":
            return [answers, certificate, Check("rdi", "fail", probe.message)]
        case _:
            return [
                Check("target", "fail", probe.message),
                Check("certificate", "skip", "needs the target"),
                Check("rdi", "skip", "needs the target"),
            ]
