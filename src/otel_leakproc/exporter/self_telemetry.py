"""otel-leakproc's own telemetry over OTLP, with otel-leakproc's own resource (never a monitored service's).

One source of truth: the health metrics are defined once, as prometheus_client instruments (the service's
`Telemetry` registry, the scrape receiver's metrics in it, the exporters' delivery counters and the process
collector in the default registry), and served on `GET /metrics`. When an OTLP endpoint is configured, this
module bridges those registries into an OpenTelemetry SDK `MeterProvider` whose resource is otel-leakproc
itself (`service.name=otel-leakproc`, `service.version`, `service.instance.id` = host/pod name, then
`OTEL_RESOURCE_ATTRIBUTES` / `OTEL_SERVICE_NAME` on top), exported by a `PeriodicExportingMetricReader` through
the SDK's OTLP metric exporter with the same endpoint, protocol, headers, TLS and compression as the derived
signals, every `export.otlp.export_interval_seconds`.

- Counters become `ObservableCounter`s (monotonic cumulative sums), gauges (and info / state-set families)
  `ObservableGauge`s; their callbacks read one `collect()` of the registries per export cycle.
- Histograms: the SDK has no observable histogram, so the metric exporter is wrapped and appends each
  Prometheus histogram as an OTLP cumulative explicit-bucket histogram (same buckets, count and sum) to the
  batch the reader hands it. The latency distribution survives intact, and nothing is recorded twice.
- Names: each otel-leakproc family gets an OpenTelemetry name and unit (`OTEL_NAMES`), chosen so that the
  usual OTLP-to-Prometheus translation gives back exactly the `/metrics` name; families not in the table
  (process_*, python_*) keep their Prometheus name, which translates to itself. See docs/metrics.md.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import Metric as PromFamily

from otel_leakproc import __version__
from otel_leakproc.exporter.config import ExportConfig
from otel_leakproc.exporter.otlp_target import grpc_exporter_kwargs, http_exporter_kwargs, otlp_enabled, resolve_target

__all__ = ["OTEL_NAMES", "SelfTelemetry", "build_self_telemetry", "own_resource"]

_log = logging.getLogger(__name__)

SERVICE_NAME = "otel-leakproc"
METER_NAME = "otel_leakproc"

# Prometheus family name (as registered, without `_total`) -> (OpenTelemetry name, UCUM unit). Each pair is
# chosen so that the OTLP-to-Prometheus translation (dots -> `_`, unit word appended unless already the
# suffix, `{...}` annotations dropped, `_total` on monotonic sums) yields the `/metrics` name again, so the
# shipped alert rules and any dashboard work on either path (tests/integration/test_self_telemetry.py).
OTEL_NAMES: dict[str, tuple[str, str]] = {
    # receivers and ingest (otel_leakproc.telemetry)
    "otel_leakproc_profiles_received": ("otel_leakproc.profiles.received", "{profile}"),
    "otel_leakproc_profiles_ignored": ("otel_leakproc.profiles.ignored", "{profile}"),
    "otel_leakproc_profiles_rejected": ("otel_leakproc.profiles.rejected", "{upload}"),
    "otel_leakproc_queue_refused": ("otel_leakproc.queue.refused", "{upload}"),
    "otel_leakproc_uploads_forwarded": ("otel_leakproc.uploads.forwarded", "{upload}"),
    "otel_leakproc_queue_depth": ("otel_leakproc.queue.depth", "{upload}"),
    "otel_leakproc_queue_capacity": ("otel_leakproc.queue.capacity", "{upload}"),
    "otel_leakproc_decode_seconds": ("otel_leakproc.decode", "s"),
    "otel_leakproc_values_truncated": ("otel_leakproc.values.truncated", "{value}"),
    # processor and state
    "otel_leakproc_series_tracked": ("otel_leakproc.series.tracked", "{series}"),
    "otel_leakproc_series_flagged": ("otel_leakproc.series.flagged", "{series}"),
    "otel_leakproc_series_evicted": ("otel_leakproc.series.evicted", "{series}"),
    "otel_leakproc_tenant_series_evicted": ("otel_leakproc.tenant.series.evicted", "{series}"),
    "otel_leakproc_snapshot_failures": ("otel_leakproc.snapshot.failures", "{snapshot}"),
    "otel_leakproc_snapshot_last_success_timestamp_seconds": ("otel_leakproc.snapshot.last_success_timestamp", "s"),
    "otel_leakproc_state_dropped_records": ("otel_leakproc.state.dropped_records", "{record}"),
    # state.backend: redis (otel_leakproc.cluster.node)
    "otel_leakproc_cluster_partitions_owned": ("otel_leakproc.cluster.partitions_owned", "{partition}"),
    "otel_leakproc_cluster_series_owned": ("otel_leakproc.cluster.series_owned", "{series}"),
    "otel_leakproc_cluster_partition_moves": ("otel_leakproc.cluster.partition_moves", "{partition}"),
    "otel_leakproc_cluster_quota_evictions": ("otel_leakproc.cluster.quota_evictions", "{series}"),
    "otel_leakproc_state_writable": ("otel_leakproc.state.writable", ""),
    "otel_leakproc_ready": ("otel_leakproc.ready", ""),
    # exporters (otel_leakproc.telemetry.ExportInstruments)
    "otel_leakproc_export_failures": ("otel_leakproc.export.failures", "{request}"),
    "otel_leakproc_events_spooled": ("otel_leakproc.events.spooled", "{event}"),
    "otel_leakproc_events_dropped": ("otel_leakproc.events.dropped", "{event}"),
    "otel_leakproc_events_delivered": ("otel_leakproc.events.delivered", "{event}"),
    # scrape receiver (otel_leakproc.receiver.scrape.metrics)
    "otel_leakproc_scrape_targets": ("otel_leakproc.scrape.targets", "{target}"),
    "otel_leakproc_scrape_targets_dropped": ("otel_leakproc.scrape.targets.dropped", "{target}"),
    "otel_leakproc_scrape_requests": ("otel_leakproc.scrape.requests", "{request}"),
    "otel_leakproc_scrape_duration_seconds": ("otel_leakproc.scrape.duration", "s"),
    "otel_leakproc_scrape_up": ("otel_leakproc.scrape.up", ""),
    "otel_leakproc_scrape_last_scrape_timestamp_seconds": ("otel_leakproc.scrape.last_scrape_timestamp", "s"),
    "otel_leakproc_scrape_dumps": ("otel_leakproc.scrape.dumps", "{dump}"),
    "otel_leakproc_scrape_discovery_errors": ("otel_leakproc.scrape.discovery_errors", "{error}"),
}

_GAUGE_TYPES = ("gauge", "unknown", "stateset", "info")
# A collect() older than this is never reused: one export cycle's callbacks run within milliseconds.
_SNAPSHOT_MAX_AGE = 1.0


def otel_name(family: PromFamily) -> tuple[str, str]:
    """The OpenTelemetry name and unit of a Prometheus family (its own name and unit when not mapped)."""
    mapped = OTEL_NAMES.get(family.name)
    if mapped is not None:
        return mapped
    return (f"{family.name}_info" if family.type == "info" else family.name), family.unit


def own_resource(instance_id: str | None = None) -> Resource:
    """otel-leakproc's resource: its name, version and host/pod name; `OTEL_RESOURCE_ATTRIBUTES` and
    `OTEL_SERVICE_NAME` override them (the deployment knows best), and `telemetry.sdk.*` is included."""
    defaults = {
        "service.name": SERVICE_NAME,
        "service.version": __version__,
        "service.instance.id": instance_id or socket.gethostname(),
    }
    return Resource.create(defaults).merge(OTELResourceDetector().detect())


class RegistryBridge:
    """Reads the prometheus_client registries once per export cycle and turns them into SDK observations."""

    def __init__(self, registries: Sequence[CollectorRegistry], meter_provider: MeterProvider) -> None:
        self._registries = list(registries)
        self._meter = meter_provider.get_meter(METER_NAME, __version__)
        self._lock = threading.Lock()
        self._snapshot: dict[str, PromFamily] | None = None
        self._snapshot_at = 0.0
        self._instruments: set[str] = set()
        self.histograms: set[str] = set()
        self.start_nanos = time.time_ns()
        self.scope = InstrumentationScope(METER_NAME, __version__)
        self.end_cycle()  # instruments for the families registered so far

    def families(self) -> dict[str, PromFamily]:
        """One collect() of every registry, reused by all callbacks of the current cycle."""
        with self._lock:
            now = time.monotonic()
            if self._snapshot is None or now - self._snapshot_at > _SNAPSHOT_MAX_AGE:
                self._snapshot = self._collect()
                self._snapshot_at = now
            return self._snapshot

    def end_cycle(self) -> None:
        """Forget this cycle's collect() and create instruments for families registered since."""
        self.register_new_families()  # from this cycle's collect()
        with self._lock:
            self._snapshot = None

    def _collect(self) -> dict[str, PromFamily]:
        out: dict[str, PromFamily] = {}
        for registry in self._registries:
            for family in registry.collect():
                seen = out.get(family.name)
                if seen is None:
                    out[family.name] = family
                elif seen.type == family.type:  # the same name in two registries: one family, both samples
                    seen.samples.extend(family.samples)
        return out

    def register_new_families(self) -> None:
        for name, family in self.families().items():
            if name in self._instruments:
                continue
            self._instruments.add(name)
            instrument_name, unit = otel_name(family)
            if family.type == "counter":
                self._meter.create_observable_counter(
                    instrument_name, [self._callback(name, f"{name}_total")], unit, family.documentation
                )
            elif family.type in _GAUGE_TYPES:
                sample = f"{name}_info" if family.type == "info" else name
                self._meter.create_observable_gauge(
                    instrument_name, [self._callback(name, sample)], unit, family.documentation
                )
            elif family.type == "histogram":
                self.histograms.add(name)
            else:  # summary, gaugehistogram: none registered by otel-leakproc (see docs/metrics.md)
                _log.debug("own telemetry: %s (%s) is not exported over OTLP", name, family.type)

    def _callback(self, family_name: str, sample_name: str) -> Any:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            family = self.families().get(family_name)
            if family is None:
                return []
            return [Observation(s.value, dict(s.labels)) for s in family.samples if s.name == sample_name]

        return observe

    def histogram_metrics(self, now_nanos: int) -> list[Metric]:
        """The registries' histograms as OTLP cumulative explicit-bucket histograms."""
        families = self.families()
        out = []
        for name in sorted(self.histograms):
            family = families.get(name)
            if family is None:
                continue
            points = _histogram_points(family, self.start_nanos, now_nanos)
            if points:
                instrument_name, unit = otel_name(family)
                data = Histogram(points, AggregationTemporality.CUMULATIVE)
                out.append(Metric(instrument_name, family.documentation, unit, data))
        return out


