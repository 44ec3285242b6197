"""``arcstream dev up | down | env``: the single-machine stack as one unit.

``up`` starts what is not configured elsewhere (``DATABASE_URL`` /
``KAFKA_BOOTSTRAP_SERVERS`` / ``ARC_STORE_URL`` set means "use that server,
start nothing"), waits until each listens, and records the result in
``<state_dir>/stack.json``, which the config model reads. The test suite uses
the same functions for its session-scoped servers.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from services.dev.stack.broker import CLIENT_SETTINGS, start_broker, stop_broker
from services.dev.stack.ports import free_port, wait_for_port
from services.dev.stack.postgres import start_postgres, stop_postgres
from services.dev.stack.processes import is_running, spawn_detached, terminate
from services.dev.stack.state import ServerRecord, StackState, clear_state, read_state, write_state


def _external(env_name: str) -> ServerRecord | None:
    value = os.environ.get(env_name)
    return ServerRecord(url=value) if value else None


def start_store(
    data_dir: Path, port: int | None = None, extra_args: Sequence[str] = (), known_rdis: Sequence[str] = ()
) -> ServerRecord:
    """Start the local ARC store (``arcstream store``) as a detached process.

    It recognises ``known_rdis`` besides its configured ``store.known_rdis`` (the real API
    answers 400 for any other RDI) and serves the read-back routes (``--test-hooks``:
    ``GET /v3/arcs[/{id}]``, the request log) that the demo and the tests use to see what
    arrived. ``extra_args`` are more ``arcstream store`` flags (fault injection,
    ``--enable-delete``, ...).
    """
    port = port or free_port()
    log_file = data_dir.resolve() / "store.log"
    store_dir = data_dir.resolve() / "store"
    rdi_args = [arg for rdi in known_rdis for arg in ("--known-rdi", rdi)]
    pid = spawn_detached(
        [
            sys.executable,
            "-m",
            "services.cli",
            "store",
            "--dir",
            str(store_dir),
            "--port",
            str(port),
            "--test-hooks",
            *rdi_args,
            *extra_args,
        ],
        log_file,
    )
    wait_for_port("127.0.0.1", port, timeout=60, what="ARC store")
    return ServerRecord(url=f"http://127.0.0.1:{port}", pid=pid, data_dir=str(store_dir), log_file=str(log_file))


def up(state_dir: Path, *, with_store: bool = True, known_rdis: Sequence[str] = ()) -> StackState:
    """Start (or reuse) PostgreSQL, the broker and the store; record and return where they are.

    A store started here also recognises ``known_rdis`` (the configured ``rdi``); a reused one
    keeps the RDIs it was started with. Its ``DELETE /v3/arcs/{id}`` extension is switched on:
    the stack's store stands for a target that can delete, so the demo shows deletes arriving
    (the real API cannot delete; ``arcstream store`` alone and the test fixtures leave it off).
    """
    state = read_state(state_dir) or StackState()
    postgres = _external("DATABASE_URL")
    if postgres is None:
        if state.postgres and state.postgres.pid and is_running(state.postgres.pid):
            postgres = state.postgres
        else:
            postgres = start_postgres(state_dir)
    state.postgres = postgres
    write_state(state_dir, state)

    broker = _external("KAFKA_BOOTSTRAP_SERVERS")
    if broker is None:
        if state.broker and is_running(state.broker.pid):
            # A broker started by an older 'dev up' lacks the recorded client timings.
            broker = state.broker.model_copy(update={"client_settings": CLIENT_SETTINGS})
        else:
            broker = start_broker(state_dir)
    state.broker = broker
    write_state(state_dir, state)

    if with_store:
        store = _external("ARC_STORE_URL")
        if store is None:
            running = state.store if state.store and is_running(state.store.pid) else None
            store = running or start_store(state_dir, extra_args=["--enable-delete"], known_rdis=known_rdis)
        state.store = store
        write_state(state_dir, state)
    return state


def down(state_dir: Path) -> list[str]:
    """Stop what ``up`` started (never external servers); return what was stopped."""
    state = read_state(state_dir)
    stopped: list[str] = []
    if state is None:
        return stopped
    if state.store and state.store.pid:
        terminate(state.store.pid)
        stopped.append("store")
    if state.broker and state.broker.pid:
        stop_broker(state.broker)
        stopped.append("broker")
    if state.postgres and state.postgres.pid:
        stop_postgres(state.postgres)
        stopped.append("postgres")
    clear_state(state_dir)
    return stopped


def env_lines(state: StackState) -> list[str]:
    """Shell ``export`` lines for other tools."""
    return [f"export {name}={value}" for name, value in state.env().items()]
