"""One error type per boundary.

- `ConfigError`: start-up only; the CLI maps it to exit code 2.
- `InvalidProfileError`: an upload or file that cannot be decoded (HTTP 400 / INVALID_ARGUMENT).
  `PayloadTooLargeError` is the subclass for size bounds (HTTP 413), including gzip bombs.
- `RefusedError`: overload (HTTP 429 / RESOURCE_EXHAUSTED).
  `UnavailableError` is the subclass for "cannot keep it now" (the state store is failing): HTTP 503 /
  UNAVAILABLE, with Retry-After like any refusal.

Each profile error carries a `reason` from the closed `RejectReason` set, so rejections can be counted
by reason without parsing messages.
"""

from __future__ import annotations

from enum import StrEnum


class RejectReason(StrEnum):
    """Closed set of reasons a profile is rejected (the `reason` attribute of rejection counters)."""

    BAD_GZIP = "bad_gzip"
    TOO_LARGE = "too_large"
    BAD_PROTOBUF = "bad_protobuf"
    BAD_REFERENCE = "bad_reference"
    BAD_VALUES = "bad_values"
    UNSUPPORTED = "unsupported"
    BAD_TEXT = "bad_text"
    TOO_MANY_ITEMS = "too_many_items"
    EMPTY = "empty"


class LeakprocError(Exception):
    """Base of every error otel-leakproc raises on purpose."""


class ConfigError(LeakprocError):
    """The configuration is invalid. `errors` holds every problem, each prefixed with its key path."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.errors))


class InvalidProfileError(LeakprocError):
    """A profile could not be decoded. The message names the field and what was wrong."""

    def __init__(self, message: str, reason: RejectReason) -> None:
        self.reason = reason
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        # Raised in decoder worker processes and re-raised in the server: keep the reason across pickling.
        return (InvalidProfileError, (str(self), self.reason))


class PayloadTooLargeError(InvalidProfileError):
    """A compressed or decompressed size bound was exceeded."""

    def __init__(self, message: str) -> None:
        super().__init__(message, RejectReason.TOO_LARGE)

    def __reduce__(self) -> tuple[object, ...]:
        return (PayloadTooLargeError, (str(self),))


class RefusedError(LeakprocError):
    """The service is overloaded; the sender should retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (RefusedError, (str(self), self.retry_after))


class UnavailableError(RefusedError):
    """The service cannot keep an upload right now (its state cannot be written): retry later (503)."""

    def __reduce__(self) -> tuple[object, ...]:
        return (UnavailableError, (str(self), self.retry_after))
