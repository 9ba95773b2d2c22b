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

One module per dialect (`ingest.py`, `push.py`, `otlp.py`; `multipart.py` for /ingest's form bodies), over
what they share: `request.py` (the request and result types), `media.py` (the accepted media types, also
the HTTP server's), `body.py` (Content-Encoding, the decompressed-bytes budget) and `profiles.py` (one
profile to its summary).
"""

from __future__ import annotations

from otel_leakproc.errors import InvalidProfileError, RejectReason
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.uploads.body import decode_content_encoding
from otel_leakproc.receiver.uploads.ingest import INGEST_FORMATS, ingest_upload, parse_time
from otel_leakproc.receiver.uploads.otlp import otlp_upload
from otel_leakproc.receiver.uploads.push import push_upload
from otel_leakproc.receiver.uploads.request import DecodedProfile, Dialect, UploadRequest, UploadResult

__all__ = [
    "INGEST_FORMATS",
    "DecodedProfile",
    "Dialect",
    "UploadRequest",
    "UploadResult",
    "parse_time",
    "process_upload",
]


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
    body = decode_content_encoding(request, limits)
    if request.dialect == "ingest":
        return ingest_upload(request, body, limits)
    if request.dialect == "push":
        return push_upload(request, body, limits, max_profiles)
    if request.dialect == "otlp":
        return otlp_upload(request, body, limits, max_profiles)
    raise InvalidProfileError(
        f"dialect: {request.dialect!r} is not one of ingest, push, otlp", RejectReason.UNSUPPORTED
    )
