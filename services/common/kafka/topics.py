"""``arcstream topics ensure``: create arcstream's topics as configured, idempotently.

Existing topics are left alone (a second run changes nothing); a topic that
exists with fewer partitions than configured is reported, not altered, because
adding partitions would move keys between partitions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiokafka.admin import NewTopic

from services.common.config import Settings
from services.common.errors import BrokerUnavailableError
from services.common.kafka.clients import make_admin, start_client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The topics arcstream needs, with partitions, cleanup policy and size limits."""
    t = settings.topics
    big = str(t.max_message_bytes)
    return [
        TopicSpec(t.investigations, t.partitions, {"cleanup.policy": "compact", "max.message.bytes": big}),
        TopicSpec(t.arcs, t.partitions, {"cleanup.policy": "compact", "max.message.bytes": big}),
        TopicSpec(
            t.report,
            t.partitions,
            {
                "cleanup.policy": "delete",
                "retention.ms": str(t.report_retention_ms),
                "max.message.bytes": big,
            },
        ),
        TopicSpec(
            t.dlq,
            t.partitions,
            {"cleanup.policy": "delete", "retention.ms": str(t.dlq_retention_ms), "max.message.bytes": big},
        ),
        TopicSpec(t.state, t.partitions, {"cleanup.policy": "compact"}),
    ]


async def ensure_topics(settings: Settings) -> dict[str, str]:
    """Create missing topics; return ``{topic: "created" | "exists"}``."""
    admin = make_admin(settings.kafka)
    await start_client(admin, settings.kafka)
    try:
        existing = set(await admin.list_topics())
        specs = topic_specs(settings)
        missing = [spec for spec in specs if spec.name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        spec.name,
                        spec.partitions,
                        settings.topics.replication_factor,
                        topic_configs=spec.config,
                    )
                    for spec in missing
                ]
            )
            for name, code, message in _topic_errors(response):
                if code not in (0, 36):  # 36 = TOPIC_ALREADY_EXISTS (a concurrent ensure)
                    raise BrokerUnavailableError(f"cannot create topic {name}: error {code} {message or ''}".strip())
        described = await admin.describe_topics([spec.name for spec in specs])
        for topic in described:
            want = next(spec.partitions for spec in specs if spec.name == topic["topic"])
            have = len(topic.get("partitions", []))
            if have and have != want:
                log.warning("topic %s has %d partitions, configured %d: left as is", topic["topic"], have, want)
        return {spec.name: ("created" if spec in missing else "exists") for spec in specs}
    finally:
        await admin.close()


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    errors = getattr(response, "topic_errors", [])
    return [(entry[0], entry[1], entry[2] if len(entry) > 2 else None) for entry in errors]
