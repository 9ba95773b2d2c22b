"""otel-leakproc's own telemetry: what it received, rejected, queued and tracks, served on `GET /metrics`.

These are the service's health signals (alert rules watch them), not the derived leak metrics, which
the exporters emit with the monitored service as their resource. Every instrument lives in the registry
the `Telemetry` is given (a new one by default), so several services in one process (tests) never collide;
components receive the instruments they update (`ExportInstruments` for the exporters) instead of keeping
globals. `/metrics` renders the registry together with the default one, which holds only
prometheus_client's process and platform collectors.
"""

from __future__ import annotations

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# `*_created` series double every counter's series count and no rule uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Tenant is a label on the received counter; without auth, clients choose tenants freely, so beyond this
# many distinct values the rest are counted under "(other)".
MAX_TENANT_LABELS = 100
OTHER_TENANT = "(other)"


class ExportInstruments:
    """What the exporters report about delivery: failed export requests, the event spool, deliveries."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.export_failures = Counter(
            "otel_leakproc_export_failures",
            "OTLP export requests that failed after the SDK's own retries, by signal (metrics, logs).",
            ["signal"],
            registry=registry,
        )
        for signal in ("metrics", "logs"):
            self.export_failures.labels(signal=signal)  # present at 0 from the start: rate() and increase() work
        self.events_spooled = Gauge(
            "otel_leakproc_events_spooled",
            "Log events waiting for delivery (in the spool) because the collector did not accept them yet.",
            registry=registry,
        )
        self.events_dropped = Counter(
            "otel_leakproc_events_dropped",
            "Log events dropped because the spool was full (the oldest go first).",
            registry=registry,
        )
        self.events_delivered = Counter(
            "otel_leakproc_events_delivered", "Log events the collector accepted.", registry=registry
        )


class Telemetry:
    """The own-metrics instruments. Names are the contract of `config/alerts` and `docs/metrics.md`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True) if registry is None else registry
        r = self.registry
        self.received = Counter(
            "otel_leakproc_profiles_received",
            "Profiles accepted and fed to the detectors, by tenant and upload dialect.",
            ["tenant", "dialect"],
            registry=r,
        )
        self.ignored = Counter(
            "otel_leakproc_profiles_ignored",
            "Profiles accepted but carrying no leak signal (e.g. CPU profiles), by dialect.",
            ["dialect"],
            registry=r,
        )
        self.rejected = Counter(
            "otel_leakproc_profiles_rejected",
            "Uploads refused, by reason (bad_gzip, too_large, bad_protobuf, unauthenticated, rate_limited, ...).",
            ["reason"],
            registry=r,
        )
        self.refused = Counter(
            "otel_leakproc_queue_refused",
            "Uploads refused with 429 / RESOURCE_EXHAUSTED because the decode queue was full, or the tenant "
            "already held its share of it (ingest.max_queue_share_per_tenant).",
            registry=r,
        )
        self.forwarded = Counter(
            "otel_leakproc_uploads_forwarded",
            "Uploads this process received and forwarded before decoding to the serve process that owns their "
            "series (server.processes); that process decodes them and counts their profiles.",
            registry=r,
        )
        self.queue_depth = Gauge(
            "otel_leakproc_queue_depth", "Uploads waiting for or inside a decoder process.", registry=r
        )
        self.queue_capacity = Gauge("otel_leakproc_queue_capacity", "Configured size of the decode queue.", registry=r)
        self.decode_seconds = Histogram(
            "otel_leakproc_decode_seconds",
            "Time to decode and summarise one upload in a worker process.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.truncated = Counter(
            "otel_leakproc_values_truncated",
            "Strings cut to their cap (decode.max_name_chars, decode.max_label_chars) before entering state, "
            "by field (function, file, goroutine_state, service, instance, label_key, label_value).",
            ["field"],
            registry=r,
        )
        self.series_evicted = Counter(
            "otel_leakproc_series_evicted",
            "Series dropped at state.max_series or state.max_series_per_tenant (least recently updated first).",
            registry=r,
        )
        self.tenant_series_evicted = Counter(
            "otel_leakproc_tenant_series_evicted",
            "Series dropped, by the tenant that held them (tenant label capped like profiles_received).",
            ["tenant"],
            registry=r,
        )
        # otel_leakproc_series_tracked and _series_flagged{kind} are derived from the table at collection
        # time (pipeline.SeriesGauges, registered by the service).
        self.snapshot_failures = Counter(
            "otel_leakproc_snapshot_failures", "State snapshots that could not be written.", registry=r
        )
        self.snapshot_last_success = Gauge(
            "otel_leakproc_snapshot_last_success_timestamp_seconds",
            "Unix time of the last state snapshot written.",
            registry=r,
        )
        self.state_writable = Gauge(
            "otel_leakproc_state_writable",
            "1 while the state store can be written; 0 while it cannot (uploads are then refused with 503).",
            registry=r,
        )
        self.ready = Gauge("otel_leakproc_ready", "1 while the service accepts uploads.", registry=r)
        self.export = ExportInstruments(r)
        self._tenants: set[str] = set()

    def tenant_label(self, tenant: str) -> str:
        """The tenant as a label value, bounded to MAX_TENANT_LABELS distinct values."""
        if tenant in self._tenants:
            return tenant
        if len(self._tenants) < MAX_TENANT_LABELS:
            self._tenants.add(tenant)
            return tenant
        return OTHER_TENANT

    def render(self) -> bytes:
        """The Prometheus text exposition of these metrics and of the default registry (process metrics)."""
        return generate_latest(self.registry) + generate_latest(REGISTRY)
