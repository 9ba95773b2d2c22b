"""One upload in, decoded profiles out: the transport-free core behind every receiver endpoint.

`process_upload` takes a request body exactly as received (plus its content type, content encoding,
query and receive time) in one of three dialects and returns one `DecodedProfile` per profile that
carries a leak signal, with its series identity and exported resource:

- `ingest`: Pyroscope's legacy `POST /ingest` (raw pprof with `format=pprof`, multipart `profile` +
  `sample_type_config` without a format, or a goroutine `debug=2` text dump).
- `push`: Pyroscope's `push.v1.PusherService/Push` (Connect unary, protobuf or proto3 JSON).
- `otlp`: OTLP profiles `/v1development/profiles` (protobuf or OTLP JSON).

Everything is pure and picklable (frozen dataclasses with slots), so it runs in worker processes. A
request is accepted or rejected as a whole: any invalid profile raises `InvalidProfileError` (or
`PayloadTooLargeError`) with a message naming the field; profiles that carry no leak signal (CPU, wall)
are skipped and listed in `UploadResult.ignored`. See docs/ingest.md for what real clients send.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from otel_leakproc.errors import InvalidProfileError, PayloadTooLargeError, RejectReason
from otel_leakproc.model import ProfileKind, ProfileSummary
from otel_leakproc.receiver.decode import decode_profile
from otel_leakproc.receiver.decode.go_text import looks_like_go_text
from otel_leakproc.receiver.decode.goroutine_text import looks_like_goroutine_dump
from otel_leakproc.receiver.decode.gzip_bound import gunzip_bounded, inflate_body, is_gzip
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.decode.otlp_profiles import otlp_to_pprof, parse_export_request
from otel_leakproc.receiver.decode.pprof import summarize_pprof, summarize_pprof_bytes
from otel_leakproc.receiver.identity import resolve_identity
from otel_leakproc.receiver.labels import parse_label_set
from otel_leakproc.receiver.proto import push_pb2

__all__ = [
    "INGEST_FORMATS",
    "PUSH_CONTENT_TYPES",
    "DecodedProfile",
    "Dialect",
    "UploadRequest",
    "UploadResult",
    "parse_time",
    "process_upload",
]

Dialect = Literal["ingest", "push", "otlp"]

SESSION_ID = "__session_id__"
PUSH_PROTO_TYPES = ("application/proto", "application/x-protobuf", "application/protobuf")
PUSH_JSON_TYPES = ("application/json",)
PUSH_CONTENT_TYPES = PUSH_PROTO_TYPES + PUSH_JSON_TYPES
# `format` values of /ingest: accepted ones, and Pyroscope's others, which carry no usable leak signal.
INGEST_FORMATS = ("pprof", "goroutine", "text")
_INGEST_OTHER_FORMATS = ("jfr", "trie", "tree", "lines", "speedscope", "groups")
_LEGACY_BINARY_TYPES = {"binary/octet-stream+trie": "trie", "binary/octet-stream+tree": "tree"}

# Pyroscope `__name__` profile types (push) and the `kind` query parameter (/ingest).
_PROFILE_TYPES: dict[str, ProfileKind] = {
    "memory": ProfileKind.HEAP,
    "heap": ProfileKind.HEAP,
    "goroutine": ProfileKind.GOROUTINE,
    "goroutines": ProfileKind.GOROUTINE,
    "goroutine_leak": ProfileKind.GOROUTINELEAK,
    "goroutineleak": ProfileKind.GOROUTINELEAK,
    "mutex": ProfileKind.MUTEX,
    "block": ProfileKind.BLOCK,
}
# Profile types skipped without decoding: time-based profiles, no leak signal.
_NO_SIGNAL_TYPES = frozenset({"process_cpu", "cpu", "wall", "itimer"})

_MAX_MULTIPART_PARTS = 16
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
_PARAM = re.compile(r';\s*([!#$%&\'*+.^`|~\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))')


@dataclass(frozen=True, slots=True)
class UploadRequest:
    """One request as the transport received it.

    Attributes:
        dialect: which endpoint it came from.
        body: the body exactly as received (compressed when `content_encoding` is gzip).
        content_type: the Content-Type header (with parameters, e.g. the multipart boundary).
        content_encoding: "gzip", "" or "identity"; anything else is rejected.
        query: `/ingest` query parameters in order (the first of a repeated name wins).
        received_nanos: server receive time, ns since the epoch (timestamp of last resort, and "now"
            for `from=now-1h`).
    """

    dialect: Dialect
    body: bytes
    content_type: str = ""
    content_encoding: str = ""
    query: tuple[tuple[str, str], ...] = ()
    received_nanos: int = 0


@dataclass(frozen=True, slots=True)
class DecodedProfile:
    """One accepted profile and the series it belongs to.

    Attributes:
        service: `service.name` (OTLP resource, Pyroscope `service_name` label or the /ingest name).
        instance: `service.instance.id` (or a label standing for it), "" when none: one series per service.
        resource: bounded attributes for export (`service.name`, `service.instance.id`,
            `service.namespace`, `k8s.*`, other user labels).
        summary: the decoded profile.
    """

    service: str
    instance: str
    resource: dict[str, str] = field(hash=False)
    summary: ProfileSummary


@dataclass(frozen=True, slots=True)
class UploadResult:
    """What an accepted request produced.

    Attributes:
        profiles: the profiles that carry a leak signal, in request order.
        ignored: one human reason per profile skipped because it carries no leak signal (e.g. CPU).
    """

    profiles: tuple[DecodedProfile, ...]
    ignored: tuple[str, ...] = ()


def process_upload(request: UploadRequest, limits: DecodeLimits, max_profiles: int = 64) -> UploadResult:
    """Decode one upload.

    Args:
        request: the request as received.
        limits: decode bounds; `max_decompressed_bytes` bounds the decompressed body and, separately,
            all profiles of the request together after their own decompression.
        max_profiles: most profiles one request may carry.

    Raises:
        InvalidProfileError: the request is malformed; the message names the field (header, query
            parameter, message field or multipart part) and what was wrong. Nothing of it is accepted.
        PayloadTooLargeError: a size bound was exceeded.
    """
    body = _decode_content_encoding(request, limits)
    if request.dialect == "ingest":
        return _ingest(request, body, limits)
    if request.dialect == "push":
        return _push(request, body, limits, max_profiles)
    if request.dialect == "otlp":
        return _otlp(request, body, limits, max_profiles)
    raise InvalidProfileError(
        f"dialect: {request.dialect!r} is not one of ingest, push, otlp", RejectReason.UNSUPPORTED
    )


# --------------------------------------------------------------------------------------------------
# Shared helpers


def _decode_content_encoding(request: UploadRequest, limits: DecodeLimits) -> bytes:
    body = request.body
    if len(body) > limits.max_decompressed_bytes:
        raise PayloadTooLargeError(f"body: size {len(body)} exceeds the limit of {limits.max_decompressed_bytes} bytes")
    codings = [c.strip().lower() for c in request.content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return body
    if codings in (["gzip"], ["x-gzip"]):
        if not is_gzip(body):
            raise InvalidProfileError(
                "Content-Encoding: gzip, but the body is not a gzip stream", RejectReason.BAD_GZIP
            )
        return gunzip_bounded(body, limits.max_decompressed_bytes, "body (Content-Encoding: gzip)")
    raise InvalidProfileError(
        f"Content-Encoding: {request.content_encoding!r} is not supported (use gzip or identity)",
        RejectReason.UNSUPPORTED,
    )


def _media_type(content_type: str) -> tuple[str, dict[str, str]]:
    """The lower-cased media type and its parameters (`boundary`, `charset`, ...)."""
    media, _, rest = content_type.partition(";")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(";" + rest):
        quoted, plain = match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else plain
        params.setdefault(match.group(1).lower(), value)
    return media.strip().lower(), params


def _located(exc: InvalidProfileError, where: str) -> InvalidProfileError:
    """The same error with `where` in front, so the message names the field inside the request."""
    if isinstance(exc, PayloadTooLargeError):
        return PayloadTooLargeError(f"{where}: {exc}")
    return InvalidProfileError(f"{where}: {exc}", exc.reason)


class _Budget:
    """Decompressed bytes all profiles of one request may take together (nested gzip cannot multiply)."""

    __slots__ = ("left", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def inflate(self, data: bytes, where: str) -> bytes:
        try:
            raw = inflate_body(data, max(self.left, 0), where)
        except PayloadTooLargeError:
            if self.left < self.limit:
                raise PayloadTooLargeError(
                    f"{where}: the profiles of this request exceed {self.limit} decompressed bytes together"
                ) from None
            raise
        self.left -= len(raw)
        return raw


def _alloc_is_delta(labels: Mapping[str, str], spy: str = "") -> bool:
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


def _summarize(
    data: bytes,
    limits: DecodeLimits,
    budget: _Budget,
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
        raise _located(exc, where) from exc
    return _with_session(summary, labels)


def _with_session(summary: ProfileSummary, labels: Mapping[str, str]) -> ProfileSummary:
    session = labels.get(SESSION_ID, "")
    if session and summary.labels.get(SESSION_ID) != session:
        return dataclasses.replace(summary, labels={**summary.labels, SESSION_ID: session})
    return summary


def _kind_for(profile_type: str) -> ProfileKind | None:
    return _PROFILE_TYPES.get(profile_type.strip().lower())


# --------------------------------------------------------------------------------------------------
# /ingest


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


def _ingest(request: UploadRequest, body: bytes, limits: DecodeLimits) -> UploadResult:
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
        kind_hint = _kind_for(kind_param)
        if kind_hint is None:
            raise InvalidProfileError(
                f"kind: {kind_param!r} is not one of {', '.join(sorted(_PROFILE_TYPES))}", RejectReason.BAD_VALUES
            )
    alloc_cumulative = not _alloc_is_delta(labels, query.get("spyName", "").strip().lower())

    fmt = query.get("format", "").strip().lower()
    media, params = _media_type(request.content_type)
    legacy = _LEGACY_BINARY_TYPES.get(media)
    if fmt in _INGEST_OTHER_FORMATS or (legacy and fmt != "pprof"):
        raise InvalidProfileError(
            f"format: {fmt or legacy!r} is not supported (no leak signal can be read from it); "
            "send pprof (format=pprof, or multipart/form-data with a 'profile' part) or a goroutine debug=2 dump",
            RejectReason.UNSUPPORTED,
        )
    budget = _Budget(limits.max_decompressed_bytes)
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
        budget = _Budget(limits.max_decompressed_bytes)  # the sniffed body is decoded once more below
    elif fmt:
        raise InvalidProfileError(
            f"format: {fmt!r} is not supported; accepted: {', '.join(INGEST_FORMATS)} "
            "(or none with a multipart/form-data body)",
            RejectReason.UNSUPPORTED,
        )
    elif media == "multipart/form-data":
        parts = _parse_multipart(body, params)
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
        budget = _Budget(limits.max_decompressed_bytes)

    result = _summarize(
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


def _parse_multipart(body: bytes, params: Mapping[str, str]) -> dict[str, bytes]:
    """Fields of a multipart/form-data body by name (RFC 7578), bounded to a few parts."""
    boundary = params.get("boundary", "")
    if not boundary or len(boundary) > 200:
        raise InvalidProfileError(
            "Content-Type: multipart/form-data needs a boundary parameter (1-200 characters)", RejectReason.BAD_VALUES
        )
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    if body.startswith(delimiter):
        pos = 0
    else:  # a preamble before the first delimiter is allowed
        pos = body.find(b"\r\n" + delimiter)
        if pos < 0:
            raise InvalidProfileError(
                "body: the multipart boundary from Content-Type does not occur in the body", RejectReason.BAD_VALUES
            )
        pos += 2
    parts: dict[str, bytes] = {}
    n = 0
    while True:
        pos += len(delimiter)
        if body.startswith(b"--", pos):  # close delimiter
            return parts
        eol = body.find(b"\r\n", pos)
        if eol < 0 or body[pos:eol].strip(b" \t"):
            raise InvalidProfileError(f"body: multipart part {n}: malformed boundary line", RejectReason.BAD_VALUES)
        start = eol + 2
        end = body.find(b"\r\n" + delimiter, start)
        if end < 0:
            raise InvalidProfileError(
                f"body: multipart part {n} is not terminated (closing boundary missing)", RejectReason.BAD_VALUES
            )
        n += 1
        if n > _MAX_MULTIPART_PARTS:
            raise InvalidProfileError(
                f"body: more than {_MAX_MULTIPART_PARTS} multipart parts", RejectReason.TOO_MANY_ITEMS
            )
        part = body[start:end]
        if part.startswith(b"\r\n"):
            headers, content = b"", part[2:]
        else:
            head_end = part.find(b"\r\n\r\n")
            if head_end < 0:
                raise InvalidProfileError(
                    f"body: multipart part {n - 1}: headers not terminated by an empty line", RejectReason.BAD_VALUES
                )
            headers, content = part[:head_end], part[head_end + 4 :]
        name = _form_field_name(headers)
        if name is None:
            raise InvalidProfileError(
                f"body: multipart part {n - 1} has no Content-Disposition form-data name", RejectReason.BAD_VALUES
            )
        if name in parts:
            raise InvalidProfileError(f"body: multipart part {name!r} appears twice", RejectReason.BAD_VALUES)
        parts[name] = content
        pos = end + 2


def _form_field_name(headers: bytes) -> str | None:
    for line in headers.decode("latin-1").split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-disposition":
            disposition, params = _media_type(value)
            if disposition == "form-data" and params.get("name"):
                return params["name"]
    return None


# --------------------------------------------------------------------------------------------------
# push.v1.PusherService/Push


def _parse_push(body: bytes, content_type: str) -> push_pb2.PushRequest:
    media, _ = _media_type(content_type)
    message = push_pb2.PushRequest()
    if media in PUSH_PROTO_TYPES:
        try:
            message.ParseFromString(body)
        except DecodeError as exc:
            raise InvalidProfileError(
                f"PushRequest: not a valid protobuf message ({exc})", RejectReason.BAD_PROTOBUF
            ) from None
        return message
    if media not in PUSH_JSON_TYPES:
        raise InvalidProfileError(
            f"Content-Type: {content_type!r} is not supported for push.v1.PusherService/Push "
            f"(use {' or '.join(PUSH_CONTENT_TYPES)})",
            RejectReason.UNSUPPORTED,
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidProfileError(
            f"PushRequest: JSON body is not valid UTF-8 ({exc})", RejectReason.BAD_PROTOBUF
        ) from None
    if not text.lstrip().startswith("{"):
        raise InvalidProfileError("PushRequest: the JSON body must be an object", RejectReason.BAD_PROTOBUF)
    try:
        json_format.Parse(text, message, ignore_unknown_fields=False)
    except (json_format.ParseError, RecursionError) as exc:
        raise InvalidProfileError(f"PushRequest: not valid proto3 JSON ({exc})", RejectReason.BAD_PROTOBUF) from None
    return message


def _series_labels(series: push_pb2.RawProfileSeries, where: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for j, pair in enumerate(series.labels):
        if not pair.name:
            raise InvalidProfileError(f"{where}.labels[{j}].name: empty", RejectReason.BAD_VALUES)
        if pair.name in labels:
            raise InvalidProfileError(
                f"{where}.labels[{j}].name: duplicate label {pair.name!r}", RejectReason.BAD_VALUES
            )
        labels[pair.name] = pair.value
    return labels


def _push(request: UploadRequest, body: bytes, limits: DecodeLimits, max_profiles: int) -> UploadResult:
    message = _parse_push(body, request.content_type)
    count = sum(len(series.samples) for series in message.series)
    if count > max_profiles:
        raise InvalidProfileError(
            f"PushRequest.series: {count} profiles in one request exceed the limit of {max_profiles}",
            RejectReason.TOO_MANY_ITEMS,
        )
    budget = _Budget(limits.max_decompressed_bytes)
    time_fallback = request.received_nanos or None
    profiles: list[DecodedProfile] = []
    ignored: list[str] = []
    for i, series in enumerate(message.series):
        series_where = f"series[{i}]"
        labels = _series_labels(series, series_where)
        profile_type = labels.get("__name__", "")
        if profile_type in _NO_SIGNAL_TYPES:
            ignored.extend(
                f"{series_where}.samples[{j}]: __name__={profile_type!r} is a CPU/wall-time profile "
                "(no leak signal, skipped)"
                for j in range(len(series.samples))
            )
            continue
        identity = resolve_identity(labels)
        alloc_cumulative = not _alloc_is_delta(labels)
        kind_hint = _kind_for(profile_type)
        for j, sample in enumerate(series.samples):
            result = _summarize(
                sample.raw_profile,
                limits,
                budget,
                f"{series_where}.samples[{j}].raw_profile",
                kind_hint=kind_hint,
                time_fallback_nanos=time_fallback,
                labels=labels,
                alloc_cumulative=alloc_cumulative,
            )
            if isinstance(result, str):
                ignored.append(result)
            else:
                profiles.append(DecodedProfile(identity.service, identity.instance, identity.resource, result))
    return UploadResult(tuple(profiles), tuple(ignored))


# --------------------------------------------------------------------------------------------------
# OTLP profiles


def _otlp(request: UploadRequest, body: bytes, limits: DecodeLimits, max_profiles: int) -> UploadResult:
    message = parse_export_request(body, request.content_type, limits)
    items = otlp_to_pprof(message, limits)
    if len(items) > max_profiles:
        raise InvalidProfileError(
            f"ExportProfilesServiceRequest: {len(items)} profiles in one request exceed the limit of {max_profiles}",
            RejectReason.TOO_MANY_ITEMS,
        )
    time_fallback = request.received_nanos or None
    profiles: list[DecodedProfile] = []
    ignored: list[str] = []
    for k, item in enumerate(items):
        where = f"profile {k} (scope {item.scope!r})" if item.scope else f"profile {k}"
        labels = item.resource
        alloc_cumulative = not _alloc_is_delta(labels)
        try:
            if item.profile is None:  # the original pprof bytes: the decoder every pprof upload takes
                try:
                    summary = summarize_pprof_bytes(
                        item.payload,
                        limits,
                        time_fallback_nanos=item.time_nanos or time_fallback,
                        labels=labels,
                        alloc_cumulative=alloc_cumulative,
                    )
                except InvalidProfileError as exc:  # named inside the request, as the converter names fields
                    if exc.reason is RejectReason.UNSUPPORTED:
                        raise
                    raise _located(exc, item.payload_where) from exc
            else:
                summary = summarize_pprof(
                    item.profile,
                    limits,
                    time_fallback_nanos=time_fallback,
                    labels=labels,
                    alloc_cumulative=alloc_cumulative,
                )
        except InvalidProfileError as exc:
            if exc.reason is RejectReason.UNSUPPORTED:
                ignored.append(f"{where}: {exc} (no leak signal, skipped)")
                continue
            raise _located(exc, where) from exc
        summary = dataclasses.replace(_with_session(summary, labels), source_format="otlp")
        identity = resolve_identity(labels)
        profiles.append(DecodedProfile(identity.service, identity.instance, identity.resource, summary))
    return UploadResult(tuple(profiles), tuple(ignored))
