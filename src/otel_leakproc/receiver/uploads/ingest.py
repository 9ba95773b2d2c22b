"""Pyroscope's legacy `POST /ingest` (also `/pyroscope/ingest`): the series name in the `name` query
parameter (`app.name{label=value,...}`, `receiver/labels.py`), `from`/`until` in any of Pyroscope's time
units, `format`, `kind` and `spyName`; a raw pprof body with `format=pprof`, multipart `profile` +
`sample_type_config` without a format, or a goroutine `debug=2` / Go `debug=1` text dump.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime

from otel_leakproc.errors import InvalidProfileError, RejectReason
from otel_leakproc.model import ProfileKind
from otel_leakproc.receiver.decode.go_text import looks_like_go_text
from otel_leakproc.receiver.decode.goroutine_text import looks_like_goroutine_dump
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.identity import resolve_identity
from otel_leakproc.receiver.labels import parse_label_set
from otel_leakproc.receiver.uploads.body import Budget
from otel_leakproc.receiver.uploads.media import media_type
from otel_leakproc.receiver.uploads.multipart import parse_multipart
from otel_leakproc.receiver.uploads.profiles import PROFILE_TYPES, alloc_is_delta, kind_for, summarize
from otel_leakproc.receiver.uploads.request import DecodedProfile, UploadRequest, UploadResult

# `format` values of /ingest: accepted ones, and Pyroscope's others, which carry no usable leak signal.
INGEST_FORMATS = ("pprof", "goroutine", "text")
_INGEST_OTHER_FORMATS = ("jfr", "trie", "tree", "lines", "speedscope", "groups")
_LEGACY_BINARY_TYPES = {"binary/octet-stream+trie": "trie", "binary/octet-stream+tree": "tree"}


_MAX_SAMPLE_TYPE_CONFIG = 64 * 1024
_NANOS = 1_000_000_000
_DIGIT_UNITS = {10: _NANOS, 13: 1_000_000, 16: 1_000, 19: 1}
_OFFSET_UNITS = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}
_OFFSET = re.compile(r"now\s*([+-])\s*(\d{1,9})\s*([a-z]+)")
_TIME_FORMS = "8 digits (YYYYMMDD), 10 (s), 13 (ms), 16 (us) or 19 (ns) since the epoch, 'now' or 'now-1h'"


def _first_values(query: Sequence[tuple[str, str]]) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in query:
        values.setdefault(key, value)
    return values


def parse_time(param: str, value: str | None, received_nanos: int) -> int:
    """An /ingest `from`/`until` value in ns since the epoch; 0 when absent.

    Digits only: 8 = YYYYMMDD (UTC midnight), 10 = s, 13 = ms, 16 = us, 19 = ns. Also `now` and
    `now-1h` / `now+30m` style offsets (s, m/min, h, d, w) relative to `received_nanos`.

    Raises:
        InvalidProfileError: BAD_VALUES naming the parameter and the accepted forms.
    """
    if value is None or not value.strip():
        return 0
    text = value.strip().lower()
    if text.isascii() and text.isdigit():
        if len(text) == 8:
            try:
                day = datetime.strptime(text, "%Y%m%d").replace(tzinfo=UTC)
            except ValueError:
                raise InvalidProfileError(
                    f"{param}: {value!r} is not a valid YYYYMMDD date", RejectReason.BAD_VALUES
                ) from None
            return int(day.timestamp()) * _NANOS
        scale = _DIGIT_UNITS.get(len(text))
        if scale is None:
            raise InvalidProfileError(
                f"{param}: {value!r} has {len(text)} digits; use {_TIME_FORMS}", RejectReason.BAD_VALUES
            )
        nanos = int(text) * scale
        if nanos <= 0:
            raise InvalidProfileError(f"{param}: {value!r} is not after the Unix epoch", RejectReason.BAD_VALUES)
        return nanos
    offset = 0
    if text != "now":
        match = _OFFSET.fullmatch(text)
        unit = _OFFSET_UNITS.get(match.group(3)) if match else None
        if match is None or unit is None:
            raise InvalidProfileError(f"{param}: {value!r} is not a time; use {_TIME_FORMS}", RejectReason.BAD_VALUES)
        offset = int(match.group(2)) * unit * _NANOS * (-1 if match.group(1) == "-" else 1)
    if received_nanos <= 0:
        raise InvalidProfileError(
            f"{param}: {value!r} is relative to the receive time, which is unknown", RejectReason.BAD_VALUES
        )
    nanos = received_nanos + offset
    if nanos <= 0:
        raise InvalidProfileError(f"{param}: {value!r} is before the Unix epoch", RejectReason.BAD_VALUES)
    return nanos


def ingest_upload(request: UploadRequest, body: bytes, limits: DecodeLimits) -> UploadResult:
    query = _first_values(request.query)
    name = query.get("name", "")
    if not name.strip():
        raise InvalidProfileError(
            "name: the query parameter is required (e.g. name=checkout{instance=pod-1})", RejectReason.BAD_VALUES
        )
    label_set = parse_label_set(name)
    labels = label_set.labels
    start = parse_time("from", query.get("from"), request.received_nanos)
    end = parse_time("until", query.get("until"), request.received_nanos)
    if start and end and end < start:
        raise InvalidProfileError(
            f"until: {query.get('until')!r} is before from={query.get('from')!r}", RejectReason.BAD_VALUES
        )
    time_fallback = end or start or request.received_nanos or None

    kind_hint: ProfileKind | None = None
    kind_param = query.get("kind", "").strip()
    if kind_param:
        kind_hint = kind_for(kind_param)
        if kind_hint is None:
            raise InvalidProfileError(
                f"kind: {kind_param!r} is not one of {', '.join(sorted(PROFILE_TYPES))}", RejectReason.BAD_VALUES
            )
    alloc_cumulative = not alloc_is_delta(labels, query.get("spyName", "").strip().lower())

    fmt = query.get("format", "").strip().lower()
    media, params = media_type(request.content_type)
    legacy = _LEGACY_BINARY_TYPES.get(media)
    if fmt in _INGEST_OTHER_FORMATS or (legacy and fmt != "pprof"):
        raise InvalidProfileError(
            f"format: {fmt or legacy!r} is not supported (no leak signal can be read from it); "
            "send pprof (format=pprof, or multipart/form-data with a 'profile' part) or a goroutine debug=2 dump",
            RejectReason.UNSUPPORTED,
        )
    budget = Budget(limits.max_decompressed_bytes)
    where = "body"
    if fmt == "pprof":
        profile = body
    elif fmt in ("goroutine", "text"):
        profile = budget.inflate(body, where)
        if not _is_text_profile(profile):
            raise InvalidProfileError(
                f"body: format={fmt} but the body is neither a goroutine debug=2 dump nor a Go debug=1 text profile",
                RejectReason.BAD_TEXT,
            )
        budget = Budget(limits.max_decompressed_bytes)  # the sniffed body is decoded once more below
    elif fmt:
        raise InvalidProfileError(
            f"format: {fmt!r} is not supported; accepted: {', '.join(INGEST_FORMATS)} "
            "(or none with a multipart/form-data body)",
            RejectReason.UNSUPPORTED,
        )
    elif media == "multipart/form-data":
        parts = parse_multipart(body, params)
        if "prev_profile" in parts:
            raise InvalidProfileError(
                "body: multipart part 'prev_profile' (cumulative diff upload of old clients) is not supported; "
                "upgrade the client",
                RejectReason.UNSUPPORTED,
            )
        if "profile" not in parts:
            raise InvalidProfileError("body: multipart part 'profile' is required", RejectReason.BAD_VALUES)
        profile = parts["profile"]
        where = "body: multipart part 'profile'"
        config = parts.get("sample_type_config")
        if config is not None:
            config_kind, config_cumulative = _sample_type_config(config)
            kind_hint = kind_hint or config_kind
            if config_cumulative is not None:
                alloc_cumulative = config_cumulative
    else:
        profile = budget.inflate(body, where)
        if not _is_text_profile(profile):
            shown = f"Content-Type {request.content_type!r}" if request.content_type else "no Content-Type"
            raise InvalidProfileError(
                f"format: missing, and the body ({shown}) is neither multipart/form-data nor a goroutine "
                "debug=2 dump nor a Go debug=1 text profile (Pyroscope would read it as collapsed 'groups' "
                "text, which is not supported); use format=pprof for a raw pprof body",
                RejectReason.UNSUPPORTED,
            )
        budget = Budget(limits.max_decompressed_bytes)

    result = summarize(
        profile,
        limits,
        budget,
        where,
        kind_hint=kind_hint,
        time_fallback_nanos=time_fallback,
        labels=labels,
        alloc_cumulative=alloc_cumulative,
    )
    if isinstance(result, str):
        return UploadResult((), (result,))
    identity = resolve_identity(labels, label_set.app)
    return UploadResult((DecodedProfile(identity.service, identity.instance, identity.resource, result),))


def _is_text_profile(body: bytes) -> bool:
    """A goroutine debug=2 dump or a debug=1 text profile (which the decoder reads, or names when not Go's)."""
    return looks_like_goroutine_dump(body) or looks_like_go_text(body)


def _sample_type_config(data: bytes) -> tuple[ProfileKind | None, bool | None]:
    """(kind, alloc cumulative) from the multipart `sample_type_config` JSON of pyroscope-go.

    It maps a sample type to `{units, display-name, aggregation, cumulative, sampled}`; display names
    `mutex_*` / `block_*` tell mutex from block (same sample types), `cumulative` on `alloc_*` says
    whether allocations are totals since start (false for godeltaprof).
    """
    where = "body: multipart part 'sample_type_config'"
    if len(data) > _MAX_SAMPLE_TYPE_CONFIG:
        raise InvalidProfileError(f"{where}: larger than {_MAX_SAMPLE_TYPE_CONFIG} bytes", RejectReason.BAD_VALUES)
    try:
        config = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InvalidProfileError(f"{where}: not valid JSON ({exc})", RejectReason.BAD_VALUES) from None
    if not isinstance(config, dict) or not all(isinstance(v, dict) for v in config.values()):
        raise InvalidProfileError(
            f"{where}: must be a JSON object mapping sample types to "
            "{units, display-name, aggregation, cumulative, sampled}",
            RejectReason.BAD_VALUES,
        )
    kind: ProfileKind | None = None
    cumulative: bool | None = None
    for sample_type, entry in config.items():
        display = entry.get("display-name", "")
        if not isinstance(display, str):
            raise InvalidProfileError(f"{where}: {sample_type}.display-name must be a string", RejectReason.BAD_VALUES)
        if display.startswith("mutex_"):
            kind = ProfileKind.MUTEX
        elif display.startswith("block_"):
            kind = ProfileKind.BLOCK
        elif display == "goroutine_leak" or sample_type == "goroutineleak":
            kind = ProfileKind.GOROUTINELEAK
        if sample_type in ("alloc_objects", "alloc_space") and "cumulative" in entry:
            flag = entry["cumulative"]
            if not isinstance(flag, bool):
                raise InvalidProfileError(
                    f"{where}: {sample_type}.cumulative must be true or false", RejectReason.BAD_VALUES
                )
            cumulative = flag if cumulative is None else cumulative and flag
    return kind, cumulative
