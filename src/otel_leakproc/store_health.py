"""Whether a store can keep what it is given: one small signal every store reports to and readers watch.

A store (the snapshot file today; a journal or a Redis backend later) calls `failed(reason)` when a write
or a check fails and `succeeded()` when one works. Readers ask `ok` and `reason`: `/readyz` reports not
ready with the reason, the ingest core answers uploads 503 with Retry-After instead of accepting what
would be lost, and `otel_leakproc_state_writable` (0 or 1) feeds the shipped alert rule. Everything runs
on the event loop or in one writer thread at a time; reads of two attributes need no lock.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


class StoreHealth:
    """Health of one store. Starts healthy; `failed` and `succeeded` log each change once, not per call."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ok = True
        self.reason = ""
        self.since = time.time()  # Unix time of the last change
        self.failures = 0  # consecutive failures

    def failed(self, reason: str) -> None:
        """A write or check failed: not healthy until the next success."""
        self.failures += 1
        if self.ok or reason != self.reason:
            log.error("%s: cannot be written: %s (uploads are refused with 503 until it can)", self.name, reason)
        if self.ok:
            self.since = time.time()
        self.ok = False
        self.reason = reason

    def succeeded(self) -> None:
        """A write worked: healthy again."""
        if not self.ok:
            log.warning("%s: writable again after %d failures; accepting uploads", self.name, self.failures)
            self.since = time.time()
        self.ok = True
        self.reason = ""
        self.failures = 0

    def describe(self) -> str:
        return "ok" if self.ok else f"{self.name} cannot be written: {self.reason}"
