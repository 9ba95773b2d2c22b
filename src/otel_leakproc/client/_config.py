"""Client settings: explicit arguments, then environment variables, then defaults.

A bad explicit argument raises `ValueError` at `start()` (a bug in the caller's one line); a bad
environment variable is logged and its default used, so a deployment typo never stops the service.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

LOG = logging.getLogger("otel_leakproc.client")

DEFAULT_URL = "http://127.0.0.1:4040"
DEFAULT_SERVICE = "unknown_service:python"

ENV_URL = "OTEL_LEAKPROC_URL"
ENV_SERVICE = "OTEL_SERVICE_NAME"
ENV_RESOURCE = "OTEL_RESOURCE_ATTRIBUTES"
ENV_INSTANCE = "OTEL_LEAKPROC_INSTANCE"
ENV_TENANT = "OTEL_LEAKPROC_TENANT"
ENV_TOKEN = "OTEL_LEAKPROC_TOKEN"
ENV_USER = "OTEL_LEAKPROC_BASIC_AUTH_USER"
ENV_PASSWORD = "OTEL_LEAKPROC_BASIC_AUTH_PASSWORD"
ENV_INTERVAL = "OTEL_LEAKPROC_INTERVAL"
ENV_FRAMES = "OTEL_LEAKPROC_FRAMES"
ENV_MAX_TRACEBACKS = "OTEL_LEAKPROC_MAX_TRACEBACKS"
ENV_THREADS = "OTEL_LEAKPROC_THREADS"
ENV_MAX_CPU_FRACTION = "OTEL_LEAKPROC_MAX_CPU_FRACTION"
ENV_ENABLED = "OTEL_LEAKPROC_ENABLED"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """What the client sends, where, and how often.

    Attributes:
        url: base URL of otel-leakproc's HTTP server (the client posts to `/push.v1.PusherService/Push`).
        service: `service.name` of the series.
        instance: `service.instance.id` (default: the host name, which is the pod name in Kubernetes).
        attributes: more resource attributes sent as labels (`service.namespace`, `k8s.*`, `region`, ...).
        tenant: sent as `X-Scope-OrgID`.
        token: sent as `Authorization: Bearer`.
        basic_auth: (user, password), sent as `Authorization: Basic` (ignored when `token` is set).
        interval_seconds: time between captures (at least 1; default 30).
        frames: frames per traceback when the client starts `tracemalloc` (1-128; default 16).
        max_tracebacks: tracebacks kept whole per heap profile; the rest merged by leaf frame.
        threads: also send thread stacks (as a `goroutine` profile).
        max_thread_frames: frames per thread stack.
        timeout_seconds: per HTTP request.
        max_buffered: captures kept while the receiver is unreachable (oldest dropped and counted).
        max_backoff_seconds: longest wait between retries (a larger `Retry-After` is honoured up to 1 h).
        max_cpu_fraction: a capture may use at most this share of one CPU; slower ones stretch the interval.
    """

    url: str = DEFAULT_URL
    service: str = DEFAULT_SERVICE
    instance: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)
    tenant: str = ""
    token: str = ""
    basic_auth: tuple[str, str] | None = None
    interval_seconds: float = 30.0
    frames: int = 16
    max_tracebacks: int = 2000
    threads: bool = True
    max_thread_frames: int = 64
    timeout_seconds: float = 10.0
    max_buffered: int = 20
    max_backoff_seconds: float = 300.0
    max_cpu_fraction: float = 0.05

    def validate(self) -> None:
        """Raises ValueError naming the first bad setting."""
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"url: {self.url!r} is not an http:// or https:// URL")
        for name, value, low, high in (
            ("interval_seconds", self.interval_seconds, 1.0, 86400.0),
            ("frames", self.frames, 1, 128),
            ("max_tracebacks", self.max_tracebacks, 1, 1_000_000),
            ("max_thread_frames", self.max_thread_frames, 1, 1024),
            ("timeout_seconds", self.timeout_seconds, 0.1, 600.0),
            ("max_buffered", self.max_buffered, 1, 10_000),
            ("max_backoff_seconds", self.max_backoff_seconds, 1.0, 86400.0),
            ("max_cpu_fraction", self.max_cpu_fraction, 0.001, 1.0),
        ):
            if not low <= value <= high:
                raise ValueError(f"{name}: {value!r} is outside {low}..{high}")
        if not self.service:
            raise ValueError("service: must not be empty")


def parse_resource_attributes(text: str) -> dict[str, str]:
    """`OTEL_RESOURCE_ATTRIBUTES` (`k1=v1,k2=v2`, values percent-encoded) as a dict; bad pairs skipped."""
    out: dict[str, str] = {}
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            if pair.strip():
                LOG.warning("%s: ignoring %r (not key=value)", ENV_RESOURCE, pair.strip())
            continue
        out[key] = urllib.parse.unquote(value.strip())
    return out


def _env_number(env: Mapping[str, str], name: str, default: float, kind: type[float] | type[int]) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        LOG.warning("%s=%r is not a number; using %s", name, raw, default)
        return default


def _env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    LOG.warning("%s=%r is not true/false; using %s", name, raw, default)
    return default


def enabled_from_env(env: Mapping[str, str]) -> bool:
    return _env_bool(env, ENV_ENABLED, True)


def config_from(
    env: Mapping[str, str],
    *,
    service: str | None = None,
    url: str | None = None,
    instance: str | None = None,
    attributes: Mapping[str, str] | None = None,
    tenant: str | None = None,
    token: str | None = None,
    basic_auth: tuple[str, str] | None = None,
    interval: float | None = None,
    frames: int | None = None,
    max_tracebacks: int | None = None,
    threads: bool | None = None,
    **extra: object,
) -> ClientConfig:
    """The effective settings: explicit arguments win over `env`, which wins over the defaults."""
    resource = parse_resource_attributes(env.get(ENV_RESOURCE, ""))
    merged = {k: v for k, v in resource.items() if k not in ("service.name", "service.instance.id")}
    merged.update(attributes or {})
    user, password = env.get(ENV_USER, ""), env.get(ENV_PASSWORD, "")
    defaults = ClientConfig()
    env_interval = _env_number(env, ENV_INTERVAL, defaults.interval_seconds, float)
    env_frames = int(_env_number(env, ENV_FRAMES, defaults.frames, int))
    env_tracebacks = int(_env_number(env, ENV_MAX_TRACEBACKS, defaults.max_tracebacks, int))
    chosen = ClientConfig(
        url=url or env.get(ENV_URL, "").strip() or DEFAULT_URL,
        service=service or env.get(ENV_SERVICE, "").strip() or resource.get("service.name", "") or DEFAULT_SERVICE,
        instance=instance
        or env.get(ENV_INSTANCE, "").strip()
        or resource.get("service.instance.id", "")
        or socket.gethostname(),
        attributes=merged,
        tenant=tenant if tenant is not None else env.get(ENV_TENANT, "").strip(),
        token=token if token is not None else env.get(ENV_TOKEN, "").strip(),
        basic_auth=basic_auth if basic_auth is not None else ((user, password) if user else None),
        interval_seconds=float(interval) if interval is not None else env_interval,
        frames=frames if frames is not None else env_frames,
        max_tracebacks=max_tracebacks if max_tracebacks is not None else env_tracebacks,
        threads=threads if threads is not None else _env_bool(env, ENV_THREADS, True),
        **{"max_cpu_fraction": _env_number(env, ENV_MAX_CPU_FRACTION, defaults.max_cpu_fraction, float), **extra},  # type: ignore[arg-type]  # the remaining ClientConfig fields, checked by the dataclass
    )
    given = {
        name
        for name, value in (
            ("url", url),
            ("service", service),
            ("interval_seconds", interval),
            ("frames", frames),
            ("max_tracebacks", max_tracebacks),
        )
        if value is not None
    }
    given.update(extra)
    for _ in range(len(dataclasses.fields(ClientConfig))):
        try:
            chosen.validate()
        except ValueError as exc:
            name = str(exc).split(":", 1)[0]
            if name in given:
                raise
            LOG.warning("%s (from the environment); using the default", exc)
            chosen = dataclasses.replace(chosen, **{name: getattr(defaults, name)})
        else:
            break
    return chosen
