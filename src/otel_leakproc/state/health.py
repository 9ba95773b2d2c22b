"""Whether the state store can keep what the service accepts: one small object every backend updates and
the service consults (`/readyz`, the answer to uploads). A store that cannot write makes the service say
so (not ready, uploads refused with 503 and the reason) instead of accepting profiles it would lose.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from otel_leakproc.errors import UnavailableError

log = logging.getLogger(__name__)


class StateUnusableError(Exception):
    """The state location cannot be used at all (not a folder, not writable): the service must not start."""


class StoreUnavailableError(UnavailableError):
    """The store cannot persist a record now; the upload must not be acknowledged (HTTP 503, gRPC
    UNAVAILABLE) and the sender should retry after `retry_after` seconds. An `UnavailableError` (so a
    `RefusedError`): every producer that handles refusals (the scrape receiver) handles this one too."""

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message, retry_after)

    def __reduce__(self) -> tuple[object, ...]:
        return (StoreUnavailableError, (str(self), self.retry_after))


@dataclass(slots=True)
class StoreHealth:
    """`ok` and, when not, the reason (a sentence naming what failed and where) and since when."""

    ok: bool = True
    reason: str = ""
    since_unix: float = 0.0
    failures: int = 0  # times the store went from ok to failing

    def fail(self, reason: str) -> None:
        if self.ok or reason != self.reason:
            log.error("state store unavailable: %s", reason)
        if self.ok:
            self.failures += 1
            self.since_unix = time.time()
        self.ok = False
        self.reason = reason

    def recover(self) -> None:
        if not self.ok:
            log.warning("state store writable again (was: %s)", self.reason)
        self.ok = True
        self.reason = ""
        self.since_unix = time.time()

    def check(self) -> None:
        """Raise StoreUnavailableError when failing."""
        if not self.ok:
            raise StoreUnavailableError(f"state store unavailable: {self.reason}; the profile was not stored, retry")
