"""The request body before any dialect reads it: its Content-Encoding, and the budget of decompressed bytes
all profiles of one request may take together.
"""

from __future__ import annotations

from otel_leakproc.errors import InvalidProfileError, PayloadTooLargeError, RejectReason
from otel_leakproc.receiver.decode.gzip_bound import gunzip_bounded, inflate_body, is_gzip
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.uploads.request import UploadRequest


def decode_content_encoding(request: UploadRequest, limits: DecodeLimits) -> bytes:
    """The body with its Content-Encoding (gzip or none) undone, under `limits.max_decompressed_bytes`."""
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


class Budget:
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
