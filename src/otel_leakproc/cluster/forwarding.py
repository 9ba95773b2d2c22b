"""Routing `/ingest` uploads to the owner of their series before they are decoded (`server.processes`).

An `/ingest` upload names its one series in the `name` query parameter, and the series' service and
instance are the name's (`labels.parse_label_set`, `identity.resolve_identity`, cut to
`decode.max_label_chars` as the decoder's output is), whatever the body holds. So the process that
receives it can tell the owner without decoding: when that is another process, it sends the request as
received (tenant, dialect, the headers and query the decoder reads, the receive time, the body) over the
process socket; the owner admits it to its own decode queue, decodes, journals and applies it, and its
answer (accepted, or the error with its message) is the upload's answer. No point record is encoded or
decoded for it.

What concerns the client is decided once, by the receiving process before forwarding: authentication,
the tenant's rate limit and queue share, the body bound. The owner counts what decoding decides
(received profiles, rejections by reason) and refuses when its own queue or bytes in flight are full.
A name that does not parse (it gets its error where it arrived) and the other dialects (push, OTLP: one
request may hold several series, named inside the body) are decoded where they arrive and their points
handed over as point records (`peers.py`).

A body larger than `ingest.inline_max_bytes` (one a decoder worker decodes, e.g. a 200 KiB heap
profile) is not sent: forwarding it cost both processes about 1.3 ms of CPU (the body crosses two sockets
and is copied several times), more than decoding it here and sending the summary. Such an upload is
decoded where it arrived, in a worker that returns the result already pickled, and those bytes (a few
KiB) go to the owner with the tenant and dialect (DECODED requests); the owner unpickles them, as it would
its own worker's answer, journals and applies the points, and answers the outcome. The process sockets
live in a 0700 folder (`supervisor.py`): only the service's own user reaches them, as with the decoder
workers' sockets, which carry pickles too.

On the socket, an upload is u32 header length, i64 receive time, the header (JSON: tenant, dialect,
Content-Type, Content-Encoding, query pairs), then the body. The answer is the outcome (JSON: accepted,
ignored), or with status REJECTED the error (JSON: kind, message, reason or retry-after).
"""

from __future__ import annotations

import json
import struct
from typing import Any, NoReturn, cast

from otel_leakproc.errors import (
    InvalidProfileError,
    PayloadTooLargeError,
    RefusedError,
    RejectReason,
    UnavailableError,
)
from otel_leakproc.receiver.identity import resolve_identity
from otel_leakproc.receiver.ingest import DecoderCrashedError, IngestOutcome
from otel_leakproc.receiver.labels import parse_label_set
from otel_leakproc.receiver.uploads import Dialect, UploadRequest
from otel_leakproc.receiver.value_caps import ValueCaps, cap_label
from otel_leakproc.state.codec import CodecError

_HEAD = struct.Struct("<Iq")
_DIALECTS = ("ingest", "push", "otlp")
# The series of names seen lately (clients send the same name again and again): (name, cap) -> series.
# At most 4096 names of at most 1,024 characters (a few MiB); longer names are parsed every time.
_SERIES_CACHE: dict[tuple[str, int], tuple[str, str] | None] = {}
_SERIES_CACHE_SIZE = 4096
_CACHED_NAME_CHARS = 1024


def upload_series(request: UploadRequest, caps: ValueCaps) -> tuple[str, str] | None:
    """The (service, instance) every profile of `request` will have once decoded, when the request alone
    says it without decoding (an `/ingest` upload with a valid `name`); else None."""
    if request.dialect != "ingest":
        return None
    name = next((value for key, value in request.query if key == "name"), "")
    if len(name) > _CACHED_NAME_CHARS:
        return _name_series(name, caps)
    key = (name, caps.max_label_chars)
    if key in _SERIES_CACHE:
        return _SERIES_CACHE[key]
    if len(_SERIES_CACHE) >= _SERIES_CACHE_SIZE:
        _SERIES_CACHE.clear()
    series = _SERIES_CACHE[key] = _name_series(name, caps)
    return series


