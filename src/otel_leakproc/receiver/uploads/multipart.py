"""`multipart/form-data` bodies (RFC 7578) of `/ingest`: the fields by name, bounded to a few parts."""

from __future__ import annotations

from collections.abc import Mapping

from otel_leakproc.errors import InvalidProfileError, RejectReason
from otel_leakproc.receiver.uploads.media import media_type

MAX_MULTIPART_PARTS = 16


def parse_multipart(body: bytes, params: Mapping[str, str]) -> dict[str, bytes]:
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
        if n > MAX_MULTIPART_PARTS:
            raise InvalidProfileError(
                f"body: more than {MAX_MULTIPART_PARTS} multipart parts", RejectReason.TOO_MANY_ITEMS
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
            disposition, params = media_type(value)
            if disposition == "form-data" and params.get("name"):
                return params["name"]
    return None
