"""Whether the target can take ARCs now: up, unavailable (an outage) or misconfigured.

A failure that is the *target's* state, not the ARC's, must not fail ARC after ARC
into the dead-letter topic. Two such states stop delivery as a whole instead:

- **unavailable**: connection errors, timeouts, 502/503/504. Delivery pauses (the
  uploader holds its partitions, readiness is false, ``arcstream_target_unavailable``
  is 1) and one trial request goes out at a time, after a backoff that grows from
  ``backoff_initial_s`` to ``backoff_max_s`` (or the server's ``Retry-After``); the
  first success resumes everything. ARCs wait for as long as the outage lasts, up to
  ``outage_budget_s``; past it they fail (``target-failed``) — the budget must stay
  below the retention of ``arc.arcs`` (compacted: its newest versions never expire).
- **misconfigured**: 400 (unknown RDI), 401 (client certificate required), 403 (RDI
  not authorised by the certificate). Nothing is sent but a re-check every
  ``misconfigured_recheck_s`` (the client's side-effect-free re-check request), one error
  line per change of the problem, ``arcstream_target_misconfigured{reason}`` 1,
  readiness false. Messages stay in Kafka and flow once the configuration is fixed
  (here by a restart with the right settings, or at the target).

This is a circuit breaker (closed = up, open = unavailable/misconfigured, half-open
= the trial request); callers go through :meth:`TargetHealth.admit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from services.common import metrics
from services.common.config import UploaderSettings

log = logging.getLogger(__name__)


class TargetState(enum.Enum):
    UP = "up"
    UNAVAILABLE = "unavailable"
    MISCONFIGURED = "misconfigured"


#: Reason label of ``arcstream_target_misconfigured`` per HTTP status.
MISCONFIGURATION: dict[int, str] = {400: "unknown-rdi", 401: "certificate-required", 403: "rdi-not-authorised"}
#: HTTP statuses that mean the target as a whole is not there right now.
UNAVAILABLE_STATUSES: frozenset[int] = frozenset({502, 503, 504})
#: What an operator does about each misconfiguration.
FIX: dict[str, str] = {
    "unknown-rdi": "set 'rdi' to an RDI the target knows, or have it added to the target's known RDIs",
    "certificate-required": "configure uploader.tls.client_cert and client_key (mTLS)",
    "rdi-not-authorised": "use a client certificate that lists this RDI, or the RDI the certificate lists",
}


class TargetHealth:
    """The shared state every request consults; see the module docstring."""

    def __init__(
        self,
        settings: UploaderSettings,
        on_change: Callable[[TargetState], None] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._on_change = on_change
        self._clock = clock
        self.state = TargetState.UP
        self.reason: str | None = None
        self.since = clock()
        self._next_trial = 0.0
        self._backoff = settings.backoff_initial_s
        self._trial_running = False
        self._changed = asyncio.Event()
        metrics.set_target_state(unavailable=False, misconfigured=None)

    @property
    def down_for_s(self) -> float:
        """Seconds since the target stopped taking ARCs (0 while it is up)."""
        return 0.0 if self.state is TargetState.UP else self._clock() - self.since

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[bool]:
        """Wait until a request may go out; yields ``True`` for the trial request of a stopped target."""
        while True:
            if self.state is TargetState.UP:
                yield False
                return
            now = self._clock()
            if not self._trial_running and now >= self._next_trial:
                self._trial_running = True
                try:
                    yield True
                finally:
                    self._trial_running = False
                    self._changed.set()
                return
            self._changed.clear()
            wait = max(0.05, self._next_trial - now) if not self._trial_running else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=wait)

    def succeeded(self) -> None:
        """A request got an answer that was not about the target's state: it takes ARCs."""
        if self.state is not TargetState.UP:
            log.info("target back after %.0fs (%s): delivery resumes", self.down_for_s, self.reason)
            self._set(TargetState.UP, None)
        self._backoff = self._settings.backoff_initial_s

    def unavailable(self, reason: str, retry_after: float | None = None) -> float:
        """A connection error, timeout or 502/503/504: pause; return the seconds until the next trial.

        The server's ``Retry-After`` is honoured (plus a little jitter, so clients told the
        same second spread out); without one the wait is drawn from a backoff that doubles
        per failed trial up to ``backoff_max_s`` (full jitter).
        """
        if self.state is not TargetState.UNAVAILABLE:
            log.warning("target unavailable (%s): delivery paused; retrying", reason)
            self._set(TargetState.UNAVAILABLE, reason)
        else:
            self.reason = reason
        if retry_after is not None:
            wait = retry_after + random.uniform(0, min(1.0, 0.1 * retry_after + 0.05))
        else:
            wait = random.uniform(0, self._backoff)
            self._backoff = min(self._backoff * 2, self._settings.backoff_max_s)
        self._next_trial = self._clock() + wait
        return wait

    def misconfigured(self, status: int, detail: str) -> float:
        """400/401/403: stop delivery; return the seconds until the re-check."""
        reason = MISCONFIGURATION[status]
        if self.state is not TargetState.MISCONFIGURED or self.reason != reason:
            log.error(
                "target refuses this uploader (HTTP %d %s: %s): delivery stopped, nothing is lost; %s "
                "(re-checking every %gs)",
                status,
                reason,
                detail,
                FIX[reason],
                self._settings.misconfigured_recheck_s,
            )
            self._set(TargetState.MISCONFIGURED, reason)
        self._next_trial = self._clock() + self._settings.misconfigured_recheck_s
        return self._settings.misconfigured_recheck_s

    def _set(self, state: TargetState, reason: str | None) -> None:
        self.state = state
        self.reason = reason
        self.since = self._clock()
        self._changed.set()
        metrics.set_target_state(
            unavailable=state is TargetState.UNAVAILABLE,
            misconfigured=reason if state is TargetState.MISCONFIGURED else None,
        )
        if self._on_change is not None:
            self._on_change(state)
