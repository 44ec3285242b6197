"""Factories for aiokafka producers, consumers and admin clients built from :class:`KafkaSettings`.

One place maps the security settings (TLS, SASL) and the size limits onto
every client, and maps "cannot reach the broker" to :class:`BrokerUnavailableError`.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.helpers import create_ssl_context

from services.common.config import KafkaSettings
from services.common.errors import BrokerUnavailableError


def _ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    if kafka.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    return create_ssl_context(
        cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None,
        certfile=str(kafka.ssl_certfile) if kafka.ssl_certfile else None,
        keyfile=str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None,
    )


def common_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection and security options every client takes."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
        "ssl_context": _ssl_context(kafka),
        "request_timeout_ms": kafka.request_timeout_ms,
    }
    if kafka.sasl_mechanism:
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_plain_username
        options["sasl_plain_password"] = (
            kafka.sasl_plain_password.get_secret_value() if kafka.sasl_plain_password else None
        )
    return options


def make_producer(kafka: KafkaSettings, *, idempotent: bool = False, **overrides: Any) -> AIOKafkaProducer:
    """A producer sized for multi-MB ARCs, ``acks=all``; idempotent where the broker supports it.

    Long-lived service producers come from :func:`services.common.kafka.capabilities.start_producer`,
    which probes the broker for idempotence; short-lived tool producers may skip the probe.
    """
    options = common_options(kafka) | {
        "acks": "all",
        "enable_idempotence": idempotent,
        "compression_type": kafka.compression_type,
        "max_request_size": kafka.max_request_size,
        "linger_ms": kafka.linger_ms,
        "max_batch_size": kafka.batch_size,
    }
    return AIOKafkaProducer(**(options | overrides))


def make_consumer(
    kafka: KafkaSettings, topics: Sequence[str], group_id: str | None, **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer with manual commits, reading from the earliest offset when the group is new."""
    options = common_options(kafka) | {
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": kafka.max_partition_fetch_bytes,
        "fetch_max_bytes": kafka.fetch_max_bytes,
        "session_timeout_ms": kafka.session_timeout_ms,
        "heartbeat_interval_ms": kafka.heartbeat_interval_ms,
        "max_poll_interval_ms": kafka.max_poll_interval_ms,
    }
    if kafka.rebalance_timeout_ms is not None:
        options["rebalance_timeout_ms"] = kafka.rebalance_timeout_ms
    return AIOKafkaConsumer(*topics, **(options | overrides))


def make_admin(kafka: KafkaSettings) -> AIOKafkaAdminClient:
    """An admin client (topic management, consumer-group offsets)."""
    options = common_options(kafka)
    return AIOKafkaAdminClient(**options)


async def check_broker(kafka: KafkaSettings) -> None:
    """Raise :class:`BrokerUnavailableError` (one line) unless the broker answers.

    For commands with slow start-up work (a JVM, a faust worker) that should fail before it.
    """
    admin = make_admin(kafka)
    await start_client(admin, kafka)
    await admin.close()


class _Silenced(logging.Filter):
    """Drops aiokafka's own connection errors while we start a client: we report them as one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextmanager
def quiet_aiokafka() -> Iterator[None]:
    """Silence aiokafka's own logging inside the block: a failure there is reported by us, in one line."""
    silenced = _Silenced()
    # A filter applies only to records of its own logger, so every aiokafka logger gets it.
    names = ["aiokafka", *(name for name in logging.root.manager.loggerDict if name.startswith("aiokafka."))]
    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addFilter(silenced)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(silenced)


async def start_client(client: AIOKafkaProducer | AIOKafkaConsumer | AIOKafkaAdminClient, kafka: KafkaSettings) -> None:
    """Start a client; an unreachable broker becomes one clear :class:`BrokerUnavailableError`."""
    try:
        with quiet_aiokafka():
            await client.start()
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        await _close_quietly(client)  # else aiokafka warns "Unclosed AIOKafka..." after our one line
        raise BrokerUnavailableError(
            f"cannot reach Kafka at {kafka.bootstrap_servers} ({type(exc).__name__}): "
            "start it (arcstream dev up) or set KAFKA_BOOTSTRAP_SERVERS"
        ) from exc


async def _close_quietly(client: AIOKafkaProducer | AIOKafkaConsumer | AIOKafkaAdminClient) -> None:
    """Release what a client that failed to start holds; errors while closing add nothing."""
    try:
        if isinstance(client, AIOKafkaAdminClient):
            await client.close()
        else:
            await client.stop()
    except Exception:  # the start error is what the caller reports
        logging.getLogger(__name__).debug("closing a client that failed to start", exc_info=True)
