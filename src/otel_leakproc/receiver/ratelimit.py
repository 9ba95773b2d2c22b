"""Per-tenant token buckets: a sustained rate with a burst, bounded in the number of tenants tracked."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from otel_leakproc.errors import RefusedError
from otel_leakproc.receiver.config import RateLimitConfig

# Tenants beyond this are forgotten least-recently-used first (a forgotten tenant starts with a full bucket).
MAX_TENANTS = 10_000


class Limiter(Protocol):
    """What the ingest core asks before it reads an upload (this module's buckets, or the cluster's)."""

    @property
    def enabled(self) -> bool: ...

    def admit(self, tenant: str, cost: float = 1.0) -> None: ...


class RateLimiter:
    """Admits `uploads_per_second` per tenant on average, `burst` at once."""

    def __init__(self, config: RateLimitConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = config.uploads_per_second
        self._burst = float(config.burst)
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tenant -> tokens, last refill

    @property
    def enabled(self) -> bool:
        return self._rate > 0

    def admit(self, tenant: str, cost: float = 1.0) -> None:
        """Take `cost` tokens from the tenant's bucket.

        Raises:
            RefusedError: the bucket has too few tokens; `retry_after` says when it will have enough.
        """
        if not self.enabled:
            return
        now = self._clock()
        tokens, last = self._buckets.pop(tenant, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        cost = min(cost, self._burst)  # a request larger than the burst is admitted once the bucket is full
        if tokens < cost:
            self._buckets[tenant] = (tokens, now)
            wait = (cost - tokens) / self._rate
            raise RefusedError(
                f"tenant {tenant!r} is over its rate limit of {self._rate:g} uploads/s", retry_after=wait
            )
        self._buckets[tenant] = (tokens - cost, now)
        while len(self._buckets) > MAX_TENANTS:
            self._buckets.popitem(last=False)
