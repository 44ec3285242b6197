"""Find outcomes this uploader group already wrote for messages it will now read again.

At-least-once means a restart re-reads every message after the last committed
offset, including some whose outcome was already on ``arc.report`` when the
process died. Writing a second outcome for those would break "one terminal
outcome per version", so before consuming, the uploader scans the report topic
from the commit mark (see :mod:`services.uploader.state`) and collects outcomes
whose origin headers name this group, the input topic and an offset at or after
the committed one. Those messages are then acknowledged without a new outcome.

Why a mark rather than commit metadata: the dev broker does not keep offset
commit metadata, so the position lives in the compacted state topic instead.
"""

from __future__ import annotations

from services.common.config import KafkaSettings
from services.common.kafka.clients import make_consumer, start_client
from services.common.kafka.reading import iter_topic, topic_partitions
from services.common.records import H_ORIGIN_OFFSET, H_ORIGIN_PARTITION, H_ORIGIN_TOPIC, header_dict, loads
from services.common.report import OutcomeRecord

#: Header naming the consumer group that wrote an outcome (its origin offsets mean something only there).
H_ORIGIN_GROUP = "arcstream.origin.group"


async def end_offsets(kafka: KafkaSettings, topic: str) -> dict[int, int]:
    """End offset of every partition of ``topic`` as the broker lists it.

    On the dev broker this may be below the true end (see ``true_end``); callers use
    it only as a lower bound where too low means reading a little more, never less.
    """
    consumer = make_consumer(kafka, [], group_id=None)
    await start_client(consumer, kafka)
    try:
        tps = await topic_partitions(consumer, topic)
        ends = await consumer.end_offsets(tps) if tps else {}
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def written_outcomes(
    kafka: KafkaSettings,
    report_topic: str,
    start: dict[int, int],
    group: str,
    input_topic: str,
    committed: dict[int, int],
) -> dict[tuple[int, int], OutcomeRecord]:
    """Outcomes of ``group`` for ``input_topic`` messages at or after ``committed[partition]``.

    ``start`` gives, per report partition, the first offset to read (missing: from the beginning).
    """
    found: dict[tuple[int, int], OutcomeRecord] = {}
    async for record in iter_topic(kafka, report_topic, start):
        headers = header_dict(record.headers)
        if headers.get(H_ORIGIN_GROUP) != group or headers.get(H_ORIGIN_TOPIC) != input_topic:
            continue
        partition = int(headers.get(H_ORIGIN_PARTITION, "-1"))
        offset = int(headers.get(H_ORIGIN_OFFSET, "-1"))
        if partition in committed and offset >= committed[partition] and record.value is not None:
            found[(partition, offset)] = OutcomeRecord.model_validate(loads(record.value))
    return found
