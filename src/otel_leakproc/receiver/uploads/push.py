"""Pyroscope's `push.v1.PusherService/Push` (Connect unary, or gRPC): a `PushRequest` of labelled series of
raw pprof profiles, as protobuf or proto3 JSON (`media.MESSAGE_TYPES`).
"""

from __future__ import annotations

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from otel_leakproc.errors import InvalidProfileError, RejectReason
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.identity import resolve_identity
from otel_leakproc.receiver.proto import push_pb2
from otel_leakproc.receiver.uploads.body import Budget
from otel_leakproc.receiver.uploads.media import MESSAGE_TYPES, media_type
from otel_leakproc.receiver.uploads.profiles import alloc_is_delta, kind_for, summarize
from otel_leakproc.receiver.uploads.request import DecodedProfile, UploadRequest, UploadResult

# Profile types skipped without decoding: time-based profiles, no leak signal.
_NO_SIGNAL_TYPES = frozenset({"process_cpu", "cpu", "wall", "itimer"})


def _parse_push(body: bytes, content_type: str) -> push_pb2.PushRequest:
    media, _ = media_type(content_type)
    accepted = MESSAGE_TYPES["push"]
    codec = accepted.get(media)
    message = push_pb2.PushRequest()
    if codec == "protobuf":
        try:
            message.ParseFromString(body)
        except DecodeError as exc:
            raise InvalidProfileError(
                f"PushRequest: not a valid protobuf message ({exc})", RejectReason.BAD_PROTOBUF
            ) from None
        return message
    if codec != "json":
        raise InvalidProfileError(
            f"Content-Type: {content_type!r} is not supported for push.v1.PusherService/Push "
            f"(use {' or '.join(accepted)})",
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


def push_upload(request: UploadRequest, body: bytes, limits: DecodeLimits, max_profiles: int) -> UploadResult:
    message = _parse_push(body, request.content_type)
    count = sum(len(series.samples) for series in message.series)
    if count > max_profiles:
        raise InvalidProfileError(
            f"PushRequest.series: {count} profiles in one request exceed the limit of {max_profiles}",
            RejectReason.TOO_MANY_ITEMS,
        )
    budget = Budget(limits.max_decompressed_bytes)
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
        alloc_cumulative = not alloc_is_delta(labels)
        kind_hint = kind_for(profile_type)
        for j, sample in enumerate(series.samples):
            result = summarize(
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