def _name_series(name: str, caps: ValueCaps) -> tuple[str, str] | None:
    if not name.strip():
        return None
    try:
        label_set = parse_label_set(name)
    except InvalidProfileError:
        return None  # decoded where it arrived, which answers with the name's error
    identity = resolve_identity(label_set.labels, label_set.app)
    return cap_label(identity.service, caps), cap_label(identity.instance, caps)


def encode_upload(tenant: str, request: UploadRequest) -> bytes:
    header = json.dumps(
        [tenant, request.dialect, request.content_type, request.content_encoding, request.query],
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    return b"".join((_HEAD.pack(len(header), request.received_nanos), header, request.body))


def decode_upload(payload: bytes) -> tuple[str, UploadRequest]:
    """The tenant and request of an UPLOAD request. Raises CodecError."""
    try:
        length, received = _HEAD.unpack_from(payload)
        end = _HEAD.size + length
        tenant, dialect, content_type, content_encoding, query = json.loads(payload[_HEAD.size : end])
        if dialect not in _DIALECTS or len(payload) < end:
            raise ValueError(f"dialect {dialect!r} or length {length}")
        pairs = tuple((str(k), str(v)) for k, v in query)
        request = UploadRequest(
            cast(Dialect, dialect), payload[end:], str(content_type), str(content_encoding), pairs, received
        )
    except (struct.error, ValueError, TypeError) as exc:
        raise CodecError(f"a forwarded upload that cannot be read: {exc}") from None
    return str(tenant), request


def encode_decoded(tenant: str, dialect: str, pickled: bytes) -> bytes:
    """A DECODED request: the upload's tenant and dialect, then its result as the decoder worker pickled it."""
    header = json.dumps([tenant, dialect], ensure_ascii=False, separators=(",", ":")).encode()
    return b"".join((_HEAD.pack(len(header), 0), header, pickled))


def decode_decoded(payload: bytes) -> tuple[str, Dialect, bytes]:
    """The tenant, dialect and pickled result of a DECODED request. Raises CodecError."""
    try:
        length, _ = _HEAD.unpack_from(payload)
        end = _HEAD.size + length
        tenant, dialect = json.loads(payload[_HEAD.size : end])
        if dialect not in _DIALECTS or len(payload) < end:
            raise ValueError(f"dialect {dialect!r} or length {length}")
    except (struct.error, ValueError, TypeError) as exc:
        raise CodecError(f"a decoded upload that cannot be read: {exc}") from None
    return str(tenant), cast(Dialect, dialect), payload[end:]


def encode_outcome(outcome: IngestOutcome) -> bytes:
    return json.dumps([outcome.tenant, outcome.accepted, list(outcome.ignored)]).encode()


def decode_outcome(payload: bytes) -> IngestOutcome:
    tenant, accepted, ignored = json.loads(payload)
    return IngestOutcome(str(tenant), int(accepted), tuple(str(i) for i in ignored))


def encode_refusal(exc: InvalidProfileError | RefusedError | DecoderCrashedError) -> bytes:
    """An error of the owner's decode or sink, for the receiving process to raise again (`raise_refusal`)."""
    error: dict[str, Any] = {"message": str(exc)}
    if isinstance(exc, InvalidProfileError):
        error.update(kind="invalid", reason=exc.reason.value)
    elif isinstance(exc, RefusedError):
        error.update(kind="unavailable" if isinstance(exc, UnavailableError) else "refused", retry=exc.retry_after)
    else:
        error.update(kind="crashed")
    return json.dumps(error).encode()


def raise_refusal(payload: bytes) -> NoReturn:
    """Raise the owner's error as the owner raised it: the same exception type, reason and message, so
    the client gets the answer it would have had from the owner."""
    error = json.loads(payload)
    kind, message = error["kind"], str(error["message"])
    if kind == "invalid":
        reason = RejectReason(error["reason"])
        if reason is RejectReason.TOO_LARGE:
            raise PayloadTooLargeError(message)
        raise InvalidProfileError(message, reason)
    if kind == "unavailable":
        raise UnavailableError(message, float(error["retry"]))
    if kind == "refused":
        raise RefusedError(message, float(error["retry"]))
    raise DecoderCrashedError(message)
