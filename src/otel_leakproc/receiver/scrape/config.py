"""The `scrape` config section: pull profiles from `net/http/pprof` endpoints, static or discovered in Kubernetes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# Profiles a Go program serves under /debug/pprof/ that carry a leak signal (`goroutineleak`: Go 1.26+
# with the experiment, 1.27 by default; a 404 marks it absent for the target).
SCRAPE_PROFILES = ("heap", "goroutine", "goroutineleak", "mutex", "block")
DEFAULT_PROFILES = SCRAPE_PROFILES
DEFAULT_PATH = "/debug/pprof"
# How profiles are fetched: `pprof` = `<base>/<profile>` (gzipped protobuf); `text` = `<base>/<profile>?debug=1`
# (Go's text form, for targets whose proxies or tooling only pass text).
SCRAPE_FORMATS = ("pprof", "text")
MAX_TARGETS_LIMIT = 100_000

MUST_BE_POSITIVE = "{key}: must be > 0, got {value}"
MUST_BE_BETWEEN = "{key}: must be between {low} and {high}, got {value}"
UNKNOWN_PROFILE = "{key}: {value!r} is not one of " + ", ".join(SCRAPE_PROFILES)
BAD_LABEL_VALUE = "{key}: {value!r} may not contain any of '{{}}=,' or surrounding spaces"
BAD_LABEL_KEY = "{key}: {value!r} is not a label name (letters, digits, '_' and '.')"
BAD_SERVICE = "{key}: {value!r} is not a service name (letters, digits, '_', '.', '-', '/')"

_LABEL_KEY = re.compile(r"[A-Za-z0-9_.]+")
_SERVICE = re.compile(r"[A-Za-z0-9_.\-/]+")
_FORBIDDEN_VALUE = set("{}=,")


def _check_profiles(key: str, profiles: tuple[str, ...]) -> list[str]:
    errors = [
        UNKNOWN_PROFILE.format(key=f"{key}[{i}]", value=p) for i, p in enumerate(profiles) if p not in SCRAPE_PROFILES
    ]
    if len(set(profiles)) != len(profiles):
        errors.append(f"{key}: lists a profile twice")
    return errors


def check_label_value(key: str, value: str) -> list[str]:
    """Errors for a label value that the `/ingest` name syntax cannot carry."""
    if value != value.strip() or _FORBIDDEN_VALUE.intersection(value):
        return [BAD_LABEL_VALUE.format(key=key, value=value)]
    return []


@dataclass(frozen=True, slots=True)
class StaticTarget:
    """One fixed scrape target.

    Attributes:
        url: base URL of the pprof handlers, e.g. `http://127.0.0.1:6060/debug/pprof` (the profile name is
            appended). Give `url` or `address`, not both.
        address: `HOST:PORT`; the base URL is then `http://HOST:PORT/debug/pprof`.
        service: `service.name` of the target's series.
        instance: `service.instance.id` ("" = the address).
        labels: extra labels, exported as resource attributes (e.g. `{region: eu-1}`).
        profiles: profiles to pull; empty = `scrape.profiles`.
    """

    service: str
    url: str = ""
    address: str = ""
    instance: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    profiles: tuple[str, ...] = ()

    def validate(self) -> list[str]:
        errors: list[str] = []
        if bool(self.url) == bool(self.address):
            errors.append("url: give exactly one of url and address")
        if self.url:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                errors.append(f"url: {self.url!r} is not an http:// or https:// URL")
        if self.address and not re.fullmatch(r"[^\s/:]+:\d{1,5}|\[[0-9a-fA-F:.]+\]:\d{1,5}", self.address):
            errors.append(f"address: {self.address!r} is not HOST:PORT")
        if not _SERVICE.fullmatch(self.service):
            errors.append(BAD_SERVICE.format(key="service", value=self.service))
        errors.extend(check_label_value("instance", self.instance))
        for key, value in self.labels.items():
            if not _LABEL_KEY.fullmatch(key):
                errors.append(BAD_LABEL_KEY.format(key="labels", value=key))
            errors.extend(check_label_value(f"labels.{key}", value))
        errors.extend(_check_profiles("profiles", self.profiles))
        return errors

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/") if self.url else f"http://{self.address}{DEFAULT_PATH}"


@dataclass(frozen=True, slots=True)
class KubernetesDiscoveryConfig:
    """Pod discovery through the Kubernetes API (list + watch with the official client).

    A pod is scraped when it is running, has an IP and carries the annotation `<annotation_prefix>scrape:
    "true"`. Per-pod annotations override the settings here: `<prefix>port`, `<prefix>path`,
    `<prefix>scheme`, `<prefix>profiles` (comma-separated) and `<prefix>service`.

    Attributes:
        enabled: watch pods (needs RBAC: list and watch on pods; the Helm chart's `rbac.create`).
        kubeconfig: kubeconfig file; "" = the in-cluster service account when running in a pod, else
            `$KUBECONFIG` or `~/.kube/config`.
        context: kubeconfig context; "" = its current context.
        namespaces: namespaces to watch; empty = all (a cluster-wide list/watch).
        label_selector: Kubernetes label selector applied by the API server, e.g. `team=shop`.
        annotation_prefix: prefix of the per-pod annotations.
        port: pprof port when the pod has no `<prefix>port` annotation; 0 = a container port named `pprof`.
        path: path prefix of the pprof handlers when the pod has no `<prefix>path` annotation.
        scheme: `http` or `https` when the pod has no `<prefix>scheme` annotation.
        profiles: profiles to pull when the pod has no `<prefix>profiles`; empty = `scrape.profiles`.
        service_label: pod label naming the service; without it (and without `<prefix>service`) the owning
            workload's name (Deployment, StatefulSet, DaemonSet, Job), else the pod name.
        watch_timeout_seconds: a watch is re-opened after this long (the server ends it then).
    """

    enabled: bool = False
    kubeconfig: str = ""
    context: str = ""
    namespaces: tuple[str, ...] = ()
    label_selector: str = ""
    annotation_prefix: str = "otel-leakproc.io/"
    port: int = 0
    path: str = DEFAULT_PATH
    scheme: str = "http"
    profiles: tuple[str, ...] = ()
    service_label: str = "app.kubernetes.io/name"
    watch_timeout_seconds: int = 300

    def validate(self) -> list[str]:
        errors: list[str] = []
        if not 0 <= self.port <= 65535:
            errors.append(MUST_BE_BETWEEN.format(key="port", low=0, high=65535, value=self.port))
        if not self.path.startswith("/"):
            errors.append(f"path: must start with '/', got {self.path!r}")
        if self.scheme not in ("http", "https"):
            errors.append(f"scheme: must be http or https, got {self.scheme!r}")
        if not self.annotation_prefix:
            errors.append("annotation_prefix: must not be empty")
        if not 10 <= self.watch_timeout_seconds <= 3600:
            errors.append(
                MUST_BE_BETWEEN.format(key="watch_timeout_seconds", low=10, high=3600, value=self.watch_timeout_seconds)
            )
        errors.extend(f"namespaces[{i}]: must not be empty" for i, ns in enumerate(self.namespaces) if not ns.strip())
        errors.extend(_check_profiles("profiles", self.profiles))
        return errors


@dataclass(frozen=True, slots=True)
class DumpOnSuspectConfig:
    """A `goroutine?debug=2` dump fetched when a scraped target's heap or goroutine series becomes flagged.

    The dump is ingested as a goroutine text dump (it carries wait minutes) and its largest goroutine
    groups, with their stacks, are kept as evidence on `/api/v1/series` (`targets[].dump`).

    Attributes:
        enabled: fetch dumps at all.
        min_interval_seconds: at most one dump per target per this many seconds.
        max_bytes: largest dump read; a longer one is cut there (whole goroutines only).
        max_groups: goroutine groups kept as evidence per dump.
        max_frames: frames kept per group's stack.
    """

    enabled: bool = True
    min_interval_seconds: float = 600.0
    max_bytes: int = 8 * 1024 * 1024
    max_groups: int = 10
    max_frames: int = 24

    def validate(self) -> list[str]:
        errors: list[str] = []
        for key in ("min_interval_seconds", "max_bytes"):
            value = getattr(self, key)
            if value <= 0:
                errors.append(MUST_BE_POSITIVE.format(key=key, value=value))
        for key, high in (("max_groups", 100), ("max_frames", 200)):
            value = getattr(self, key)
            if not 1 <= value <= high:
                errors.append(MUST_BE_BETWEEN.format(key=key, low=1, high=high, value=value))
        return errors


@dataclass(frozen=True, slots=True)
class ScrapeConfig:
    """Pulling profiles from targets that serve `net/http/pprof` (the `scrape` section).

    Every pulled profile goes through the same ingest core as an upload (admission, rate limit, decode
    queue, worker decode, counters).

    Attributes:
        enabled: scrape at all.
        interval_seconds: time between two scrapes of one target.
        jitter: each wait is `interval_seconds` times a random factor in [1 - jitter, 1 + jitter]; the
            first scrape of a target waits a random part of `jitter * interval_seconds`.
        timeout_seconds: deadline of one profile request (connect and read).
        max_response_bytes: largest profile read; a longer response fails that profile.
        profiles: profiles pulled from every target (`heap`, `goroutine`, `goroutineleak`, `mutex`, `block`);
            one a target answers 404 for is remembered as absent and tried again an hour later.
        format: `pprof` fetches the protobuf form; `text` fetches `?debug=1` (Go's text form, same summary).
        tenant: tenant of scraped series; "" = `server.auth.default_tenant`.
        max_targets: most targets at once (static and discovered); more are dropped and counted.
        static_targets: fixed targets.
        kubernetes: pod discovery.
        dump_on_suspect: goroutine dumps fetched as evidence when a series becomes flagged.
    """

    enabled: bool = False
    interval_seconds: float = 60.0
    jitter: float = 0.1
    timeout_seconds: float = 10.0
    max_response_bytes: int = 16 * 1024 * 1024
    profiles: tuple[str, ...] = DEFAULT_PROFILES
    format: str = "pprof"
    tenant: str = ""
    max_targets: int = 1000
    static_targets: tuple[StaticTarget, ...] = ()
    kubernetes: KubernetesDiscoveryConfig = field(default_factory=KubernetesDiscoveryConfig)
    dump_on_suspect: DumpOnSuspectConfig = field(default_factory=DumpOnSuspectConfig)

    def validate(self) -> list[str]:
        errors: list[str] = []
        for key in ("interval_seconds", "timeout_seconds", "max_response_bytes"):
            value = getattr(self, key)
            if value <= 0:
                errors.append(MUST_BE_POSITIVE.format(key=key, value=value))
        if not 0 <= self.jitter <= 0.5:
            errors.append(MUST_BE_BETWEEN.format(key="jitter", low=0, high=0.5, value=self.jitter))
        if not 1 <= self.max_targets <= MAX_TARGETS_LIMIT:
            errors.append(
                MUST_BE_BETWEEN.format(key="max_targets", low=1, high=MAX_TARGETS_LIMIT, value=self.max_targets)
            )
        if not self.profiles:
            errors.append("profiles: must list at least one profile")
        errors.extend(_check_profiles("profiles", self.profiles))
        if self.format not in SCRAPE_FORMATS:
            errors.append(f"format: {self.format!r} is not one of {', '.join(SCRAPE_FORMATS)}")
        if self.tenant and not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", self.tenant):
            errors.append(f"tenant: {self.tenant!r} is not 1-64 letters, digits, '.', '_' or '-'")
        return errors
