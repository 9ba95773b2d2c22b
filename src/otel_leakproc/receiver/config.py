"""Receiver settings: the `decode`, `server` and `ingest` sections of the config file.

`decode` bounds one upload inside the decoder; `server` configures the HTTP and gRPC listeners, their TLS,
authentication and request bounds; `ingest` sizes the worker pool and queue between the servers and the
decoders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.value_caps import ValueCaps

# The decoder's own defaults are the single source of truth; the config only mirrors them.
_LIMITS = DecodeLimits()
_CAPS = ValueCaps()
# String caps: below 16 characters names stop being readable; above 64 KiB one name outweighs a series.
MIN_CAP_CHARS = 16
MAX_PROCESSES = 64  # `server.processes`: each owns at least one of the 64 local partitions
MAX_AUTO_PROCESSES = 8
MAX_CAP_CHARS = 65536

MUST_BE_POSITIVE = "{key}: must be > 0, got {value}"
MUST_BE_BETWEEN = "{key}: must be between {low} and {high}, got {value}"

# Summaries carry top-K lists into processor state for every series; 4096 keeps that state bounded.
MAX_TOP_K = 4096


@dataclass(frozen=True, slots=True)
class DecodeConfig:
    """Bounds for decoding one upload; see `DecodeLimits` for what each bound stops.

    Attributes:
        max_decompressed_bytes: stop inflating gzip beyond this many bytes.
        max_samples: samples (pprof/OTLP) or goroutines (text dumps) per profile.
        max_locations: locations per profile.
        max_functions: functions per profile.
        max_strings: string table entries per profile.
        top_sites: attributed sites kept per summary (the rest is folded into "other").
        top_groups: goroutine groups kept per summary.
        max_name_chars: characters kept of a function or file name (longer ones are cut and counted in
            `otel_leakproc_values_truncated_total{field}`).
        max_label_chars: characters kept of a service, instance, label or resource key or value, or a
            goroutine wait state (cut and counted the same way).
    """

    max_decompressed_bytes: int = _LIMITS.max_decompressed_bytes
    max_samples: int = _LIMITS.max_samples
    max_locations: int = _LIMITS.max_locations
    max_functions: int = _LIMITS.max_functions
    max_strings: int = _LIMITS.max_strings
    top_sites: int = _LIMITS.top_sites
    top_groups: int = _LIMITS.top_groups
    max_name_chars: int = _CAPS.max_name_chars
    max_label_chars: int = _CAPS.max_label_chars

    def validate(self) -> list[str]:
        """Check every bound.

        Returns:
            One message per problem, each starting with the field name (the loader adds the section path).
        """
        errors: list[str] = []
        for key in ("max_decompressed_bytes", "max_samples", "max_locations", "max_functions", "max_strings"):
            value = getattr(self, key)
            if value <= 0:
                errors.append(MUST_BE_POSITIVE.format(key=key, value=value))
        for key in ("top_sites", "top_groups"):
            value = getattr(self, key)
            if not 1 <= value <= MAX_TOP_K:
                errors.append(MUST_BE_BETWEEN.format(key=key, low=1, high=MAX_TOP_K, value=value))
        for key in ("max_name_chars", "max_label_chars"):
            value = getattr(self, key)
            if not MIN_CAP_CHARS <= value <= MAX_CAP_CHARS:
                errors.append(MUST_BE_BETWEEN.format(key=key, low=MIN_CAP_CHARS, high=MAX_CAP_CHARS, value=value))
        return errors

    def to_caps(self) -> ValueCaps:
        """Return the string caps applied to every decoded upload (see `receiver.value_caps`)."""
        return ValueCaps(max_name_chars=self.max_name_chars, max_label_chars=self.max_label_chars)

    def to_limits(self) -> DecodeLimits:
        """Return the decoder's view of these settings.

        Returns:
            A `DecodeLimits` with the same values.
        """
        return DecodeLimits(
            max_decompressed_bytes=self.max_decompressed_bytes,
            max_samples=self.max_samples,
            max_locations=self.max_locations,
            max_functions=self.max_functions,
            max_strings=self.max_strings,
            top_sites=self.top_sites,
            top_groups=self.top_groups,
        )


def _address_errors(key: str, address: str) -> list[str]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return [f"{key}: expected HOST:PORT with a port from 0 to 65535, got {address!r}"]
    return []


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS for one listener. Empty `cert_file` means plain text.

    Attributes:
        cert_file: PEM certificate chain of the server.
        key_file: PEM private key of the server.
        client_ca_file: PEM CA bundle; when set, clients must present a certificate it signed (mTLS).
    """

    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)

    def validate(self) -> list[str]:
        errors: list[str] = []
        if bool(self.cert_file) != bool(self.key_file):
            errors.append("cert_file: cert_file and key_file must be set together")
        if self.client_ca_file and not self.cert_file:
            errors.append("client_ca_file: mTLS needs cert_file and key_file too")
        return errors


