"""Fault injection: the failures a real ARC store produces, on demand, for tests and demos.

- a share of write requests answered ``503`` with ``Retry-After`` (delta seconds
  or an HTTP date, as configured), like an overloaded API;
- added latency on every API request;
- a request body limit answered with ``413``, like a proxy in front of the API.
"""

from __future__ import annotations

import math
import random
import time
from email.utils import formatdate

from services.common.config import StoreSettings


class FaultInjector:
    """Decides, per request, whether to fail it and how long the client must wait."""

    def __init__(self, settings: StoreSettings) -> None:
        self.failure_rate = settings.failure_rate
        self.retry_after_s = settings.retry_after_s
        self.retry_after_format = settings.retry_after_format
        self.latency_s = settings.latency_ms / 1000
        self.max_body_bytes = settings.max_body_bytes
        self._random = random.Random(settings.failure_seed)

    def should_fail(self) -> bool:
        return self.failure_rate > 0 and self._random.random() < self.failure_rate

    def retry_after(self) -> tuple[str, float]:
        """The ``Retry-After`` header value and the seconds it means (whole seconds, rounded up)."""
        seconds = max(0, math.ceil(self.retry_after_s))
        if self.retry_after_format == "http-date":
            # An HTTP date has one-second resolution: name the first whole second after the wait.
            at = math.floor(time.time()) + seconds + 1
            return formatdate(at, usegmt=True), float(seconds)
        return str(seconds), float(seconds)
