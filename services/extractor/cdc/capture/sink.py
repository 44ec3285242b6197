"""Publish captured records to Kafka exactly as Kafka Connect would, and only then acknowledge.

A batch handed over by the connector is sent in order and awaited in full
before the engine may mark it processed, so connector offsets never run
ahead of what the broker holds (at-least-once). Topics are created the way
a Connect worker with default topic creation would: one partition, default
cleanup, on first use (and up front for the tables we know of).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.common.config import Settings
from services.common.errors import BrokerUnavailableError
from services.common.kafka.clients import make_admin, make_producer, start_client

log = logging.getLogger(__name__)

#: Kafka error code for a topic created concurrently by someone else.
_TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class CapturedRecord:
    """One connector record: topic and the JSON bytes of key and value (``None`` = tombstone)."""

    topic: str
    key: bytes | None
    value: bytes | None


def change_topic(settings: Settings, table: str) -> str:
    """``<topic_prefix>.<schema>.<table>``, the topic Debezium names for a captured table."""
    return f"{settings.cdc.topic_prefix}.{table}"


def transaction_topic(settings: Settings) -> str:
    """``<topic_prefix>.transaction``: BEGIN/END markers of source transactions."""
    return f"{settings.cdc.topic_prefix}.transaction"


def heartbeat_topic(settings: Settings) -> str:
    """``__debezium-heartbeat.<topic_prefix>``: the connector's liveness records."""
    return f"__debezium-heartbeat.{settings.cdc.topic_prefix}"


class TopicSink:
    """An acknowledged, order-preserving Kafka writer for connector batches."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer = make_producer(settings.kafka, linger_ms=0)
        self._admin: AIOKafkaAdminClient = make_admin(settings.kafka)
        self._known: set[str] = set()
        self.published = 0

    async def start(self) -> None:
        await start_client(self._producer, self._settings.kafka)
        await start_client(self._admin, self._settings.kafka)
        self._known = set(await self._admin.list_topics())

    async def stop(self) -> None:
        """Close both clients (also after a failed :meth:`start`: nothing is left unclosed)."""
        await self._producer.stop()
        await self._admin.close()

    async def ensure_topics(self, topics: Iterable[str]) -> None:
        """Create the topics not seen yet (one partition each, like Connect's defaults)."""
        missing = sorted(set(topics) - self._known)
        if not missing:
            return
        response = await self._admin.create_topics(
            [NewTopic(name, 1, self._settings.topics.replication_factor) for name in missing]
        )
        for entry in getattr(response, "topic_errors", []):
            name, code = entry[0], entry[1]
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                raise BrokerUnavailableError(f"cannot create topic {name}: error {code}")
        self._known.update(missing)
        log.info("created topics %s", ", ".join(missing))

    async def publish(self, batch: list[CapturedRecord]) -> None:
        """Send a batch in order and wait until the broker has acknowledged all of it."""
        await self.ensure_topics(record.topic for record in batch)
        futures = [await self._producer.send(record.topic, key=record.key, value=record.value) for record in batch]
        if futures:
            await asyncio.gather(*futures)
        self.published += len(batch)