def _histogram_points(family: PromFamily, start_nanos: int, now_nanos: int) -> list[HistogramDataPoint]:
    buckets: dict[frozenset[tuple[str, str]], list[tuple[float, float]]] = {}
    sums: dict[frozenset[tuple[str, str]], float] = {}
    for sample in family.samples:
        labels = {k: v for k, v in sample.labels.items() if k != "le"}
        key = frozenset(labels.items())
        if sample.name == f"{family.name}_bucket":
            buckets.setdefault(key, []).append((float(sample.labels["le"]), sample.value))
        elif sample.name == f"{family.name}_sum":
            sums[key] = sample.value
    points = []
    for key, cumulative in buckets.items():
        cumulative.sort()
        counts, previous = [], 0.0
        for _, running in cumulative:  # Prometheus buckets are cumulative (le); OTLP's are per bucket
            counts.append(round(running - previous))
            previous = running
        bounds = [bound for bound, _ in cumulative if bound != float("inf")]
        point = HistogramDataPoint(
            attributes=dict(key),
            start_time_unix_nano=start_nanos,
            time_unix_nano=now_nanos,
            count=round(previous),
            sum=sums.get(key, 0.0),
            bucket_counts=counts,
            explicit_bounds=bounds,
            min=None,  # type: ignore[arg-type]  # unknown to Prometheus; optional in OTLP
            max=None,  # type: ignore[arg-type]
        )
        points.append(point)
    return points