@dataclass(frozen=True, slots=True)
class HttpServerConfig:
    """The HTTP listener (Pyroscope ingest and push, OTLP/HTTP, API, status page, own metrics)."""

    address: str = "127.0.0.1:4040"
    tls: TlsConfig = field(default_factory=TlsConfig)

    def validate(self) -> list[str]:
        return _address_errors("address", self.address)


@dataclass(frozen=True, slots=True)
class GrpcServerConfig:
    """The gRPC listener (Pyroscope push, OTLP profiles Export, health). `enabled: false` skips it.

    grpc-core receives each message whole before a handler (and so admission) runs, so what arriving
    messages can hold is bounded by the transport instead: at most `max_connections` connections, each
    with at most `max_concurrent_streams` calls in progress (further calls wait on the client), each
    message at most `max_message_bytes` (and `server.max_body_bytes`).

    Attributes:
        max_connections: open connections accepted; one more is closed at once (clients retry).
        max_concurrent_streams: calls in progress per connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
        max_message_bytes: largest request message (gRPC's own default, 4 MiB).
    """

    enabled: bool = True
    address: str = "127.0.0.1:4317"
    tls: TlsConfig = field(default_factory=TlsConfig)
    max_connections: int = 32
    max_concurrent_streams: int = 2
    max_message_bytes: int = 4 * 1024 * 1024

    def validate(self) -> list[str]:
        errors = _address_errors("address", self.address)
        for key in ("max_connections", "max_concurrent_streams", "max_message_bytes"):
            value = getattr(self, key)
            if value < 1:
                errors.append(f"{key}: must be at least 1, got {value}")
        return errors


