"""The stage core's delivery rules, each in milliseconds against the fake clients (no broker).

The same loop runs the builder, the uploader and the CDC extractor; their end-to-end
tests on the real broker cover it again with real clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from aiokafka import TopicPartition

from services.common.config import StageSettings, TopicSettings
from services.common.errors import BrokerUnavailableError
from services.common.kafka.latest import LatestPerKey
from services.common.kafka.stage import Message, StageLoop, Step
from services.common.outcomes import OutcomeWriter
from services.common.records import H_ERROR_CODE, header_dict, loads
from services.common.report import OutcomeRecord

from .fakes import FakeConsumer, FakeProducer, record

TOPICS = TopicSettings(prefix="t")
P0 = TopicPartition("t.in", 0)
P1 = TopicPartition("t.in", 1)


@dataclass
class GatedStep(Step):
    """Each message's job waits for its gate, then writes a ``built`` outcome (or raises, if told to)."""

    loop: StageLoop
    outcomes: OutcomeWriter
    gates: dict[tuple[int, int], asyncio.Event] = field(default_factory=dict)
    taken: list[tuple[int, int]] = field(default_factory=list)
    fail: set[tuple[int, int]] = field(default_factory=set)

    def gate(self, tp: TopicPartition, offset: int) -> asyncio.Event:
        return self.gates.setdefault((tp.partition, offset), asyncio.Event())

    async def take(self, message: Message) -> None:
        self.taken.append((message.tp.partition, message.offset))
        self.loop.spawn(self._job(message), message)

    async def _job(self, message: Message) -> None:
        await self.gate(message.tp, message.offset).wait()
        if (message.tp.partition, message.offset) in self.fail:
            raise RuntimeError("a bug in the step")
        async with self.loop.finishing(message):
            await self.outcomes.report(
                OutcomeRecord(identifier=message.identifier, stage="build", status="built"), message.origin
            )


