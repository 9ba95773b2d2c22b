"""Sends Pyroscope `PushRequest`s over Connect (HTTP/1.1 POST, `application/proto`) with urllib.

The outcome of one request is one of three: delivered; retry later (the receiver is unreachable, or
answered 408, 429 or 5xx; `Retry-After` is read when present); or dropped (any other answer: the request
itself is wrong, e.g. 400, 401, 403 or 413, and sending it again would fail the same way).
"""

from __future__ import annotations

import base64
import email.utils
import enum
import http.client
import math
import random
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

PUSH_PATH = "/push.v1.PusherService/Push"
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# A `Retry-After` longer than this is not believed (a misconfigured proxy must not silence us for days).
MAX_RETRY_AFTER_SECONDS = 3600.0


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DROPPED = "dropped"


@dataclass(frozen=True, slots=True)
class SendResult:
    """How one upload went: the outcome, the HTTP status and what the receiver said."""

    outcome: Outcome
    status: int  # HTTP status, 0 when no answer came
    retry_after: float | None  # seconds the receiver asked us to wait
    detail: str


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from `Retry-After` (delta-seconds or an HTTP date), bounded; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - now
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def backoff_seconds(failures: int, retry_after: float | None, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter (1 s, 2 s, 4 s, ... up to `cap`), never shorter than `Retry-After`."""
    base = min(cap, 2.0 ** max(failures - 1, 0))
    delay = base * (0.5 + 0.5 * rng.random())
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


class PushTransport:
    """POSTs encoded `PushRequest`s to one receiver."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        tenant: str = "",
        token: str = "",
        basic_auth: tuple[str, str] | None = None,
        user_agent: str = "otel-leakproc-client",
    ) -> None:
        self.endpoint = url.rstrip("/") + PUSH_PATH
        self._timeout = timeout
        headers = {"Content-Type": "application/proto", "User-Agent": user_agent}
        if tenant:
            headers["X-Scope-OrgID"] = tenant
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif basic_auth is not None:
            raw = f"{basic_auth[0]}:{basic_auth[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
        self._headers: Mapping[str, str] = headers
        # Only this client's proxies/handlers: no cookies, no redirects to other hosts' credentials.
        self._opener = urllib.request.build_opener()

    def send(self, body: bytes) -> SendResult:
        request = urllib.request.Request(self.endpoint, data=body, method="POST", headers=dict(self._headers))
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                response.read(65536)
                return SendResult(Outcome.DELIVERED, response.status, None, "")
        except urllib.error.HTTPError as exc:
            try:
                detail = exc.read(2048).decode("utf-8", "replace")
            except OSError:
                detail = ""
            finally:
                exc.close()
            retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None, time.time())
            outcome = Outcome.RETRY if exc.code in RETRYABLE_STATUS else Outcome.DROPPED
            return SendResult(outcome, exc.code, retry_after, f"HTTP {exc.code}: {detail.strip()[:300]}")
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            return SendResult(Outcome.RETRY, 0, None, f"cannot reach {self.endpoint}: {reason}")