class BridgingExporter(MetricExporter):
    """The SDK OTLP metric exporter, plus the registries' histograms appended to every batch."""

    def __init__(self, inner: MetricExporter, resource: Resource) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,  # as PeriodicExportingMetricReader reads them
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._resource = resource
        # Set right after the MeterProvider exists (the bridge's instruments need it, and the provider needs
        # the reader that holds this exporter); the reader's first export comes an interval later.
        self.bridge: RegistryBridge | None = None
        self.failing = False

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        data = metrics_data
        if self.bridge is not None:
            try:
                data = self._with_histograms(self.bridge, metrics_data)
            finally:
                self.bridge.end_cycle()
        try:
            result = self._inner.export(data, timeout_millis=timeout_millis, **kwargs)
        except Exception:  # the SDK exporter should not raise; never let the reader thread die
            _log.exception("own telemetry OTLP export raised")
            result = MetricExportResult.FAILURE
        ok = result is MetricExportResult.SUCCESS
        if ok == self.failing:  # state changes only, not every interval
            _log.warning("own telemetry OTLP export %s", "recovered" if ok else "failing; will retry next interval")
        self.failing = not ok
        return result

    def _with_histograms(self, bridge: RegistryBridge, metrics_data: MetricsData) -> MetricsData:
        histograms = bridge.histogram_metrics(time.time_ns())
        if not histograms:
            return metrics_data
        resource_metrics = list(metrics_data.resource_metrics)
        if not resource_metrics:
            scope = ScopeMetrics(bridge.scope, histograms, "")
            return MetricsData([ResourceMetrics(self._resource, [scope], "")])
        first = resource_metrics[0]
        scopes = list(first.scope_metrics)
        for i, scope_metrics in enumerate(scopes):
            if scope_metrics.scope.name == METER_NAME:
                metrics = [*scope_metrics.metrics, *histograms]
                scopes[i] = ScopeMetrics(scope_metrics.scope, metrics, scope_metrics.schema_url)
                break
        else:
            scopes.append(ScopeMetrics(bridge.scope, histograms, ""))
        resource_metrics[0] = ResourceMetrics(first.resource, scopes, first.schema_url)
        return MetricsData(resource_metrics)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def build_metric_exporter(config: ExportConfig, environ: Mapping[str, str]) -> MetricExporter:
    """The SDK OTLP metric exporter with the derived signals' endpoint, protocol, headers, TLS, compression."""
    target = resolve_target(config.otlp, "metrics", environ)
    if target.protocol == "grpc":
        return GrpcMetricExporter(**grpc_exporter_kwargs(target))
    if target.protocol == "http/protobuf":
        return HttpMetricExporter(**http_exporter_kwargs(target))
    raise ValueError(f"unsupported OTLP protocol {target.protocol!r} (expected grpc or http/protobuf)")


