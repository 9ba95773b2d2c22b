"""Decode + summarise: the only place that knows pprof, OTLP profiles and goroutine text dumps.

Everything here is pure (bytes in, `ProfileSummary` out) so it can run in worker processes and be
tested without servers.
"""

from __future__ import annotations

from collections.abc import Mapping

from otel_leakproc.errors import InvalidProfileError, RejectReason
from otel_leakproc.model import ProfileKind, ProfileSummary
from otel_leakproc.receiver.decode.gzip_bound import inflate_body
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.decode.pprof import summarize_pprof_bytes

__all__ = ["DecodeLimits", "decode_profile", "starts_like_pprof"]


def starts_like_pprof(raw: bytes) -> bool:
    """Whether `raw` starts as pprof writers start a profile: a value type (field 1 `sample_type`, or field
    11 `period_type` as runtime/pprof writes first) of under 128 bytes whose first field is the type's string
    index (field 1, a varint): 0x0A or 0x5A, a length, 0x08. No text profile starts so (its third byte
    would be a backspace, which neither text sniffer accepts), so the text formats need not be sniffed;
    anything else is sniffed as before."""
    return len(raw) > 2 and raw[0] in _VALUE_TYPE_TAGS and raw[1] < 0x80 and raw[2] == 0x08


_VALUE_TYPE_TAGS = (0x0A, 0x5A)


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
    # A body that starts as pprof does skips the text sniffers (and, for `analyze` on pprof files, the
    # text decoders' import).
    text = (
        None if starts_like_pprof(raw) else _decode_text(raw, limits, kind_hint, time_fallback_nanos, alloc_cumulative)
    )
    if text is not None:
        return text
    return summarize_pprof_bytes(
        raw,
        limits,
        kind_hint=kind_hint,
        time_fallback_nanos=time_fallback_nanos,
        labels=labels,
        alloc_cumulative=alloc_cumulative,
    )


def _decode_text(
    raw: bytes,
    limits: DecodeLimits,
    kind_hint: ProfileKind | None,
    time_fallback_nanos: int | None,
    alloc_cumulative: bool,
) -> ProfileSummary | None:
    """A goroutine debug=2 dump or Go's debug=1 text, or None when `raw` is neither (then it is pprof)."""
    from otel_leakproc.receiver.decode.go_text import decode_go_text, looks_like_go_text  # noqa: PLC0415
    from otel_leakproc.receiver.decode.goroutine_text import (  # noqa: PLC0415
        looks_like_goroutine_dump,
        parse_goroutine_dump,
    )

    if looks_like_goroutine_dump(raw):
        if time_fallback_nanos is None:
            raise InvalidProfileError(
                "profile: a goroutine text dump carries no timestamp and none was given", RejectReason.BAD_VALUES
            )
        text_kind = kind_hint if kind_hint in (ProfileKind.GOROUTINE, ProfileKind.GOROUTINELEAK) else None
        return parse_goroutine_dump(raw, limits, time_nanos=time_fallback_nanos, kind=text_kind)
    if looks_like_go_text(raw):  # debug=1 text; also names the legacy formats that are not Go's
        return decode_go_text(raw, limits, time_nanos=time_fallback_nanos, alloc_cumulative=alloc_cumulative)
    return None
