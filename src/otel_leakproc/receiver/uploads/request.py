"""What an upload is as the transport received it (`UploadRequest`), and what it produces (`UploadResult`:
one `DecodedProfile` per profile that carries a leak signal, with its series identity and resource).

Frozen dataclasses with slots: picklable, so requests and results cross to and from the decoder workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from otel_leakproc.model import ProfileSummary

Dialect = Literal["ingest", "push", "otlp"]


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
