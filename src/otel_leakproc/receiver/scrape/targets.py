"""Scrape targets: what to pull from where, and under which series identity. Pure, no I/O.

A target's labels travel to the ingest core in the `/ingest` `name` syntax (`service{k=v,...}`), so scraped
profiles get exactly the identity and resource an upload with the same name would get (docs/ingest.md):
`instance` becomes `service.instance.id`, `k8s.*` labels become resource attributes.

Kubernetes pods (the JSON objects of the list/watch API) become targets with `pod_target`: instance = pod
name; resource `k8s.namespace.name`, `k8s.pod.name`, `k8s.pod.uid`, `k8s.node.name`, the owning workload
(`k8s.deployment.name`, `k8s.replicaset.name`, `k8s.statefulset.name`, `k8s.daemonset.name`,
`k8s.job.name`), `service.version` from the pod's `app.kubernetes.io/version` label (a change is a
restart with a new version: fix verification, docs/detection.md) and the pod's labels as
`k8s.pod.label.<name>` (names with characters the name syntax cannot carry have them replaced by `_`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from otel_leakproc.receiver.scrape.config import (
    SCRAPE_PROFILES,
    KubernetesDiscoveryConfig,
    ScrapeConfig,
    StaticTarget,
)

_UNSAFE_KEY = re.compile(r"[^A-Za-z0-9_.]")
_UNSAFE_VALUE = re.compile(r"[{}=,\s]")
_UNSAFE_SERVICE = re.compile(r"[^A-Za-z0-9_.\-/]")
MAX_POD_LABELS = 16
VERSION_LABEL = "app.kubernetes.io/version"


@dataclass(frozen=True, slots=True)
class Target:
    """One scrape target.

    Attributes:
        id: stable identity: `static/<service>/<instance>` or `k8s/<namespace>/<pod>`.
        source: "static" or "kubernetes".
        base_url: pprof handlers' base URL; `<base_url>/<profile>` is fetched.
        service: `service.name` of its series.
        instance: `service.instance.id` of its series.
        labels: labels sent with every profile, in order (identity and resource attributes).
        profiles: profiles to pull.
    """

    id: str
    source: str
    base_url: str
    service: str
    instance: str
    labels: tuple[tuple[str, str], ...] = field(default=())
    profiles: tuple[str, ...] = SCRAPE_PROFILES

    def ingest_name(self) -> str:
        """The `/ingest` `name` parameter carrying this target's identity."""
        pairs = [("service.instance.id", self.instance), *self.labels]
        return f"{self.service}{{{','.join(f'{k}={v}' for k, v in pairs if v)}}}"


def static_target(spec: StaticTarget, config: ScrapeConfig) -> Target:
    """The target for one `scrape.static_targets` entry (already validated)."""
    base = spec.base_url
    instance = spec.instance or base.split("://", 1)[-1].split("/", 1)[0]
    return Target(
        id=f"static/{spec.service}/{instance}",
        source="static",
        base_url=base,
        service=spec.service,
        instance=instance,
        labels=tuple(spec.labels.items()),
        profiles=spec.profiles or config.profiles,
    )


def _safe_value(value: str) -> str:
    return _UNSAFE_VALUE.sub("_", value.strip())


def _safe_key(key: str) -> str:
    return _UNSAFE_KEY.sub("_", key)


def _owner(meta: Mapping[str, Any], labels: Mapping[str, str]) -> tuple[str, str, str]:
    """(resource key, name, workload name) of the pod's controller; ("", "", "") when none."""
    for ref in meta.get("ownerReferences") or ():
        if not isinstance(ref, Mapping) or not ref.get("controller", True):
            continue
        kind, name = str(ref.get("kind", "")), str(ref.get("name", ""))
        if not name:
            continue
        if kind == "ReplicaSet":
            pod_hash = labels.get("pod-template-hash", "")
            if pod_hash and name.endswith("-" + pod_hash):
                return "k8s.replicaset.name", name, name[: -len(pod_hash) - 1]
            return "k8s.replicaset.name", name, name
        key = {
            "StatefulSet": "k8s.statefulset.name",
            "DaemonSet": "k8s.daemonset.name",
            "Job": "k8s.job.name",
            "CronJob": "k8s.cronjob.name",
        }.get(kind)
        if key:
            return key, name, name
    return "", "", ""


def _port(pod: Mapping[str, Any], annotations: Mapping[str, str], prefix: str, default: int) -> int | None:
    text = annotations.get(prefix + "port", "").strip()
    if text:
        return int(text) if text.isdigit() and 0 < int(text) < 65536 else None
    if default:
        return default
    for container in (pod.get("spec") or {}).get("containers") or ():
        for port in container.get("ports") or ():
            if port.get("name") == "pprof" and isinstance(port.get("containerPort"), int):
                return int(port["containerPort"])
    return None


def pod_target(pod: Mapping[str, Any], kube: KubernetesDiscoveryConfig, config: ScrapeConfig) -> Target | None:
    """The target for one pod object of the Kubernetes API, or None when it is not to be scraped.

    Not scraped: no `<prefix>scrape: "true"` annotation, not Running, no pod IP, being deleted, or no
    usable port (a malformed `<prefix>port`, none configured and no container port named `pprof`).
    """
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    annotations: Mapping[str, str] = meta.get("annotations") or {}
    labels: Mapping[str, str] = meta.get("labels") or {}
    prefix = kube.annotation_prefix
    if annotations.get(prefix + "scrape", "").strip().lower() != "true":
        return None
    if status.get("phase") != "Running" or not status.get("podIP") or meta.get("deletionTimestamp"):
        return None
    port = _port(pod, annotations, prefix, kube.port)
    if port is None:
        return None
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    scheme = annotations.get(prefix + "scheme", "").strip() or kube.scheme
    if scheme not in ("http", "https"):
        return None
    path = annotations.get(prefix + "path", "").strip() or kube.path
    path = "/" + path.strip("/") if path.strip("/") else ""
    profiles = kube.profiles or config.profiles
    listed = annotations.get(prefix + "profiles", "").strip()
    if listed:
        profiles = tuple(p for p in dict.fromkeys(x.strip() for x in listed.split(",")) if p in SCRAPE_PROFILES)
        if not profiles:
            return None
    owner_key, owner_name, workload = _owner(meta, labels)
    service = (
        annotations.get(prefix + "service", "").strip()
        or labels.get(kube.service_label, "").strip()
        or workload
        or name
    )
    host = status["podIP"]
    host = f"[{host}]" if ":" in host else host
    resource: list[tuple[str, str]] = [
        ("k8s.namespace.name", namespace),
        ("k8s.pod.name", name),
        ("k8s.pod.uid", str(meta.get("uid", ""))),
        ("k8s.node.name", str((pod.get("spec") or {}).get("nodeName", ""))),
    ]
    if owner_key == "k8s.replicaset.name":
        if workload != owner_name:
            resource.append(("k8s.deployment.name", workload))
        resource.append((owner_key, owner_name))
    elif owner_key:
        resource.append((owner_key, owner_name))
    resource.append(("service.version", str(labels.get(VERSION_LABEL, "")).strip()))
    for key, value in list(labels.items())[:MAX_POD_LABELS]:
        resource.append((f"k8s.pod.label.{_safe_key(key)}", value))
    return Target(
        id=f"k8s/{namespace}/{name}",
        source="kubernetes",
        base_url=f"{scheme}://{host}:{port}{path}",
        service=_UNSAFE_SERVICE.sub("_", service),
        instance=_safe_value(name),
        labels=tuple((k, _safe_value(v)) for k, v in resource if v),
        profiles=tuple(profiles),
    )
