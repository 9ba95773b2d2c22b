"""Series identity and the exported resource, from Pyroscope labels or OTLP resource attributes.

- service: `service.name` (OTLP resource), the Pyroscope `service_name` label or the `/ingest` name;
  `unknown_service` when none is given.
- instance: the first non-empty of `INSTANCE_KEYS`, else "" (then the service has one series per kind).
- resource: what exporters attach to leak signals, bounded to `MAX_RESOURCE_ATTRIBUTES` entries (keys longer
  than `MAX_KEY_LENGTH` are left out; values are capped by `receiver/value_caps.py`): `service.name`,
  `service.instance.id`, `service.namespace` (also from `namespace` / `service_namespace`), `service.version`
  (also from a `version` label; the detectors treat a change as a restart with a new version), `k8s.*` as
  sent, then the other user labels in the order sent.
  Internal labels (`__name__`, `__session_id__`, any `__x__`, `service_name`) are never exported.

Lengths are not cut here: `receiver.value_caps` cuts service, instance and every key and value to the
configured caps at the decoder's boundary, and counts each cut (`otel_leakproc_values_truncated_total`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from otel_leakproc.model import UNKNOWN_SERVICE

# Where the instance identity comes from, most specific first (documented in docs/ingest.md).
INSTANCE_KEYS = ("service.instance.id", "instance", "pod", "k8s.pod.name", "hostname", "host.name")
NAMESPACE_KEYS = ("service.namespace", "service_namespace", "namespace")
SERVICE_KEYS = ("service.name", "service_name")
VERSION_KEYS = ("service.version", "version", "service_version")
MAX_RESOURCE_ATTRIBUTES = 32
MAX_KEY_LENGTH = 128


@dataclass(frozen=True, slots=True)
class Identity:
    """The service and instance an upload's profiles belong to, with the resource attributes that came with them."""

    service: str
    instance: str
    resource: dict[str, str] = field(default_factory=dict, hash=False)


def _first(labels: Mapping[str, str], keys: tuple[str, ...]) -> str:
    for key in keys:
        value = labels.get(key, "").strip()
        if value:
            return value
    return ""


def _internal(key: str) -> bool:
    return (key.startswith("__") and key.endswith("__")) or key in SERVICE_KEYS or key in NAMESPACE_KEYS


def resolve_identity(labels: Mapping[str, str], service: str = "") -> Identity:
    """Service, instance and exported resource from a label set (Pyroscope labels or OTLP resource).

    Args:
        labels: the series labels or flattened resource attributes, in the order sent.
        service: the service name when the dialect carries it outside the labels (the `/ingest` name);
            otherwise `service.name` / `service_name` from the labels.
    """
    service = service.strip() or _first(labels, SERVICE_KEYS) or UNKNOWN_SERVICE
    instance = _first(labels, INSTANCE_KEYS)
    resource = {"service.name": service}
    if instance:
        resource["service.instance.id"] = instance
    namespace = _first(labels, NAMESPACE_KEYS)
    if namespace:
        resource["service.namespace"] = namespace
    version = _first(labels, VERSION_KEYS)
    if version:
        resource["service.version"] = version
    others: list[tuple[str, str]] = []
    for key, value in labels.items():
        if _internal(key) or key in resource or len(key) > MAX_KEY_LENGTH:
            continue
        if key.startswith("k8s."):
            resource[key] = value
            if len(resource) >= MAX_RESOURCE_ATTRIBUTES:
                break
        else:
            others.append((key, value))
    for key, value in others:
        if len(resource) >= MAX_RESOURCE_ATTRIBUTES:
            break
        resource[key] = value
    return Identity(service, instance, resource)