@asynccontextmanager
async def running(
    consumer: FakeConsumer,
    step_factory: Callable[[StageLoop, OutcomeWriter], Step],
    *,
    max_in_flight: int = 100,
    producer: FakeProducer | None = None,
    assign: tuple[TopicPartition, ...] = (P0,),
) -> AsyncIterator[tuple[StageLoop, Step, FakeProducer]]:
    producer = producer or FakeProducer()
    outcomes = OutcomeWriter(producer, TOPICS, "build", "g")  # type: ignore[arg-type]  # a fake producer
    settings = StageSettings(group_id="g", max_in_flight=max_in_flight, commit_interval_ms=0, shutdown_grace_ms=100)
    loop = StageLoop("build", settings, consumer, outcomes, max_in_flight=max_in_flight)
    consumer.listener = loop.listener()
    await consumer.assign(assign)
    step = step_factory(loop, outcomes)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(step, stop))
    try:
        yield loop, step, producer
    finally:
        stop.set()
        await task


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (the limit only bounds a hung test, it asserts nothing about speed)."""
    async with asyncio.timeout(5):
        # The fakes have no event to wait on: give the loop turns until the condition holds.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.002)


def built(producer: FakeProducer) -> list[tuple[str, int]]:
    """(identifier, origin offset) of every outcome written."""
    return [
        (loads(s.value or b"{}")["identifier"], int(header_dict(s.headers)["arcstream.origin.offset"]))
        for s in producer.on(TOPICS.report)
    ]


def test_offsets_are_committed_only_up_to_the_first_unfinished_message() -> None:
    consumer = FakeConsumer(record(P0, offset, f"k{offset}") for offset in range(5))

    async def scenario() -> None:
        async with running(consumer, lambda loop, out: GatedStep(loop, out)) as (loop, step, producer):
            assert isinstance(step, GatedStep)
            await eventually(lambda: loop.in_flight == 5, "all five taken")
            for offset in (0, 2, 3):
                step.gate(P0, offset).set()
            await eventually(lambda: len(producer.on(TOPICS.report)) == 3, "three outcomes")
            await eventually(lambda: consumer.committed.get(P0) == 1, "commit after offset 0")
            await asyncio.sleep(0.02)
            assert consumer.committed[P0] == 1  # 1 is unfinished: 2 and 3 must wait for it
            step.gate(P0, 1).set()
            await eventually(lambda: consumer.committed.get(P0) == 4, "commit up to the unfinished 4")
            step.gate(P0, 4).set()
            await eventually(lambda: consumer.committed.get(P0) == 5, "commit to the end")
        assert all(offsets == sorted(offsets) for offsets in [[c[P0] for c in consumer.commits if P0 in c]])

    asyncio.run(scenario())


def test_partitions_pause_at_the_bound_and_resume_below_it() -> None:
    consumer = FakeConsumer(record(P0, offset, f"k{offset}") for offset in range(5))

    async def scenario() -> None:
        async with running(consumer, lambda loop, out: GatedStep(loop, out), max_in_flight=2) as (loop, step, _):
            assert isinstance(step, GatedStep)
            await eventually(lambda: loop.in_flight == 2 and loop.paused() == loop.assignment(), "paused at 2")
            await asyncio.sleep(0.02)
            assert step.taken == [(0, 0), (0, 1)]  # nothing more is taken while paused
            step.gate(P0, 0).set()
            await eventually(lambda: step.taken == [(0, 0), (0, 1), (0, 2)], "one more taken below the bound")
            assert loop.paused() == loop.assignment()  # and paused again at the bound
            for offset in range(5):
                step.gate(P0, offset).set()
            await eventually(lambda: loop.in_flight == 0 and not loop.paused(), "resumed and drained")
            assert len(step.taken) == 5

    asyncio.run(scenario())


def test_a_hold_pauses_everything_until_released() -> None:
    consumer = FakeConsumer(record(P0, offset, f"k{offset}") for offset in range(3))

    async def scenario() -> None:
        async with running(consumer, lambda loop, out: GatedStep(loop, out)) as (loop, step, _):
            assert isinstance(step, GatedStep)
            loop.hold("target unavailable")
            await eventually(lambda: loop.paused() == loop.assignment(), "held")
            await asyncio.sleep(0.02)
            assert step.taken == []
            loop.hold(None)
            await eventually(lambda: len(step.taken) == 3 and not loop.paused(), "released")
            for offset in range(3):
                step.gate(P0, offset).set()

    asyncio.run(scenario())


def test_a_rebalance_mid_flight_keeps_work_of_kept_partitions_and_abandons_the_rest() -> None:
    consumer = FakeConsumer([record(P0, 0, "a"), record(P0, 1, "b"), record(P1, 0, "c")])

    async def scenario() -> None:
        factory = lambda loop, out: GatedStep(loop, out)  # noqa: E731
        async with running(consumer, factory, assign=(P0, P1)) as (loop, step, producer):
            assert isinstance(step, GatedStep)
            await eventually(lambda: loop.in_flight == 3, "all taken")
            step.gate(P0, 0).set()
            await eventually(lambda: built(producer) == [("a", 0)], "the first outcome")
            # Another member joins and takes P1; P0 stays here. Work on P0/1 keeps running,
            # P1/0 is cancelled (its new owner redoes it) and the re-fetch of P0/1 is not taken twice.
            await consumer.assign([P0])
            assert consumer.committed[P0] == 1 and consumer.committed.get(P1, 0) == 0  # nothing of P1 is done
            await eventually(lambda: loop.in_flight == 1, "P1's work dropped")
            step.gate(P0, 1).set()
            step.gate(P1, 0).set()
            await eventually(lambda: consumer.committed.get(P0) == 2, "P0 committed to the end")
            await asyncio.sleep(0.02)
        assert built(producer) == [("a", 0), ("b", 1)]
        assert step.taken == [(0, 0), (0, 1), (1, 0)]
        assert loop.rebalances == 2

    asyncio.run(scenario())


def test_newest_version_per_key_wins_through_the_loop() -> None:
    consumer = FakeConsumer(record(P0, offset, "same") for offset in range(3))

    @dataclass
    class Latest(Step):
        loop: StageLoop
        outcomes: OutcomeWriter
        release: asyncio.Event = field(default_factory=asyncio.Event)

        def __post_init__(self) -> None:
            self.latest: LatestPerKey[Message] = LatestPerKey(self._run, self._old, self.loop.spawn, one_at_a_time=True)

        async def take(self, message: Message) -> None:
            self.latest.submit(message.identifier, message)

        async def _run(self, message: Message) -> None:
            await self.release.wait()
            await self._write(message, "built")

        async def _old(self, older: Message, newer: Message) -> None:
            await self._write(older, "superseded")

        async def _write(self, message: Message, status: str) -> None:
            async with self.loop.finishing(message):
                outcome = OutcomeRecord(identifier=message.identifier, stage="build", status=status)  # type: ignore[arg-type]
                await self.outcomes.report(outcome, message.origin)

    async def scenario() -> None:
        async with running(consumer, lambda loop, out: Latest(loop, out)) as (_loop, step, producer):
            assert isinstance(step, Latest)
            await eventually(lambda: len(producer.on(TOPICS.report)) == 1, "the middle version superseded")
            step.release.set()
            await eventually(lambda: consumer.committed.get(P0) == 3, "all handled")
        statuses = [
            (loads(s.value or b"{}")["status"], int(header_dict(s.headers)["arcstream.origin.offset"]))
            for s in producer.on(TOPICS.report)
        ]
        assert statuses == [("superseded", 1), ("built", 0), ("built", 2)]

    asyncio.run(scenario())


def test_a_bug_in_the_step_fails_that_message_only() -> None:
    consumer = FakeConsumer(record(P0, offset, f"k{offset}") for offset in range(3))

    async def scenario() -> None:
        async with running(consumer, lambda loop, out: GatedStep(loop, out, fail={(0, 1)})) as (_loop, step, producer):
            assert isinstance(step, GatedStep)
            for offset in range(3):
                step.gate(P0, offset).set()
            await eventually(lambda: consumer.committed.get(P0) == 3, "all three handled")
        reports = [loads(s.value or b"{}") for s in producer.on(TOPICS.report)]
        assert sorted((r["identifier"], r["status"], r.get("error_code")) for r in reports) == [
            ("k0", "built", None),
            ("k1", "failed", "internal-error"),
            ("k2", "built", None),
        ]
        [dead] = producer.on(TOPICS.dlq)
        assert (dead.key, header_dict(dead.headers)[H_ERROR_CODE]) == (b"k1", "internal-error")

    asyncio.run(scenario())


def test_a_broker_that_cannot_take_outcomes_stops_the_loop_and_nothing_is_committed_past_it() -> None:
    consumer = FakeConsumer(record(P0, offset, f"k{offset}") for offset in range(2))
    producer = FakeProducer()

    async def scenario() -> None:
        with pytest.raises(BrokerUnavailableError, match="cannot write to Kafka"):
            async with running(consumer, lambda loop, out: GatedStep(loop, out), producer=producer) as (_, step, _):
                assert isinstance(step, GatedStep)
                step.gate(P0, 0).set()
                await eventually(lambda: consumer.committed.get(P0) == 1, "the first one committed")
                producer.broken = True
                step.gate(P0, 1).set()
                await asyncio.sleep(0.05)
        assert consumer.committed[P0] == 1

    asyncio.run(scenario())


def test_outcomes_written_before_a_restart_reach_the_step_instead_of_being_repeated() -> None:
    consumer = FakeConsumer(record(P0, offset, f"k{offset}") for offset in range(2))
    earlier = OutcomeRecord(identifier="k0", stage="build", status="built")

    class Recovered:
        async def prepare(
            self, partitions: frozenset[TopicPartition]
        ) -> tuple[dict[tuple[str, int, int], OutcomeRecord], dict[int, int]]:
            return {(P0.topic, 0, 0): earlier}, {0: 7}

        async def commit(self, points: dict[TopicPartition, tuple[int, dict[int, int]]]) -> None:
            self.points = points

    @dataclass
    class Step_(Step):
        loop: StageLoop
        seen: list[OutcomeRecord | None] = field(default_factory=list)

        async def take(self, message: Message) -> None:
            self.seen.append(message.recovered)
            self.loop.done(message)

    async def scenario() -> None:
        producer = FakeProducer()
        outcomes = OutcomeWriter(producer, TOPICS, "build", "g")  # type: ignore[arg-type]  # a fake producer
        recovery = Recovered()
        settings = StageSettings(group_id="g", commit_interval_ms=0)
        loop = StageLoop("build", settings, consumer, outcomes, max_in_flight=10, recovery=recovery)
        consumer.listener = loop.listener()
        await consumer.assign([P0])
        step = Step_(loop)
        stop = asyncio.Event()
        task = asyncio.create_task(loop.run(step, stop))
        await eventually(lambda: len(step.seen) == 2, "both taken")
        stop.set()
        await task
        assert step.seen == [earlier, None]
        # The commit carries the report positions a later member starts its scan from.
        assert recovery.points == {P0: (2, {0: 7})}

    asyncio.run(scenario())
