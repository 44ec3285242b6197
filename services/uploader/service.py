"""``arcstream uploader``: deliver every ARC of ``arc.arcs`` to the ARC store, one outcome each.

The consumer-group loop (poll, in-flight bound, contiguous commits, rebalances,
recovery, SIGTERM) is :class:`services.common.kafka.stage.StageLoop`; this module is
the upload step. Per message (same partition order as the topic; different
identifiers in parallel, one version of an identifier at a time, a waiting version
superseded by a newer one):

- **ARC of a snapshot run**: into the run's harvest (``POST /v3/harvests/{id}/arcs``),
  *always* — a harvest must contain every ARC of the run, changed or not
  (:mod:`services.uploader.runs`); the outcome is ``created``, ``updated``, or
  ``unchanged`` when the content hash equals the one last delivered to this target
  (the API answers ``updated`` for identical content, so it cannot tell).
- **ARC outside a run** (CDC, or a run whose harvest is closed): ``POST /v3/arcs``;
  an ARC whose hash equals the last delivered one is ``unchanged`` without a request
  (unless ``--force``): safe outside harvests.
- **Tombstone**: ``DELETE /v3/arcs/{id}`` where the target has it (``deleted``);
  the FAIRagro API has no delete, so by default the outcome is ``retained``: the
  ARC stays at the target (docs/uploader.md says how to remove it there).
- **Run markers**: recorded per partition for the run's leader; a run-end only after
  every earlier message of its partition has its outcome.

The content hash and the identifier are computed from the ARC itself (off the event
loop), never taken from a header: an ARC whose root identifier differs from its key
fails (``key-mismatch``). While the target is unavailable or refuses this uploader
(:mod:`services.uploader.health`), every partition is held and nothing fails for it.
Order of writes per ARC: dead letter (if failed), outcome, delivered hash; each
acknowledged before the next.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiokafka import TopicPartition
from pydantic import ValidationError

from services.common import tracing
from services.common.config import Settings
from services.common.content_hash import arc_id as make_arc_id
from services.common.content_hash import content_hash, root_identifier
from services.common.errors import ArcstreamError, PayloadError
from services.common.kafka.latest import LatestPerKey
from services.common.kafka.member import stage_member
from services.common.kafka.stage import KeyedStep, Message, StageLoop, run_until_signalled
from services.common.metrics_server import Readiness, serve_metrics
from services.common.outcomes import OutcomeWriter, latency_ms
from services.common.records import H_ENGINE, H_RUN_ID, H_SOURCE_TS, MARKER_KINDS, RunMarker, dumps, loads
from services.common.report import NO_OUTPUT, OutcomeRecord, Status, parse_utc
from services.uploader.health import TargetHealth, TargetState
from services.uploader.probe import PROBE_PATH
from services.uploader.runs import RunCoordinator
from services.uploader.state import DeliveredHash, UploaderState, target_key
from services.uploader.target import AttemptError, Reply, TargetClient

log = logging.getLogger(__name__)

DELIVERED: frozenset[str] = frozenset({"created", "updated", "unchanged"})
RETAINED_MESSAGE = (
    "the target has no ARC delete (FAIRagro API v3): the ARC stays there; see docs/uploader.md for removing it"
)


@dataclass(frozen=True)
class Arc:
    """What the uploader reads from an ARC itself."""

    content_hash: str
    identifier: str | None


def read_arc(value: bytes) -> Arc:
    """Hash and root identifier of serialised ARC JSON (:class:`PayloadError` if it is not JSON)."""
    document = loads(value)
    return Arc(content_hash(document), root_identifier(document))


@dataclass
class Result:
    """What handling one message produced: its outcome, and what follows from it."""

    outcome: OutcomeRecord
    dlq: bool = False
    delivered_hash: DeliveredHash | None = None
    forget_hash: bool = False


def _first_seen_since(answer: dict[str, Any], started_at: str) -> bool:
    """True when the target first saw the ARC at or after ``started_at`` (ISO 8601, UTC)."""
    first_seen = (answer.get("metadata") or {}).get("first_seen")
    seen = parse_utc(first_seen) if isinstance(first_seen, str) else None
    start = parse_utc(started_at)
    return seen is not None and start is not None and seen >= start


class UploadStep(KeyedStep):
    """What the uploader does with each message of ``arc.arcs``."""

    def __init__(
        self,
        settings: Settings,
        loop: StageLoop,
        outcomes: OutcomeWriter,
        state: UploaderState,
        client: TargetClient,
        runs: RunCoordinator,
        *,
        force: bool,
    ) -> None:
        self._rdi = settings.rdi
        self._settings = settings.uploader
        self._loop = loop
        self._outcomes = outcomes
        self._state = state
        self._client = client
        self._runs = runs
        self._force = force
        self._group = loop.settings.group_id
        deliver = tracing.traced_job(self._deliver, self._group)
        self.latest = LatestPerKey(deliver, self._superseded, loop.spawn, one_at_a_time=True)
        #: Runs whose run-start was taken in and is being recorded (set once recorded).
        self._starting: dict[str, asyncio.Event] = {}

    async def take(self, message: Message) -> None:
        if message.kind in MARKER_KINDS:
            if message.kind == "run-start" and (run_id := message.headers.get(H_RUN_ID)):
                # ARCs after it on this partition must not look for the run before it is recorded.
                self._starting.setdefault(run_id, asyncio.Event())
            self._loop.spawn(self._marker(message), message)
        else:
            self.latest.submit(message.identifier, message)

    # -- markers -----------------------------------------------------------------------------------

    async def _marker(self, message: Message) -> None:
        run_id = message.headers.get(H_RUN_ID)
        try:
            await self._handle_marker(message)
        finally:
            recorded = self._starting.pop(run_id, None) if message.kind == "run-start" and run_id else None
            if recorded is not None:
                recorded.set()

    async def _handle_marker(self, message: Message) -> None:
        if message.recovered is not None:  # handled before a restart (its record or dead letter exists)
            self._loop.done(message)
            return
        try:
            marker = RunMarker.model_validate(loads(message.value or b"null"))
        except (PayloadError, ValidationError) as exc:
            error = PayloadError(f"unreadable run marker: {exc}", code="unreadable-marker")
            result = Result(self._failed(message, error, 0), dlq=True)
            async with self._loop.finishing(message):
                await self._emit(message, result)
            return
        if marker.kind == "run-end":
            await self._loop.wait_prior(message)
            async with self._loop.finishing(message):
                await self._runs.ended(marker)
        else:
            async with self._loop.finishing(message):
                await self._runs.started(marker)

    # -- ARCs and tombstones -------------------------------------------------------------------------

    async def _deliver(self, message: Message) -> None:
        """One ARC or tombstone, ending in its outcome (whatever goes wrong with it is its failure)."""
        if message.recovered is not None:
            async with self._loop.finishing(message):
                await self._restore(message.identifier, message.recovered)
            return
        started = time.monotonic()
        try:
            result = await (self._delete(message, started) if message.value is None else self._upload(message, started))
        except ArcstreamError as exc:
            result = Result(self._failed(message, exc, getattr(exc, "attempts", 0), started), dlq=True)
        async with self._loop.finishing(message):
            await self._emit(message, result)

    async def _superseded(self, older: Message, newer: Message) -> None:
        with tracing.consuming(older, self._group):
            async with self._loop.finishing(older):
                if older.recovered is None:
                    text = f"superseded by a newer version (offset {newer.offset}) before it was sent"
                    await self._emit(older, Result(self._outcome(older, "superseded", attempts=0, error_message=text)))

    async def _restore(self, identifier: str, outcome: OutcomeRecord) -> None:
        """The outcome exists already (written before a restart): bring the delivered hash in line."""
        current = self._state.hashes.get(identifier)
        if outcome.status in DELIVERED and outcome.content_hash:
            if current is None or current.content_hash != outcome.content_hash:
                delivered = DeliveredHash(content_hash=outcome.content_hash, arc_id=outcome.arc_id, at=outcome.at)
                await self._state.put_hash(identifier, delivered)
        elif outcome.status == "deleted":
            await self._state.forget_hash(identifier)

    async def _upload(self, message: Message, started: float) -> Result:
        assert message.value is not None
        if not message.identifier:
            raise PayloadError("ARC message without a key (identifier)", code="missing-key")
        arc = await asyncio.to_thread(read_arc, message.value)
        if arc.identifier is None:
            raise PayloadError("the ARC has no root node './' with a non-empty identifier (the target refuses it)")
        if arc.identifier != message.identifier.strip():
            raise PayloadError(
                f"the message key {message.identifier!r} differs from the ARC's identifier {arc.identifier!r}",
                code="key-mismatch",
            )
        run_id = message.headers.get(H_RUN_ID)
        if run_id and run_id in self._starting:
            await self._starting[run_id].wait()
        run = await self._runs.harvest(run_id) if run_id else None
        harvest_id = run.harvest_id if run is not None and run.status == "RUNNING" else None
        last = self._state.hashes.get(message.identifier)
        unchanged = last is not None and last.content_hash == arc.content_hash
        fields: dict[str, Any] = {"content_hash": arc.content_hash, "started": started}
        if harvest_id is None and unchanged and not self._force:
            assert last is not None
            return Result(self._outcome(message, "unchanged", attempts=0, arc_id=last.arc_id, **fields))
        try:
            reply, harvest_id = await self._post(message.value, harvest_id)
        except AttemptError as exc:
            failed = self._failed(message, exc, exc.attempts, started)
            return Result(failed.model_copy(update={"content_hash": arc.content_hash}), dlq=True)
        if run_id is not None and run is not None:
            await self._runs.activity(run_id, message.tp.partition)
        answer = reply.body if isinstance(reply.body, dict) else {}
        status: Status = "created" if answer.get("status") == "created" else "unchanged" if unchanged else "updated"
        server_hash = (answer.get("metadata") or {}).get("arc_hash")
        if (
            status == "updated"
            and last is None
            and server_hash == arc.content_hash
            and run is not None
            and _first_seen_since(answer, run.started_at)
        ):
            # Never delivered by us as far as the state knows, yet the target had this very content,
            # first seen during this run: an earlier attempt created it and its member died before
            # the outcome. What the target recorded is a new ARC, whatever the repeat's answer says.
            status = "created"
        arc_id = str(answer.get("arc_id") or make_arc_id(message.identifier, self._rdi))
        if server_hash and server_hash != arc.content_hash:
            log.warning(
                "target hash %s differs from the ARC's %s", server_hash, arc.content_hash, extra=message.log_extra
            )
        outcome = self._outcome(
            message,
            status,
            attempts=reply.attempts,
            http_status=reply.status,
            arc_id=arc_id,
            harvest_id=harvest_id,
            **fields,
        )
        return Result(
            outcome, delivered_hash=DeliveredHash(content_hash=arc.content_hash, arc_id=arc_id, at=outcome.at)
        )

    async def _post(self, value: bytes, harvest_id: str | None) -> tuple[Reply, str | None]:
        """Into the harvest while it is open, else as a single ARC; the ARC bytes are spliced in unchanged.

        A harvest that is gone (404) or refuses the ARC (409: closed meanwhile, or another
        version of this identifier went into it) sends the ARC on its own: it is the newest
        content of its identifier, and the outcome's ``harvest_id`` says where it went.
        """
        if harvest_id is not None:
            try:
                path = f"/v3/harvests/{harvest_id}/arcs"
                return await self._client.call("POST", path, b'{"arc":' + value + b"}"), harvest_id
            except AttemptError as exc:
                if exc.status not in (404, 409):
                    raise
                log.info("harvest %s refused an ARC (%s): delivering it on its own", harvest_id, exc)
        body = b'{"rdi":' + dumps(self._rdi) + b',"arc":' + value + b"}"
        return await self._client.call("POST", "/v3/arcs", body), None

    async def _delete(self, message: Message, started: float) -> Result:
        arc_id = make_arc_id(message.identifier, self._rdi)
        if not self._settings.target_deletes:
            return Result(
                self._outcome(
                    message, "retained", attempts=0, arc_id=arc_id, started=started, error_message=RETAINED_MESSAGE
                )
            )
        try:
            reply = await self._client.call("DELETE", f"/v3/arcs/{arc_id}")
            http_status, attempts = reply.status, reply.attempts
        except AttemptError as exc:
            if exc.status != 404:  # 404: nothing to delete
                return Result(self._failed(message, exc, exc.attempts, started), dlq=True)
            http_status, attempts = exc.status, exc.attempts
        outcome = self._outcome(
            message, "deleted", attempts=attempts, http_status=http_status, arc_id=arc_id, started=started
        )
        return Result(outcome, forget_hash=True)

    # -- outcomes ------------------------------------------------------------------------------------

    def _outcome(
        self, message: Message, status: Status, *, attempts: int, started: float | None = None, **fields: Any
    ) -> OutcomeRecord:
        tracing.outcome(status, fields.get("error_code"))
        return OutcomeRecord(
            identifier=message.identifier,
            stage="upload",
            status=status,
            run_id=message.headers.get(H_RUN_ID),
            target=self._state.target,
            attempts=attempts,
            duration_ms=round((time.monotonic() - (started or message.taken_at)) * 1000, 3),
            latency_ms=latency_ms(message.headers.get(H_SOURCE_TS)) if status not in NO_OUTPUT else None,
            engine=message.headers.get(H_ENGINE),
            **fields,
        )

    def _failed(
        self, message: Message, error: ArcstreamError, attempts: int, started: float | None = None
    ) -> OutcomeRecord:
        return self._outcome(
            message,
            "failed",
            attempts=attempts,
            started=started,
            http_status=getattr(error, "status", None),
            error_code=error.code,
            error_message=str(error),
        )

    async def _emit(self, message: Message, result: Result) -> None:
        """Dead letter (if any), then the outcome, then the delivered-hash state; each acknowledged."""
        if result.dlq:
            await self._outcomes.fail(
                result.outcome, key=message.key, value=message.value, headers=message.raw_headers, origin=message.origin
            )
        else:
            await self._outcomes.report(result.outcome, message.origin)
        if result.delivered_hash is not None:
            await self._state.put_hash(message.identifier, result.delivered_hash)
        if result.forget_hash:
            await self._state.forget_hash(message.identifier)


class Uploader:
    """The uploader service; :meth:`run` until the stop event is set."""

    def __init__(self, settings: Settings, *, group_id: str | None = None, force: bool | None = None) -> None:
        up = settings.uploader
        self.settings = settings
        self.stage_settings = up.model_copy(update={"group_id": group_id}) if group_id else up
        self.group_id = self.stage_settings.group_id
        self.force = up.force if force is None else force
        self.readiness = Readiness("broker", "assigned", "target")
        self.readiness.set("target", True)
        self._loop: StageLoop | None = None

    @property
    def in_flight(self) -> int:
        return self._loop.in_flight if self._loop is not None else 0

    def assignment(self) -> frozenset[TopicPartition]:
        return self._loop.assignment() if self._loop is not None else frozenset()

    async def run(self, stop: asyncio.Event) -> None:
        settings = self.settings
        async with (
            serve_metrics(settings.metrics, self.readiness),
            stage_member(
                settings,
                "upload",
                self.stage_settings,
                max_in_flight=self.stage_settings.max_in_flight,
                readiness=self.readiness,
                topics=[settings.topics.arcs],
            ) as member,
        ):
            loop = self._loop = member.loop
            state = UploaderState(
                settings.kafka, settings.topics.state, target_key(settings.rdi, settings.uploader.target_url)
            )
            await state.start(member.producer)

            def target_changed(target_state: TargetState) -> None:
                up = target_state is TargetState.UP
                self.readiness.set("target", up)
                loop.hold(None if up else f"target {target_state.value}")

            client = TargetClient(
                settings.uploader,
                TargetHealth(settings.uploader, target_changed),
                recheck=f"{PROBE_PATH}?{urlencode({'rdi': settings.rdi, 'limit': 1})}",
            )
            leader = TopicPartition(settings.topics.arcs, 0)
            runs = RunCoordinator(state, client, settings.rdi, settings.uploader, lambda: leader in loop.assignment())
            runs.start()
            log.info(
                "uploader: %s -> %s (rdi %s, group %s%s)",
                settings.topics.arcs,
                settings.uploader.target_url,
                settings.rdi,
                self.group_id,
                ", force" if self.force else "",
            )
            try:
                step = UploadStep(settings, loop, member.outcomes, state, client, runs, force=self.force)
                await loop.run(step, stop)
            finally:
                await runs.close()
                await client.aclose()
                await state.close()
        log.info("uploader stopped")


async def run_uploader(settings: Settings, *, force: bool | None = None) -> None:
    """Run one uploader until SIGTERM/SIGINT."""
    await run_until_signalled(Uploader(settings, force=force).run)
