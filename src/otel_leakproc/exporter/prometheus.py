"""An optional Prometheus `/metrics` exposition of the derived metrics, on its own port.

Names and labels are exactly what the usual OTLP-to-Prometheus translation produces from the OTLP metrics
(`leakproc.heap.growth_rate` with unit `By/h` -> `leakproc_heap_growth_rate_bytes_per_hour`, attribute
dots -> underscores) with the collector's `resource_to_telemetry_conversion` enabled: the monitored
service's resource attributes become labels (`service_name`, `service_instance_id`, ...). The alert rules
in `config/alerts/` therefore work on either path. Scrape it with `honor_labels: true`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from otel_leakproc.exporter.config import PrometheusConfig
from otel_leakproc.exporter.signals import ALL_METRICS, monitored_resource, prometheus_label, report_points
from otel_leakproc.model import LeakEvent, SeriesKey, SeriesReport


class _ReportCollector(Collector):
    def __init__(self, exporter: PrometheusExporter) -> None:
        self._exporter = exporter

    def collect(self) -> Iterable[Metric]:
        families: dict[str, GaugeMetricFamily] = {}
        for report, resource in self._exporter.snapshot():
            labels = {prometheus_label(k): v for k, v in monitored_resource(resource, report).items()}
            for point in report_points(report):
                spec = point.metric
                family = families.get(spec.name)
                if family is None:
                    family = families[spec.name] = GaugeMetricFamily(spec.prometheus, spec.description)
                sample_labels = dict(labels)
                sample_labels.update({prometheus_label(k): str(v) for k, v in point.attributes.items()})
                family.add_sample(spec.prometheus, sample_labels, point.value)
        order = {spec.name: i for i, spec in enumerate(ALL_METRICS)}
        return [families[name] for name in sorted(families, key=order.__getitem__)]


class PrometheusExporter:
    """Serves the latest report of every series on `http://ADDRESS/metrics`.

    Args:
        config: the `export.prometheus` section.
        start: start the listener now (tests may render `registry` without one).
    """

    def __init__(self, config: PrometheusConfig, start: bool = True) -> None:
        self._lock = threading.Lock()
        self._latest: dict[SeriesKey, tuple[SeriesReport, dict[str, str]]] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_ReportCollector(self))
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0
        if start:
            host, _, port = config.address.rpartition(":")
            self._server, self._thread = start_http_server(int(port), addr=host.strip("[]"), registry=self.registry)
            self.port = int(self._server.server_address[1])

    def snapshot(self) -> list[tuple[SeriesReport, dict[str, str]]]:
        with self._lock:
            return list(self._latest.values())

    def on_report(self, report: SeriesReport, resource: Mapping[str, str]) -> None:
        with self._lock:
            self._latest[report.key] = (report, dict(resource))

    def on_event(self, event: LeakEvent) -> None:
        """Events are not metrics; the status gauge already shows the transition."""

    def forget(self, key: SeriesKey) -> None:
        with self._lock:
            self._latest.pop(key, None)

    def shutdown(self, timeout_seconds: float) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout_seconds)
