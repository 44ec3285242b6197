"""The real clients of one consuming stage, opened and closed as a unit.

Every consuming stage needs the same set: a producer (idempotent where the broker
supports it), a consumer in the stage's group subscribed with the loop's rebalance
listener, the outcome writer, the commit marks and outcome recovery, and the
:class:`StageLoop` over them. Opening them here keeps the services free of client
plumbing and closes them in the right order (leave the group first, so partitions
move on at once; then the marks' admin client; then the producer, after every
acknowledged write).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.common import metrics
from services.common.config import Settings, StageSettings
from services.common.kafka.capabilities import start_producer
from services.common.kafka.clients import make_consumer, start_client
from services.common.kafka.groups import stop_consumer
from services.common.kafka.marks import MarkStore
from services.common.kafka.recovery import OutcomeRecovery
from services.common.kafka.stage import StageLoop
from services.common.kafka.topics import ensure_topics
from services.common.metrics_server import Readiness
from services.common.outcomes import OutcomeWriter


@dataclass
class StageMember:
    """What a stage's step works with."""

    producer: AIOKafkaProducer
    consumer: AIOKafkaConsumer
    outcomes: OutcomeWriter
    loop: StageLoop


@asynccontextmanager
async def stage_member(
    settings: Settings,
    stage: metrics.StageName,
    stage_settings: StageSettings,
    *,
    max_in_flight: int,
    readiness: Readiness,
    topics: list[str] | None = None,
    pattern: str | None = None,
    **consumer_options: Any,
) -> AsyncIterator[StageMember]:
    """Open the stage's clients, subscribe to ``topics`` (or ``pattern``), yield; close them on exit."""
    await ensure_topics(settings)
    group = stage_settings.group_id
    producer = await start_producer(settings.kafka)
    consumer = make_consumer(settings.kafka, [], group, **consumer_options)
    marks = MarkStore(settings.kafka, settings.topics.state, group, producer)
    try:
        await marks.open()
        outcomes = OutcomeWriter(producer, settings.topics, stage, group)
        recovery = OutcomeRecovery(settings.kafka, settings.topics.report, group, consumer, marks)
        loop = StageLoop(
            stage,
            stage_settings,
            consumer,
            outcomes,
            max_in_flight=max_in_flight,
            recovery=recovery,
            readiness=readiness,
        )
        if pattern is not None:
            consumer.subscribe(pattern=pattern, listener=loop.listener())
        else:
            consumer.subscribe(topics or [], listener=loop.listener())
        await start_client(consumer, settings.kafka)
        yield StageMember(producer, consumer, outcomes, loop)
    finally:
        await stop_consumer(consumer)
        await marks.close()
        await producer.stop()
