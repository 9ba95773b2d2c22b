"""Content types of uploads: the one table of the media types each message dialect accepts, shared by the
HTTP server (a 415 before the body is read) and the decoders (which codec reads the body), and the parser of
a Content-Type header's media type and parameters.

Connect push (`push.v1.PusherService/Push`): `application/proto` (the Connect codec name) or
`application/json`; the protobuf media types of OTLP (`application/x-protobuf`, `application/protobuf`) are
read as protobuf too. OTLP/HTTP (`/v1development/profiles`): `application/x-protobuf` (also
`application/protobuf`) or `application/json`. `/ingest` takes any body and tells them apart itself.
"""

from __future__ import annotations

import re
from typing import Literal

from otel_leakproc.receiver.uploads.request import Dialect

Codec = Literal["protobuf", "json"]
# dialect -> accepted media type -> the codec that reads the body (errors list them in this order).
MESSAGE_TYPES: dict[Dialect, dict[str, Codec]] = {
    "push": {
        "application/proto": "protobuf",
        "application/x-protobuf": "protobuf",
        "application/protobuf": "protobuf",
        "application/json": "json",
    },
    "otlp": {
        "application/x-protobuf": "protobuf",
        "application/protobuf": "protobuf",
        "application/json": "json",
    },
}

_PARAM = re.compile(r';\s*([!#$%&\'*+.^`|~\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))')


def media_type(content_type: str) -> tuple[str, dict[str, str]]:
    """The lower-cased media type and its parameters (`boundary`, `charset`, ...)."""
    media, _, rest = content_type.partition(";")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(";" + rest):
        quoted, plain = match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else plain
        params.setdefault(match.group(1).lower(), value)
    return media.strip().lower(), params
