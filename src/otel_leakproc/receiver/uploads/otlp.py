"""OTLP profiles (`/v1development/profiles`, gRPC `ProfilesService/Export`): an
`ExportProfilesServiceRequest` as protobuf or OTLP JSON, each profile decoded as pprof.
"""

from __future__ import annotations

import dataclasses

from otel_leakproc.errors import InvalidProfileError, RejectReason
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.decode.otlp_profiles import otlp_to_pprof, parse_export_request
from otel_leakproc.receiver.decode.pprof import summarize_pprof, summarize_pprof_bytes
from otel_leakproc.receiver.identity import resolve_identity
from otel_leakproc.receiver.uploads.profiles import alloc_is_delta, located, with_session
from otel_leakproc.receiver.uploads.request import DecodedProfile, UploadRequest, UploadResult


def otlp_upload(request: UploadRequest, body: bytes, limits: DecodeLimits, max_profiles: int) -> UploadResult:
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
        alloc_cumulative = not alloc_is_delta(labels)
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
                    raise located(exc, item.payload_where) from exc
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
            raise located(exc, where) from exc
        summary = dataclasses.replace(with_session(summary, labels), source_format="otlp")
        identity = resolve_identity(labels)
        profiles.append(DecodedProfile(identity.service, identity.instance, identity.resource, summary))
    return UploadResult(tuple(profiles), tuple(ignored))
