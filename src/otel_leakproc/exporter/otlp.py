"""OTLP metrics and OTLP log events to a collector, through the OpenTelemetry SDK's OTLP exporters.

Many monitored services, bounded cost: the SDK binds one resource per MeterProvider/LoggerProvider, and a
provider per monitored service would mean one reader thread, one exporter and one connection each. This
exporter instead keeps only the latest report per series and, on one background thread per signal, builds
the SDK's own export data (`MetricsData` with one `ResourceMetrics` per monitored resource, and
`ReadableLogRecord`s each carrying its resource) and hands it to one SDK OTLP exporter per signal. OTLP
requests carry many resources natively, so a thousand services cost one request per interval, one
connection, two threads, and memory proportional to the series already tracked (see docs/metrics.md).

Calls from the event loop (`on_report`, `on_event`, `forget`) only take a lock and update a dict or a
queue; all I/O happens on the two threads.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Metric,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry

from otel_leakproc import __version__
from otel_leakproc.exporter.config import ExportConfig, OtlpConfig
from otel_leakproc.exporter.otlp_target import (
    OtlpTarget,
    grpc_exporter_kwargs,
    http_exporter_kwargs,
    resolve_target,
)
from otel_leakproc.exporter.signals import event_record, monitored_resource, report_points
from otel_leakproc.exporter.spool import Spool
from otel_leakproc.model import LeakEvent, SeriesKey, SeriesReport
from otel_leakproc.telemetry import ExportInstruments

_log = logging.getLogger(__name__)

SCOPE = InstrumentationScope("otel_leakproc", __version__)
MAX_EVENTS_PER_REQUEST = 512
# Data points per metrics request: about 80 heap series with 5 growers, ~0.4 MB before gzip, far below the
# 4 MiB a collector's gRPC receiver accepts by default.
MAX_POINTS_PER_REQUEST = 2000
# Events waiting between the event loop and the delivery thread; they move to the spool within moments.
MAX_QUEUED_EVENTS = 10000


class MetricSink(Protocol):
    def export(self, metrics_data: MetricsData, timeout_millis: float = 10000, **kwargs: Any) -> MetricExportResult:
        """Send one batch."""

    def shutdown(self, timeout_millis: float = 30000, **kwargs: Any) -> None:
        """Release the connection."""


class LogSink(Protocol):
    def export(self, batch: list[ReadableLogRecord]) -> LogRecordExportResult:
        """Send one batch."""

    def shutdown(self) -> None:
        """Release the connection."""


def build_sinks(config: OtlpConfig, environ: Mapping[str, str]) -> tuple[MetricSink, LogSink]:
    """The SDK OTLP exporters for metrics and logs, for the resolved protocol."""
    metrics, logs = resolve_target(config, "metrics", environ), resolve_target(config, "logs", environ)
    if metrics.protocol == "grpc":
        return _grpc_metric(metrics), _grpc_log(logs)
    if metrics.protocol == "http/protobuf":
        return _http_metric(metrics), _http_log(logs)
    raise ValueError(f"unsupported OTLP protocol {metrics.protocol!r} (expected grpc or http/protobuf)")


def _grpc_metric(target: OtlpTarget) -> MetricSink:
    sink: MetricSink = GrpcMetricExporter(**grpc_exporter_kwargs(target), max_export_batch_size=MAX_POINTS_PER_REQUEST)
    return sink


def _grpc_log(target: OtlpTarget) -> LogSink:
    sink: LogSink = GrpcLogExporter(**grpc_exporter_kwargs(target))
    return sink


def _http_metric(target: OtlpTarget) -> MetricSink:
    sink: MetricSink = HttpMetricExporter(**http_exporter_kwargs(target), max_export_batch_size=MAX_POINTS_PER_REQUEST)
    return sink


def _http_log(target: OtlpTarget) -> LogSink:
    sink: LogSink = HttpLogExporter(**http_exporter_kwargs(target))
    return sink


# --- building SDK export data --------------------------------------------------------------------


class ResourceCache:
    """SDK `Resource` objects by attribute set, kept only while some series still uses them."""

    def __init__(self) -> None:
        self._cache: dict[frozenset[tuple[str, str]], Resource] = {}

    def get(self, attributes: Mapping[str, str]) -> tuple[frozenset[tuple[str, str]], Resource]:
        key = frozenset(attributes.items())
        resource = self._cache.get(key)
        if resource is None:
            # Resource() rather than Resource.create(): no SDK defaults (telemetry.sdk.*, the process's own
            # service.name) may leak onto the monitored service's resource.
            resource = self._cache[key] = Resource(dict(attributes))
        return key, resource

    def retain(self, keys: set[frozenset[tuple[str, str]]]) -> None:
        for key in [k for k in self._cache if k not in keys]:
            del self._cache[key]


def metrics_data(
    latest: list[tuple[SeriesReport, Mapping[str, str]]], now_nanos: int, resources: ResourceCache
) -> MetricsData:
    """One `MetricsData` with a `ResourceMetrics` per monitored resource and a gauge per metric name."""
    by_resource: dict[frozenset[tuple[str, str]], tuple[Resource, dict[str, tuple[Any, list[NumberDataPoint]]]]] = {}
    for report, resource_attributes in latest:
        key, resource = resources.get(monitored_resource(resource_attributes, report))
        _, metrics = by_resource.setdefault(key, (resource, {}))
        for point in report_points(report):
            _, points = metrics.setdefault(point.metric.name, (point.metric, []))
            points.append(NumberDataPoint(point.attributes, now_nanos, now_nanos, point.value))
    resources.retain(set(by_resource))
    resource_metrics = []
    for resource, metrics in by_resource.values():
        sdk_metrics = [
            Metric(spec.name, spec.description, spec.unit, Gauge(points)) for spec, points in metrics.values()
        ]
        resource_metrics.append(ResourceMetrics(resource, [ScopeMetrics(SCOPE, sdk_metrics, "")], ""))
    return MetricsData(resource_metrics)


def log_record(record: Mapping[str, Any], observed_nanos: int, resources: ResourceCache) -> ReadableLogRecord:
    """An SDK log record from a spooled event record (see `signals.event_record`)."""
    _, resource = resources.get(record["resource"])
    sdk_record = LogRecord(
        timestamp=int(record["time_unix_nano"]),
        observed_timestamp=observed_nanos,
        severity_number=SeverityNumber(int(record["severity_number"])),
        severity_text=str(record["severity_text"]),
        body=record["body"],
        attributes=record["attributes"],
        event_name=str(record["event_name"]),
    )
    return ReadableLogRecord(sdk_record, resource=resource, instrumentation_scope=SCOPE)


# --- the exporter --------------------------------------------------------------------------------


class OtlpExporter:
    """Latest report per series as OTLP gauges every interval; events as OTLP log records, spooled until sent.

    Args:
        config: the `export` section.
        spool_dir: folder for undelivered events (None = memory only).
        metric_sink, log_sink: the SDK exporters (built from `config.otlp` and the environment when None).
        clock: wall clock in ns (tests may pass their own).
        environ: the environment for `OTEL_EXPORTER_OTLP_*` (default `os.environ`).
        instruments: where delivery is counted (the service's `Telemetry.export`; a private registry if None).
    """

    def __init__(
        self,
        config: ExportConfig,
        spool_dir: Path | None = None,
        metric_sink: MetricSink | None = None,
        log_sink: LogSink | None = None,
        clock: Callable[[], int] = time.time_ns,
        environ: Mapping[str, str] | None = None,
        instruments: ExportInstruments | None = None,
    ) -> None:
        self._instruments = ExportInstruments(CollectorRegistry()) if instruments is None else instruments
        if metric_sink is None or log_sink is None:
            built_metrics, built_logs = build_sinks(config.otlp, os.environ if environ is None else environ)
            metric_sink = metric_sink or built_metrics
            log_sink = log_sink or built_logs
        self._metric_sink = metric_sink
        self._log_sink = log_sink
        self._interval = config.otlp.export_interval_seconds
        self._timeout = config.otlp.timeout_seconds
        self._max_backoff = config.events.max_backoff_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._latest: dict[SeriesKey, tuple[SeriesReport, Mapping[str, str]]] = {}
        self._incoming: deque[dict[str, object]] = deque()
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._spool = Spool(spool_dir, config.events.max_spooled_events)
        self._resources = ResourceCache()
        self._metrics_failing = False
        self._closed = False
        self._instruments.events_spooled.set(len(self._spool))
        self._metrics_thread = threading.Thread(target=self._metrics_loop, name="leakproc-otlp-metrics", daemon=True)
        self._events_thread = threading.Thread(target=self._events_loop, name="leakproc-otlp-events", daemon=True)
        self._metrics_thread.start()
        self._events_thread.start()

    # -- the Exporter protocol (called on the event loop: no I/O) ------------------------------------

    def on_report(self, report: SeriesReport, resource: Mapping[str, str]) -> None:
        with self._lock:
            self._latest[report.key] = (report, dict(resource))

    def on_event(self, event: LeakEvent) -> None:
        record = event_record(event)
        with self._wake:
            if len(self._incoming) >= MAX_QUEUED_EVENTS:
                self._incoming.popleft()
                self._instruments.events_dropped.inc()
            self._incoming.append(record)
            self._wake.notify()

    def forget(self, key: SeriesKey) -> None:
        with self._lock:
            self._latest.pop(key, None)

    def shutdown(self, timeout_seconds: float) -> None:
        """Send the latest metrics and pending events once more, then close. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout_seconds
        with self._wake:
            self._stop.set()
            self._wake.notify_all()
        for thread in (self._events_thread, self._metrics_thread):
            thread.join(max(0.0, deadline - time.monotonic()))
        self._metric_sink.shutdown(timeout_millis=max(0.0, deadline - time.monotonic()) * 1000)
        self._log_sink.shutdown()

    # -- metrics ---------------------------------------------------------------------------------

    def _metrics_loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.export_metrics()
        self.export_metrics()

    def export_metrics(self) -> bool:
        """Send the latest value of every series now (also called every interval by the metrics thread)."""
        with self._lock:
            latest = list(self._latest.values())
        if not latest:
            return True
        data = metrics_data(latest, self._clock(), self._resources)
        try:
            result = self._metric_sink.export(data, timeout_millis=self._timeout * 1000)
        except Exception:  # the SDK exporter should not raise; never let the thread die
            _log.exception("OTLP metrics export raised")
            result = MetricExportResult.FAILURE
        ok = result is MetricExportResult.SUCCESS
        if not ok:
            self._instruments.export_failures.labels(signal="metrics").inc()
        if ok == self._metrics_failing:  # log state changes only, not every interval
            _log.warning("OTLP metrics export %s", "recovered" if ok else "failing; will retry next interval")
        self._metrics_failing = not ok
        return ok

    # -- events ----------------------------------------------------------------------------------

    def _events_loop(self) -> None:
        backoff = 1.0
        while True:
            with self._wake:
                while not self._incoming and not len(self._spool) and not self._stop.is_set():
                    self._wake.wait()
                incoming = list(self._incoming)
                self._incoming.clear()
            for record in incoming:  # to disk first: an event is never only in a request in flight
                self._spool.add(record)
            self._account()
            if not len(self._spool):
                if self._stop.is_set():
                    return
                continue
            if self._send_spooled():
                backoff = 1.0
                continue
            if self._stop.is_set():
                return  # undelivered events stay in the spool for the next start
            _log.warning("OTLP log export failing; %d event(s) spooled, retry in %.0f s", len(self._spool), backoff)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    def _send_spooled(self) -> bool:
        resources = ResourceCache()  # per attempt: events are rare, nothing to keep between attempts
        while len(self._spool):
            batch = self._spool.peek(MAX_EVENTS_PER_REQUEST)
            now = self._clock()
            records = [log_record(record, now, resources) for _, record in batch]
            try:
                result = self._log_sink.export(records)
            except Exception:
                _log.exception("OTLP log export raised")
                result = LogRecordExportResult.FAILURE
            if result is not LogRecordExportResult.SUCCESS:
                self._instruments.export_failures.labels(signal="logs").inc()
                return False
            self._spool.remove([seq for seq, _ in batch])
            self._instruments.events_delivered.inc(len(batch))
            self._account()
        return True

    def _account(self) -> None:
        if self._spool.dropped:
            self._instruments.events_dropped.inc(self._spool.dropped)
            self._spool.dropped = 0
        self._instruments.events_spooled.set(len(self._spool))