class SelfTelemetry:
    """otel-leakproc's own metrics, exported over OTLP every `export.otlp.export_interval_seconds`.

    Args:
        config: the `export` section (endpoint, protocol, headers, TLS, compression, interval, timeout).
        registries: the prometheus_client registries to bridge (the service's, then the default one).
        exporter: the SDK metric exporter (built from `config` and the environment when None).
        resource: the resource (`own_resource()` when None).
        environ: the environment for `OTEL_EXPORTER_OTLP_*` (default `os.environ`).
    """

    def __init__(
        self,
        config: ExportConfig,
        registries: Sequence[CollectorRegistry],
        *,
        exporter: MetricExporter | None = None,
        resource: Resource | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.resource = resource or own_resource()
        inner = exporter or build_metric_exporter(config, os.environ if environ is None else environ)
        self._exporter = BridgingExporter(inner, self.resource)
        reader = PeriodicExportingMetricReader(
            self._exporter,
            export_interval_millis=config.otlp.export_interval_seconds * 1000,
            export_timeout_millis=config.otlp.timeout_seconds * 1000,
        )
        self.provider = MeterProvider([reader], resource=self.resource, shutdown_on_exit=False)
        self.bridge = RegistryBridge(registries, self.provider)
        self._exporter.bridge = self.bridge
        self._closed = False

    def force_flush(self, timeout_seconds: float = 10.0) -> bool:
        """Collect and export now (tests; the reader also does it every interval)."""
        return self.provider.force_flush(timeout_millis=timeout_seconds * 1000)

    def shutdown(self, timeout_seconds: float) -> None:
        """Export the final values once more, then close. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.provider.shutdown(timeout_millis=max(0.1, timeout_seconds) * 1000)


def build_self_telemetry(
    config: ExportConfig, registry: CollectorRegistry | None = None, environ: Mapping[str, str] | None = None
) -> SelfTelemetry | None:
    """Own telemetry over OTLP when an endpoint is configured (YAML or `OTEL_EXPORTER_OTLP_*`), else None.

    Args:
        config: the `export` section.
        registry: the service's own registry (`Telemetry.registry`); the default registry is always bridged.
        environ: the environment for `OTEL_EXPORTER_OTLP_*` (default `os.environ`).
    """
    env = os.environ if environ is None else environ
    if not otlp_enabled(config.otlp, env):
        return None
    registries = [REGISTRY] if registry is None else [registry, REGISTRY]
    return SelfTelemetry(config, registries, environ=env)
