"""What the broker can do, probed at start-up instead of assumed.

arcstream is written for Apache Kafka and uses its guarantees where the broker
has them. The dev broker (Tansu 0.6) lacks some; each workaround for it applies
only where a probe shows it is needed, so a production deployment never runs
with a dev-broker default:

- **Idempotent producer** (no duplicates from producer retries, per-partition
  order kept across retries): used when the broker grants a producer id
  (``InitProducerId``); otherwise producers run without it. Tansu answers
  ``InitProducerId`` with an unknown error.
- **Commit metadata**: probed per consumer group on its first commit
  (:mod:`services.common.kafka.marks`).
- **First generation 0**: Tansu numbers a group's first generation 0, which
  aiokafka treats as "not joined" and so skips LeaveGroup;
  :func:`services.common.kafka.groups.stop_consumer` sends it when it sees that.

The result is cached per bootstrap address and logged once per process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.transaction import InitProducerIdRequest

from services.common.config import KafkaSettings
from services.common.errors import BrokerUnavailableError
from services.common.kafka.clients import common_options, make_producer, quiet_aiokafka, start_client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerCapabilities:
    """Guarantees the broker offers that arcstream uses when present."""

    idempotent_producer: bool

    def describe(self) -> str:
        return f"idempotent producer {'yes' if self.idempotent_producer else 'no (producers run without it)'}"


_probed: dict[str, BrokerCapabilities] = {}


async def broker_capabilities(kafka: KafkaSettings) -> BrokerCapabilities:
    """Probe the broker once per process (cached per bootstrap address)."""
    cached = _probed.get(kafka.bootstrap_servers)
    if cached is not None:
        return cached
    options = common_options(kafka)
    client = AIOKafkaClient(
        bootstrap_servers=options["bootstrap_servers"],
        client_id=options["client_id"],
        security_protocol=options["security_protocol"],
        ssl_context=options["ssl_context"],
        request_timeout_ms=options["request_timeout_ms"],
        sasl_mechanism=options.get("sasl_mechanism", "PLAIN"),
        sasl_plain_username=options.get("sasl_plain_username"),
        sasl_plain_password=options.get("sasl_plain_password"),
    )
    try:
        with quiet_aiokafka():
            await client.bootstrap()
    except (KafkaError, OSError) as exc:
        await client.close()
        raise BrokerUnavailableError(
            f"cannot reach Kafka at {kafka.bootstrap_servers} ({type(exc).__name__}): "
            "start it (arcstream dev up) or set KAFKA_BOOTSTRAP_SERVERS"
        ) from exc
    try:
        capabilities = BrokerCapabilities(idempotent_producer=await _grants_producer_id(client))
    finally:
        await client.close()
    log.info("broker %s: %s", kafka.bootstrap_servers, capabilities.describe())
    _probed[kafka.bootstrap_servers] = capabilities
    return capabilities


async def _grants_producer_id(client: AIOKafkaClient) -> bool:
    """True when the broker answers ``InitProducerId`` (no transactional id) with a producer id."""
    node = client.get_random_node()
    try:
        response = await client.send(node, InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60_000))
    except (KafkaError, OSError) as exc:
        log.debug("InitProducerId failed: %s", exc)
        return False
    return bool(response.error_code == 0 and response.producer_id >= 0)


async def start_producer(kafka: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """A started service producer, idempotent when the broker grants producer ids."""
    capabilities = await broker_capabilities(kafka)
    producer = make_producer(kafka, idempotent=capabilities.idempotent_producer, **overrides)
    await start_client(producer, kafka)
    return producer
