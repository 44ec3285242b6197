"""Consumer-group housekeeping: leave a group cleanly, and see who is in it.

Why :func:`stop_consumer` exists: the dev broker (Tansu 0.6) numbers a group's
first generation 0, and aiokafka only sends LeaveGroup when the generation is
above 0. A consumer of a fresh group therefore stays listed as a member after
it stopped (the broker does not expire it by session timeout either), so the
next member's join waits for the old member's rebalance timeout and
``arcstream replay`` refuses the "active" group. LeaveGroup carries no
generation, so sending it for generation 0 is correct on every broker.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.common.errors import BrokerUnavailableError


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop ``consumer`` and leave its group, also when the broker's generation started at 0."""
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is not None and coordinator.generation == 0 and coordinator.member_id:
        coordinator.generation = 1  # only makes aiokafka send the LeaveGroup it would otherwise skip
    await consumer.stop()


@dataclass(frozen=True)
class GroupMember:
    member_id: str
    client_id: str
    client_host: str


@dataclass(frozen=True)
class GroupDescription:
    group: str
    state: str
    members: tuple[GroupMember, ...]


async def describe_group(admin: AIOKafkaAdminClient, group: str) -> GroupDescription:
    """State and members of one consumer group (an unknown group is ``Empty`` or ``Dead``)."""
    try:
        responses = await admin.describe_consumer_groups([group])
    except KafkaError as exc:
        raise BrokerUnavailableError(f"cannot describe consumer group {group!r}: {exc}") from exc
    for response in responses:
        for error_code, group_id, state, _protocol_type, _protocol, members, *_ in response.groups:
            if group_id != group:
                continue
            if error_code:
                raise BrokerUnavailableError(f"cannot describe consumer group {group!r}: error {error_code}")
            return GroupDescription(
                group=group_id,
                state=state,
                members=tuple(
                    GroupMember(m[0], m[1] if len(m) > 1 else "", m[2] if len(m) > 2 else "") for m in members
                ),
            )
    return GroupDescription(group=group, state="Dead", members=())
