"""One profile of an upload to its summary, the same in every dialect: the profile type names, which
senders' allocations are deltas, the session id label, and errors located inside the request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from otel_leakproc.errors import InvalidProfileError, PayloadTooLargeError, RejectReason
from otel_leakproc.model import ProfileKind, ProfileSummary
from otel_leakproc.receiver.decode import decode_profile
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.uploads.body import Budget

SESSION_ID = "__session_id__"


# Pyroscope `__name__` profile types (push) and the `kind` query parameter (/ingest).
PROFILE_TYPES: dict[str, ProfileKind] = {
    "memory": ProfileKind.HEAP,
    "heap": ProfileKind.HEAP,
    "goroutine": ProfileKind.GOROUTINE,
    "goroutines": ProfileKind.GOROUTINE,
    "goroutine_leak": ProfileKind.GOROUTINELEAK,
    "goroutineleak": ProfileKind.GOROUTINELEAK,
    "mutex": ProfileKind.MUTEX,
    "block": ProfileKind.BLOCK,
}


def located(exc: InvalidProfileError, where: str) -> InvalidProfileError:
    """The same error with `where` in front, so the message names the field inside the request."""
    if isinstance(exc, PayloadTooLargeError):
        return PayloadTooLargeError(f"{where}: {exc}")
    return InvalidProfileError(f"{where}: {exc}", exc.reason)


def alloc_is_delta(labels: Mapping[str, str], spy: str = "") -> bool:
    """True for senders whose heap `alloc_*` are per-interval deltas, not cumulative since start.

    godeltaprof (pyroscope-go) and pyroscope-rs based agents (pyroscope-io 1.x, measured: alloc_* reset
    every upload) send deltas; raw `runtime/pprof` heap profiles are cumulative.
    """
    scope = labels.get("otel.scope.name", "")
    return (
        "godeltaprof" in scope
        or scope == "com.grafana.pyroscope/python"
        or labels.get("process.runtime.name", "") == "cpython"
        or spy == "pyspy"
    )


def summarize(
    data: bytes,
    limits: DecodeLimits,
    budget: Budget,
    where: str,
    *,
    kind_hint: ProfileKind | None,
    time_fallback_nanos: int | None,
    labels: Mapping[str, str],
    alloc_cumulative: bool,
) -> ProfileSummary | str:
    """A summary, or the reason the profile carries no leak signal (a profile type the detectors skip)."""
    try:
        raw = budget.inflate(data, where)
        summary = decode_profile(
            raw,
            limits,
            kind_hint=kind_hint,
            time_fallback_nanos=time_fallback_nanos,
            labels=labels,
            alloc_cumulative=alloc_cumulative,
        )
    except InvalidProfileError as exc:
        # Only the classifier raises UNSUPPORTED here: sample types of a profile kind with no leak signal.
        if exc.reason is RejectReason.UNSUPPORTED and not isinstance(exc, PayloadTooLargeError):
            return f"{where}: {exc} (no leak signal, skipped)"
        raise located(exc, where) from exc
    return with_session(summary, labels)


def with_session(summary: ProfileSummary, labels: Mapping[str, str]) -> ProfileSummary:
    session = labels.get(SESSION_ID, "")
    if session and summary.labels.get(SESSION_ID) != session:
        return dataclasses.replace(summary, labels={**summary.labels, SESSION_ID: session})
    return summary


def kind_for(profile_type: str) -> ProfileKind | None:
    return PROFILE_TYPES.get(profile_type.strip().lower())
