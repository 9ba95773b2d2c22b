"""Unit tests of the exporter package: metric contract, env precedence, spool, selection, console, exposition."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_names import prometheus_name

from otel_leakproc.exporter import build_exporters, spool_directory
from otel_leakproc.exporter.config import EventDeliveryConfig, ExportConfig, OtlpConfig, PrometheusConfig
from otel_leakproc.exporter.console import ConsoleExporter
from otel_leakproc.exporter.otlp import OtlpExporter, ResourceCache, metrics_data
from otel_leakproc.exporter.otlp_target import otlp_enabled, resolve_target
from otel_leakproc.exporter.prometheus import PrometheusExporter
from otel_leakproc.exporter.signals import ALL_METRICS, event_record, monitored_resource, report_points
from otel_leakproc.exporter.spool import Spool
from otel_leakproc.model import (
    Evidence,
    Grower,
    LeakEvent,
    ProfileKind,
    SeriesKey,
    SeriesReport,
    Status,
)

HOUR_NS = 3600 * 10**9


def make_report(kind: ProfileKind = ProfileKind.HEAP, status: Status = Status.CONFIRMED) -> SeriesReport:
    grower = Grower("main.(*OrderProcessor).processBatch", "inventory/batch.go", 88, 5e6, 0.72, 3e7, state=None)
    return SeriesReport(
        key=SeriesKey("acme", "inventory", "pod-1", kind),
        profiles=60,
        first_time_nanos=1_700_000_000 * 10**9,
        last_time_nanos=1_700_000_000 * 10**9 + HOUR_NS,
        status=status,
        first_flagged_at_nanos=1_700_000_000 * 10**9 + HOUR_NS // 2,
        score=0.9,
        current=4e8,
        growth_per_hour=7e6,
        time_to_limit_seconds=3600.0 if kind is ProfileKind.HEAP else None,
        restarts=0,
        top_growers=(grower,),
        evidence=Evidence(total_z=4.2, total_slope_low_per_hour=5e6, memory_limit_bytes=2**30),
    )


# --- the metric contract ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ALL_METRICS, ids=lambda s: s.name)
def test_metric_names_follow_otel_naming_and_prometheus_translation(spec: object) -> None:
    from otel_leakproc.exporter.signals import MetricSpec

    assert isinstance(spec, MetricSpec)
    assert re.fullmatch(r"leakproc(\.[a-z_]+)+", spec.name)
    assert spec.prometheus == prometheus_name(spec.name, spec.unit, "gauge")  # exported as OTLP gauges


def test_metric_names_are_documented() -> None:
    doc = (Path(__file__).parents[3] / "docs" / "metrics.md").read_text()
    for spec in ALL_METRICS:
        assert f"`{spec.name}`" in doc, spec.name
        assert f"`{spec.prometheus}`" in doc, spec.name


@pytest.mark.parametrize("kind", list(ProfileKind))
def test_every_kind_has_status_state_set_and_bounded_points(kind: ProfileKind) -> None:
    points = report_points(make_report(kind))
    status = [p for p in points if p.metric.name == "leakproc.series.status"]
    assert sorted(str(p.attributes["leakproc.status"]) for p in status) == sorted(s.value for s in Status)
    assert sum(p.value for p in status) == 1.0
    assert len(points) < 25  # one grower here; top-K growers at most in general


def test_contention_is_exported_in_seconds_per_second() -> None:
    report = make_report(ProfileKind.MUTEX)
    rates = {p.metric.name: p.value for p in report_points(report)}
    assert rates["leakproc.contention.delay_rate"] == pytest.approx(0.4)  # 4e8 ns/s


def test_resource_is_the_monitored_service_only() -> None:
    resource = {"service.name": "inventory", "k8s.pod.name": "inv-1", "http.route": "/x", "service.version": "v1"}
    assert monitored_resource(resource, make_report()) == {
        "service.name": "inventory",
        "k8s.pod.name": "inv-1",
        "service.version": "v1",  # the deployed version: the page names it, fix verification compares it
        "service.instance.id": "pod-1",
    }


def test_metrics_data_has_one_resource_per_monitored_service() -> None:
    reports = [(make_report(), {"service.name": "inventory"}), (make_report(ProfileKind.GOROUTINE), {})]
    data = metrics_data(reports, 123, ResourceCache())
    assert len(data.resource_metrics) == 1  # both resolve to inventory/pod-1
    assert all("telemetry.sdk.name" not in rm.resource.attributes for rm in data.resource_metrics)


def test_event_record_carries_severity_and_evidence() -> None:
    event = LeakEvent("leak.confirmed", 5, Status.SUSPECTED, make_report(), {"service.name": "inventory"})
    record = event_record(event)
    assert record["event_name"] == "leak.confirmed"
    assert (record["severity_number"], record["severity_text"]) == (17, "ERROR")
    attributes = record["attributes"]
    assert isinstance(attributes, dict)
    assert attributes["code.function.name"] == "main.(*OrderProcessor).processBatch"
    assert attributes["leakproc.time_to_limit_seconds"] == 3600.0
    assert attributes["leakproc.window.seconds"] == 3600.0
    assert attributes["leakproc.status.previous"] == "suspected"
    assert "processBatch" in str(record["body"])
    assert event_record(event)["attributes"] == attributes  # stable event.id


# --- configuration and the environment -------------------------------------------------------------


def test_yaml_wins_over_environment_and_http_gets_signal_paths() -> None:
    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4317"}
    config = OtlpConfig(endpoint="http://yaml:4318/", protocol="http/protobuf")
    target = resolve_target(config, "logs", env)
    assert (target.protocol, target.endpoint) == ("http/protobuf", "http://yaml:4318/v1/logs")


def test_empty_yaml_defers_to_environment() -> None:
    env = {"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318"}
    assert otlp_enabled(OtlpConfig(), env)
    assert not otlp_enabled(OtlpConfig(), {})
    target = resolve_target(OtlpConfig(), "metrics", env)
    assert (target.protocol, target.endpoint, target.headers) == ("http/protobuf", None, None)
    assert resolve_target(OtlpConfig(), "logs", env).protocol == "grpc"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (OtlpConfig(endpoint="collector:4317"), "endpoint: must start with http:// or https://"),
        (OtlpConfig(timeout_seconds=0), "timeout_seconds: must be > 0"),
        (PrometheusConfig(address="9464"), "address: expected HOST:PORT"),
        (EventDeliveryConfig(max_spooled_events=0), "max_spooled_events: must be >= 1"),
    ],
)
def test_config_validation(config: OtlpConfig | PrometheusConfig | EventDeliveryConfig, message: str) -> None:
    errors = config.validate()
    assert len(errors) == 1
    assert errors[0].startswith(message)


def test_spool_directory_defaults_under_state_dir() -> None:
    assert spool_directory(ExportConfig(), "/var/lib/x") == Path("/var/lib/x/spool")
    assert spool_directory(ExportConfig(), "") is None
    config = ExportConfig(events=EventDeliveryConfig(spool_dir="/s"))
    assert spool_directory(config, "/var/lib/x") == Path("/s")


def test_console_is_the_default_without_an_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    exporters = build_exporters(ExportConfig(), environ={})
    assert [type(e) for e in exporters] == [ConsoleExporter]
    assert "no OTLP endpoint configured" in capsys.readouterr().out


def test_endpoint_in_environment_selects_otlp(tmp_path: Path) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    exporters = build_exporters(ExportConfig(), str(tmp_path), environ=env)
    try:
        assert [type(e) for e in exporters] == [OtlpExporter]
    finally:
        for exporter in exporters:
            exporter.shutdown(0.5)
            exporter.shutdown(0.5)  # twice is safe


# --- spool ------------------------------------------------------------------------------------------


def test_spool_is_bounded_ordered_and_survives_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_events=3)
    for i in range(5):
        spool.add({"n": i})
    assert spool.dropped == 2
    assert [r["n"] for _, r in spool.peek(10)] == [2, 3, 4]
    reopened = Spool(tmp_path, max_events=3)
    batch = reopened.peek(2)
    assert [r["n"] for _, r in batch] == [2, 3]
    reopened.remove([seq for seq, _ in batch])
    reopened.add({"n": 5})
    assert [r["n"] for _, r in Spool(tmp_path, 3).peek(10)] == [4, 5]


# --- console and exposition -------------------------------------------------------------------------


def test_console_prints_first_sighting_and_events() -> None:
    out = io.StringIO()
    console = ConsoleExporter(out)
    report = make_report()
    console.on_report(report, {"k8s.pod.name": "inv-1"})
    console.on_report(report, {})
    console.on_event(LeakEvent("leak.confirmed", report.last_time_nanos, Status.SUSPECTED, report, {}))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "tracking" in lines[0]
    assert "k8s.pod.name=inv-1" in lines[0]
    assert "leak.confirmed" in lines[1]
    assert "processBatch" in lines[1]
    assert "72% of growth" in lines[1]


def test_prometheus_exposition_uses_translated_names_and_resource_labels() -> None:
    exporter = PrometheusExporter(PrometheusConfig(), start=False)
    exporter.on_report(make_report(), {"service.name": "inventory", "service.namespace": "shop"})
    text = generate_latest(exporter.registry).decode()
    assert (
        'leakproc_heap_growth_rate_bytes_per_hour{leakproc_profile_kind="heap",leakproc_tenant="acme",'
        'service_instance_id="pod-1",service_name="inventory",service_namespace="shop"} 7e+06'
    ) in text
    assert 'code_function_name="main.(*OrderProcessor).processBatch"' in text
    exporter.forget(make_report().key)
    assert "leakproc_heap" not in generate_latest(exporter.registry).decode()
    exporter.shutdown(1)
