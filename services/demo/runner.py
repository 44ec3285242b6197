"""``arcstream demo``: the whole pipeline on the single-machine stack, in one command.

1. start (or reuse) PostgreSQL, the broker and the ARC store (``arcstream dev up``);
2. fresh demo database with a generated ``mixed`` dataset, CDC set up;
3. the services as child processes: Debezium capture, CDC extractor, builder, uploader, status view;
   the snapshot starts once builder and uploader are ready (``/readyz``: partitions assigned), so
   its figures are the pipeline's, not the consumer-group joins';
4. snapshot -> build -> upload with a progress bar per stage (read from ``arc.report``);
5. live changes (update, insert, delete) once the CDC extractor is ready and the replication slot
   streams, each followed until it arrives in the store;
6. a summary, then the stack keeps running until Ctrl-C (``--exit`` stops after the summary).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
from psycopg import sql
from tqdm import tqdm

from services.common.config import Settings, load_settings
from services.common.content_hash import arc_id
from services.common.errors import StackError
from services.common.kafka.topics import ensure_topics
from services.demo.changes import Change, delete_investigation, insert_investigation, update_title
from services.demo.processes import ServiceGroup, ServiceProcess
from services.demo.watch import ReportWatcher
from services.dev.generator import Profile, generate
from services.dev.stack import stack
from services.dev.stack.ports import free_port
from services.dev.writer import write_rows
from services.extractor.snapshot import run_snapshot
from services.extractor.source.schema import connect, ensure_source_schema

DEMO_DATABASE = "arcstream_demo"


@dataclass(frozen=True)
class DemoOptions:
    investigations: int = 24
    profile: Profile = "mixed"
    seed: int = 1
    exit_after_summary: bool = False
    #: Seconds to wait for each stage and each live change before calling it a failure.
    timeout_s: float = 600.0


def _say(message: str) -> None:
    print(message, flush=True)


async def _fresh_database(admin_url: str, slot: str) -> str:
    """(Re)create the demo database; drop the CDC slot of a previous demo first (it pins the old database)."""
    conn = await psycopg.AsyncConnection.connect(admin_url, autocommit=True)
    try:
        await conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        )
        await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DEMO_DATABASE)))
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEMO_DATABASE)))
    finally:
        await conn.close()
    return admin_url.rsplit("/", 1)[0] + f"/{DEMO_DATABASE}"


class Demo:
    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.base = load_settings()
        self.services = ServiceGroup()
        self.timings: dict[str, float] = {}
        self.urls: dict[str, str] = {}
        self.ready_urls: dict[str, str] = {}
        self.services_started = 0.0
        self.first_arc_s: float | None = None

    async def run(self) -> int:
        started = time.monotonic()
        state = await asyncio.to_thread(stack.up, self.base.state_dir)
        assert state.postgres and state.broker and state.store
        self.store_dir = state.store.data_dir or "(external store)"
        _say(f"stack: PostgreSQL {state.postgres.url}, Kafka {state.broker.url}, store {state.store.url}")
        run_tag = secrets.token_hex(3)
        database_url = await _fresh_database(state.postgres.url, f"arcstream_demo_{run_tag}")
        env = self._service_env(database_url, state.broker.url, state.store.url, run_tag)
        settings = load_settings(
            database_url=database_url,
            kafka={"bootstrap_servers": state.broker.url},
            uploader={"target_url": state.store.url},
            topics={"prefix": env["ARCSTREAM_TOPICS__PREFIX"]},
            cdc={"topic_prefix": env["ARCSTREAM_CDC__TOPIC_PREFIX"], "slot_name": env["ARCSTREAM_CDC__SLOT_NAME"]},
            rdi=env["ARCSTREAM_RDI"],
        )
        watcher = ReportWatcher(settings)
        try:
            await self._prepare(settings, env)
            await ensure_topics(settings)
            await watcher.start()
            self._start_services(env, settings)
            # Measure the pipeline, not the consumer-group joins: snapshot once builder and uploader are in.
            await self._wait_ready("builder", "uploader")
            summary = await self._snapshot_build_upload(settings, watcher)
            # A change made before the replication slot streams would not be captured.
            await self._wait_ready("extract-cdc")
            await self._wait_capturing(settings)
            changes = await self._live_changes(settings, watcher)
            self._summary(settings, watcher, summary, changes, time.monotonic() - started)
            if not self.options.exit_after_summary:
                _say("the stack keeps running; press Ctrl-C to stop it")
                await self._until_interrupted()
        finally:
            await watcher.stop()
            self.services.stop()
            stack.down(self.base.state_dir)  # blocking on purpose: we are shutting down
        return 0

    def _service_env(self, database_url: str, bootstrap: str, store_url: str, tag: str) -> dict[str, str]:
        logs = self.base.state_dir.resolve() / "demo-logs"
        self.log_dir = logs
        return {
            **os.environ,
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "ARC_STORE_URL": store_url,
            "ARCSTREAM_RDI": "arcstream-demo",
            "ARCSTREAM_TOPICS__PREFIX": f"demo-{tag}",
            "ARCSTREAM_CDC__TOPIC_PREFIX": f"demo{tag}db",
            "ARCSTREAM_CDC__SLOT_NAME": f"arcstream_demo_{tag}",
            "ARCSTREAM_STATE_DIR": str(self.base.state_dir),
        }

    async def _prepare(self, settings: Settings, env: dict[str, str]) -> None:
        began = time.monotonic()
        conn = await connect(settings.database_url.get_secret_value())
        try:
            await ensure_source_schema(conn)
            await conn.commit()
            count = await write_rows(
                conn, generate(self.options.investigations, self.options.seed, self.options.profile)
            )
        finally:
            await conn.close()
        self.timings["generate"] = time.monotonic() - began
        _say(f"generated {count} investigations (profile {self.options.profile}, seed {self.options.seed})")
        setup = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli",
            "cdc",
            "setup",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await setup.communicate()
        if setup.returncode != 0:
            raise StackError(f"cdc setup failed: {err.decode(errors='replace').strip().splitlines()[-1:]}")

    def _start_services(self, env: dict[str, str], settings: Settings) -> None:
        ports = {name: free_port() for name in ("capture", "extract-cdc", "builder", "uploader")}
        for name, args in (
            ("capture", ["cdc", "capture"]),
            ("extract-cdc", ["extract", "cdc"]),
            ("builder", ["builder"]),
            ("uploader", ["uploader"]),
        ):
            service_env = env | {"ARCSTREAM_METRICS__PORT": str(ports[name]), "ARCSTREAM_METRICS__HOST": "127.0.0.1"}
            self.services.start(ServiceProcess(name, args, self.log_dir / f"{name}.log"), service_env)
            self.urls[f"metrics ({name})"] = f"http://127.0.0.1:{ports[name]}/metrics"
            self.ready_urls[name] = f"http://127.0.0.1:{ports[name]}/readyz"
        self.services_started = time.monotonic()
        status_port = free_port()
        self.services.start(
            ServiceProcess("status", ["status", "--port", str(status_port)], self.log_dir / "status.log"), env
        )
        self.urls["status page"] = f"http://127.0.0.1:{status_port}/"
        _say(f"services started (logs in {self.log_dir})")

    async def _wait_ready(self, *names: str) -> None:
        """Until each named service answers ``/readyz`` with 200 (its consumer group has assigned partitions)."""
        pending = set(names)
        try:
            async with httpx.AsyncClient(timeout=2) as client, asyncio.timeout(self.options.timeout_s):
                while pending:
                    self.services.check()
                    for name in sorted(pending):
                        try:
                            ready = (await client.get(self.ready_urls[name])).status_code == 200
                        except httpx.HTTPError:
                            ready = False  # not listening yet
                        if ready:
                            pending.discard(name)
                    if pending:
                        await asyncio.sleep(0.1)
        except TimeoutError:
            raise StackError(
                f"{', '.join(sorted(pending))} not ready after {self.options.timeout_s:.0f} s (logs in {self.log_dir})"
            ) from None
        self.timings.setdefault("services ready", time.monotonic() - self.services_started)

    async def _wait_capturing(self, settings: Settings) -> None:
        """Until the capture's replication slot is streaming (changes from then on are captured)."""
        conn = await connect(settings.database_url.get_secret_value(), autocommit=True)
        try:
            async with asyncio.timeout(self.options.timeout_s):
                while True:
                    self.services.check()
                    cursor = await conn.execute(
                        "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (settings.cdc.slot_name,)
                    )
                    row = await cursor.fetchone()
                    if row is not None and row[0]:
                        return
                    await asyncio.sleep(0.2)
        except TimeoutError:
            log_file = self.log_dir / "capture.log"
            raise StackError(f"the CDC capture did not start streaming in time (log: {log_file})") from None
        finally:
            await conn.close()

    async def _snapshot_build_upload(self, settings: Settings, watcher: ReportWatcher) -> Any:
        began = time.monotonic()
        summary = await run_snapshot(settings, progress=True)
        self.timings["snapshot"] = time.monotonic() - began
        expected = summary.published
        with (
            tqdm(total=expected, desc="build", unit="arc") as build,
            tqdm(total=expected, desc="upload", unit="arc") as upload,
        ):

            def refresh() -> None:
                self.services.check()
                build.n = min(expected, watcher.stage_total("build"))
                upload.n = min(expected, watcher.stage_total("upload"))
                build.refresh()
                upload.refresh()

            try:
                async with asyncio.timeout(self.options.timeout_s):
                    await watcher.wait_for(lambda: watcher.stage_total("upload") >= expected, refresh)
            except TimeoutError:
                raise StackError(
                    f"only {watcher.stage_total('upload')} of {expected} ARCs reached the store in time"
                ) from None
            refresh()
        self.timings["snapshot -> store"] = time.monotonic() - began
        if "upload" in watcher.first_seen:
            self.first_arc_s = watcher.first_seen["upload"] - began
        return summary

    async def _live_changes(self, settings: Settings, watcher: ReportWatcher) -> list[tuple[Change, float]]:
        results = []
        conn = await connect(settings.database_url.get_secret_value())
        try:
            first = "INV-000000"
            for make in (
                lambda: update_title(conn, first),
                lambda: insert_investigation(conn, self.options.seed, self.options.investigations),
                lambda: delete_investigation(conn, "INV-000001"),
            ):
                before = len(watcher.outcomes)
                began = time.monotonic()
                change = await make()

                def arrived(change: Change = change, before: int = before) -> bool:
                    return any(
                        o["identifier"] == change.identifier
                        and o["stage"] == "upload"
                        and o["status"] in change.expected
                        for o in watcher.outcomes[before:]
                    )

                try:
                    async with asyncio.timeout(self.options.timeout_s):
                        await watcher.wait_for(arrived, self.services.check)
                except TimeoutError:
                    raise StackError(
                        f"the {change.kind} of {change.identifier} did not reach the store in time"
                    ) from None
                elapsed = time.monotonic() - began
                in_store = await self._in_store(settings, change.identifier)
                _say(
                    f"  {change.kind:<6} {change.identifier}: arrived after {elapsed:.1f} s "
                    f"({'present in' if in_store else 'gone from'} the store)"
                )
                results.append((change, elapsed))
        finally:
            await conn.close()
        return results

    async def _in_store(self, settings: Settings, identifier: str) -> bool:
        async with httpx.AsyncClient(base_url=settings.uploader.target_url, timeout=10) as client:
            response = await client.get(f"/v3/arcs/{arc_id(identifier, settings.rdi)}")
            return response.status_code == 200

    def _summary(
        self,
        settings: Settings,
        watcher: ReportWatcher,
        snapshot: Any,
        changes: list[tuple[Change, float]],
        total_s: float,
    ) -> None:
        lines = ["", "summary"]
        lines.append(f"  snapshot run {snapshot.run_id}: {snapshot.published} payloads, {snapshot.failed} failed")
        for stage in ("extract", "build", "upload"):
            counts = {status: n for (s, status), n in sorted(watcher.counts.items()) if s == stage}
            if counts:
                lines.append(f"  {stage:<8} " + ", ".join(f"{status} {n}" for status, n in counts.items()))
        notes = {
            "services ready": "(from start to partitions assigned: consumer-group joins)",
            "snapshot": f"({snapshot.published} payloads read and published)",
        }
        to_store = self.timings.get("snapshot -> store")
        if to_store:
            arcs = snapshot.published
            notes["snapshot -> store"] = f"({arcs} ARCs built and uploaded, {arcs / to_store:.1f} ARCs/s)"
        for name, seconds in self.timings.items():
            lines.append(f"  {name:<19} {seconds:6.1f} s  {notes.get(name, '')}".rstrip())
            if name == "snapshot" and self.first_arc_s is not None:
                lines.append(f"  {'first ARC in store':<19} {self.first_arc_s:6.1f} s  (after the snapshot started)")
        for change, seconds in changes:
            lines.append(f"  live {change.kind:<14} {seconds:6.1f} s  ({change.identifier})")
        lines.append(f"  total               {total_s:6.1f} s")
        lines.append(f"  ARCs: {settings.uploader.target_url}/v3/arcs (files under {self.store_dir})")
        lines.append(f"  run report: arcstream report --run {snapshot.run_id}")
        for name, url in self.urls.items():
            lines.append(f"  {name}: {url}")
        _say("\n".join(lines))

    async def _until_interrupted(self) -> None:
        while True:
            await asyncio.sleep(1)
            self.services.check()


def run_demo(options: DemoOptions) -> int:
    try:
        return asyncio.run(Demo(options).run())
    except KeyboardInterrupt:
        return 0