@dataclass(frozen=True, slots=True)
class Credential:
    """One accepted credential: a bearer token, or a basic-auth user and password, mapped to a tenant.

    Attributes:
        tenant: the tenant uploads with this credential belong to.
        token: a bearer token (`Authorization: Bearer <token>`).
        username: basic-auth user (pyroscope clients send basic auth).
        password: basic-auth password.
        allowed_tenants: other tenants this credential may name with `X-Scope-OrgID`; `"*"` allows any.
    """

    tenant: str
    token: str = ""
    username: str = ""
    password: str = ""
    allowed_tenants: tuple[str, ...] = ()

    def validate(self) -> list[str]:
        errors: list[str] = []
        if not self.tenant:
            errors.append("tenant: must not be empty")
        if bool(self.token) == bool(self.username):
            errors.append("token: set either token or username and password")
        elif self.username and not self.password:
            errors.append("password: must not be empty when username is set")
        return errors


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Who may upload, and to which tenant. With no credentials, auth is off.

    Attributes:
        credentials: accepted tokens and users; when not empty, requests without valid ones get 401.
        default_tenant: the tenant when auth is off and no `X-Scope-OrgID` is sent.
        trust_scope_header: with auth off, take the tenant from `X-Scope-OrgID` (as behind a trusted proxy).
    """

    credentials: tuple[Credential, ...] = ()
    default_tenant: str = "default"
    trust_scope_header: bool = True

    @property
    def enabled(self) -> bool:
        return bool(self.credentials)

    def validate(self) -> list[str]:
        errors: list[str] = []
        if not self.default_tenant:
            errors.append("default_tenant: must not be empty")
        tokens = [c.token for c in self.credentials if c.token]
        users = [c.username for c in self.credentials if c.username]
        if len(set(tokens)) != len(tokens):
            errors.append("credentials: the same token is listed twice")
        if len(set(users)) != len(users):
            errors.append("credentials: the same username is listed twice")
        return errors


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Per-tenant upload rate (a token bucket); over it, 429 / RESOURCE_EXHAUSTED with Retry-After. With
    `state.backend: redis` the bucket lives in Redis, so the rate holds for the whole cluster.

    Attributes:
        uploads_per_second: sustained uploads (requests) per second per tenant; 0 turns the limit off.
        burst: uploads a tenant may send at once above the sustained rate (at least 1 when the limit is on).
    """

    uploads_per_second: float = 0.0
    burst: int = 50

    def validate(self) -> list[str]:
        errors: list[str] = []
        if self.uploads_per_second < 0:
            errors.append(f"uploads_per_second: must be >= 0, got {self.uploads_per_second}")
        if self.burst < 1:
            errors.append(f"burst: must be >= 1, got {self.burst}")
        return errors


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Listeners, auth and request bounds shared by HTTP and gRPC.

    Attributes:
        http: the HTTP listener.
        grpc: the gRPC listener.
        max_body_bytes: largest accepted request body as sent (compressed); larger gets 413.
        max_profiles_per_request: profiles in one push or OTLP request; more is rejected.
        shutdown_timeout_seconds: on SIGTERM, time to drain the queue and save state before exiting.
        auth: credentials and tenants.
        rate_limit: per-tenant upload rate.
        processes: `serve` processes sharing the listening ports (SO_REUSEPORT), each owning a fixed share of
            the series (docs/serve.md, "Several processes"); 1 is one process as before, 0 one per CPU (at
            most 8). With more than one, `ingest.workers: 0` gives each process its share of the CPUs.
    """

    http: HttpServerConfig = field(default_factory=HttpServerConfig)
    grpc: GrpcServerConfig = field(default_factory=GrpcServerConfig)
    max_body_bytes: int = 16 * 1024 * 1024
    max_profiles_per_request: int = 64
    shutdown_timeout_seconds: float = 20.0
    auth: AuthConfig = field(default_factory=AuthConfig)
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    processes: int = 1

    def validate(self) -> list[str]:
        errors: list[str] = []
        for key in ("max_body_bytes", "max_profiles_per_request", "shutdown_timeout_seconds"):
            value = getattr(self, key)
            if value <= 0:
                errors.append(MUST_BE_POSITIVE.format(key=key, value=value))
        if not 0 <= self.processes <= MAX_PROCESSES:
            errors.append(f"processes: must be from 0 (one per CPU) to {MAX_PROCESSES}, got {self.processes}")
        return errors

    def process_count(self) -> int:
        """`processes`, with 0 resolved to one per CPU this process may run on (at most `MAX_AUTO_PROCESSES`)."""
        if self.processes > 0:
            return self.processes
        return max(1, min(MAX_AUTO_PROCESSES, len(os.sched_getaffinity(0))))


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """The bounded path from the servers to the decoders.

    Attributes:
        workers: decoder processes; 0 means one per CPU (at most 8).
        queue_size: uploads waiting for or inside a decoder; when full, 429 / RESOURCE_EXHAUSTED.
        retry_after_seconds: the Retry-After sent with 429.
        max_queue_share_per_tenant: the part of the queue one tenant may hold (0-1]; beyond it that tenant
            gets 429 while the rest stays free for the others. 1 turns fairness off.
        max_bytes_in_flight: request bodies admitted and not yet decoded, in bytes (the declared
            Content-Length, or `server.max_body_bytes` for a body without one); checked before a body is
            read, so memory is bounded by this and not by open connections. One upload is always admitted
            when none is in progress.
        inline_max_bytes: an upload body (as received) of at most this many bytes is decoded on the event
            loop, with its decompressed size bounded by `INLINE_MAX_DECOMPRESSED_BYTES` (one that inflates
            beyond it goes to a decoder worker): handing a 2 KiB profile to a worker process costs the
            server more than decoding it. 0 sends every upload to a worker.
    """

    workers: int = 0
    queue_size: int = 64
    retry_after_seconds: float = 2.0
    max_queue_share_per_tenant: float = 0.75
    max_bytes_in_flight: int = 128 * 1024 * 1024
    inline_max_bytes: int = 16 * 1024

    def max_in_flight_per_tenant(self) -> int:
        """Uploads one tenant may have waiting for or inside a decoder (at least 1)."""
        return max(1, int(self.queue_size * self.max_queue_share_per_tenant))

    def validate(self) -> list[str]:
        errors: list[str] = []
        if not 0 <= self.workers <= 64:
            errors.append(MUST_BE_BETWEEN.format(key="workers", low=0, high=64, value=self.workers))
        for key in ("queue_size", "retry_after_seconds", "max_bytes_in_flight"):
            value = getattr(self, key)
            if value <= 0:
                errors.append(MUST_BE_POSITIVE.format(key=key, value=value))
        if not 0 < self.max_queue_share_per_tenant <= 1:
            errors.append(f"max_queue_share_per_tenant: must be > 0 and <= 1, got {self.max_queue_share_per_tenant}")
        if self.inline_max_bytes < 0:
            errors.append(f"inline_max_bytes: must be >= 0, got {self.inline_max_bytes}")
        return errors
