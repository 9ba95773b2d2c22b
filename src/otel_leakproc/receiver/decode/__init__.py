"""Decode + summarise: the only place that knows pprof, OTLP profiles and goroutine text dumps.

Everything here is pure (bytes in, `ProfileSummary` out) so it can run in worker processes and be
tested without servers.
"""

from __future__ import annotations

from collections.abc import Mapping

from otel_leakproc.errors import InvalidProfileError, RejectReason
from otel_leakproc.model import ProfileKind, ProfileSummary
from otel_leakproc.receiver.decode.go_text import decode_go_text, looks_like_go_text
from otel_leakproc.receiver.decode.goroutine_text import looks_like_goroutine_dump, parse_goroutine_dump
from otel_leakproc.receiver.decode.gzip_bound import inflate_body
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.decode.pprof import summarize_pprof_bytes

__all__ = ["DecodeLimits", "decode_profile"]


def decode_profile(
    data: bytes,
    limits: DecodeLimits,
    *,
    kind_hint: ProfileKind | None = None,
    time_fallback_nanos: int | None = None,
    labels: Mapping[str, str] | None = None,
    alloc_cumulative: bool = True,
) -> ProfileSummary:
    """Decode one profile: pprof, a goroutine debug=2 text dump or Go's debug=1 text (each gzipped or raw).

    Args:
        data: the upload or file content.
        limits: bounds and top-K sizes.
        kind_hint: the kind the sender declared (decides mutex vs block; goroutine vs goroutineleak
            for text dumps).
        time_fallback_nanos: collection time when the profile carries none (text dumps never do).
        labels: series labels (`__session_id__` is kept for restart detection).
        alloc_cumulative: False when `alloc_*` are per-interval deltas (godeltaprof, pyroscope-io).

    Raises:
        InvalidProfileError: with a message naming what was wrong (PayloadTooLargeError for bounds).
    """
    raw = inflate_body(data, limits.max_decompressed_bytes)
    if looks_like_goroutine_dump(raw):
        if time_fallback_nanos is None:
            raise InvalidProfileError(
                "profile: a goroutine text dump carries no timestamp and none was given", RejectReason.BAD_VALUES
            )
        text_kind = kind_hint if kind_hint in (ProfileKind.GOROUTINE, ProfileKind.GOROUTINELEAK) else None
        return parse_goroutine_dump(raw, limits, time_nanos=time_fallback_nanos, kind=text_kind)
    if looks_like_go_text(raw):  # debug=1 text; also names the legacy formats that are not Go's
        return decode_go_text(raw, limits, time_nanos=time_fallback_nanos, alloc_cumulative=alloc_cumulative)
    return summarize_pprof_bytes(
        raw,
        limits,
        kind_hint=kind_hint,
        time_fallback_nanos=time_fallback_nanos,
        labels=labels,
        alloc_cumulative=alloc_cumulative,
    )
