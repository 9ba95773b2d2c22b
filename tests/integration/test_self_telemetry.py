"""otel-leakproc's own telemetry over OTLP: serve -> a real rotel collector -> a recording receiver.

The own metrics must arrive with otel-leakproc's resource (never the monitored service's), carry the same
values as `GET /metrics`, and translate back to the `/metrics` names the shipped alert rules use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from prometheus_names import prometheus_name
from serve_support import STEADY_LEAK, http, make_settings, metric, running_service
from test_export_support import RecordingReceiver, Rotel, attrs, rotel_chain, wait_for

from otel_leakproc.exporter.config import ExportConfig, OtlpConfig
from otel_leakproc.exporter.self_telemetry import OTEL_NAMES, build_self_telemetry, otel_name
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.pipeline import Pipeline
from otel_leakproc.processor.state import SeriesTable
from otel_leakproc.receiver.scrape.metrics import ScrapeMetrics
from otel_leakproc.telemetry import Telemetry

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "config" / "alerts" / "leakproc-rules.yml"
UPLOADS = 6


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[tuple[Rotel, RecordingReceiver]]:
    yield from rotel_chain(tmp_path)


def latest_own(receiver: RecordingReceiver) -> tuple[dict[str, Any], dict[str, Any]]:
    """The last OTLP metric per name under the `service.name=otel-leakproc` resource, and that resource."""
    metrics: dict[str, Any] = {}
    resource: dict[str, Any] = {}
    for res, metric_pb in receiver.metric_points():
        if res.get("service.name") == "otel-leakproc":
            metrics[metric_pb.name] = metric_pb
            resource = res
    return metrics, resource


def sum_points(metric_pb: Any, **want: str) -> float:
    total = 0.0
    for point in metric_pb.sum.data_points:
        if all(attrs(point.attributes).get(k) == v for k, v in want.items()):
            total += point.as_double or point.as_int
    return total


def gauge_value(metric_pb: Any) -> float:
    point = metric_pb.gauge.data_points[0]
    return float(point.as_double or point.as_int)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_own_metrics_reach_the_collector_with_their_own_resource(
    chain: tuple[Rotel, RecordingReceiver], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    rotel, receiver = chain
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=ci,team=observability")
    port = rotel.grpc_port if protocol == "grpc" else rotel.http_port
    otlp = {"endpoint": f"http://127.0.0.1:{port}", "protocol": protocol, "export_interval_seconds": 1}
    settings = make_settings(tmp_path / "state", export={"otlp": otlp})
    profiles = sorted(STEADY_LEAK.glob("*.pb.gz"))[:UPLOADS]
    with running_service(settings, real_exporters=True) as svc:
        assert svc.service.self_telemetry is not None
        for path in profiles:
            reply = http("POST", f"{svc.url}/ingest?name=checkout&format=pprof", path.read_bytes())
            assert reply.status == 200, reply.body
        assert http("POST", f"{svc.url}/ingest?name=checkout&format=pprof", b"garbage, not a profile").status == 400

        def arrived() -> bool:
            own, _ = latest_own(receiver)
            received = own.get("otel_leakproc.profiles.received")
            rejected = own.get("otel_leakproc.profiles.rejected")
            return (
                received is not None
                and sum_points(received) == UPLOADS
                and rejected is not None
                and sum_points(rejected, reason="bad_protobuf") == 1
            )

        wait_for(arrived, 30, "own metrics with every upload counted")
        # One source of truth: the same counts as the /metrics exposition.
        (point,) = latest_own(receiver)[0]["otel_leakproc.profiles.received"].sum.data_points
        labels = {k: str(v) for k, v in attrs(point.attributes).items()}
        assert metric(svc.url, "otel_leakproc_profiles_received_total", **labels) == UPLOADS
        assert metric(svc.url, "otel_leakproc_profiles_rejected_total", reason="bad_protobuf") == 1
        wait_for(
            lambda: any(
                res.get("service.name") == "checkout" and m.name == "leakproc.heap.in_use"
                for res, m in receiver.metric_points()
            ),
            30,
            "the derived metrics with the monitored resource",
        )

    # Shutdown exports once more: the service reports itself not ready.
    wait_for(lambda: gauge_value(latest_own(receiver)[0]["otel_leakproc.ready"]) == 0, 10, "the final export")
    own, resource = latest_own(receiver)
    # The resource is otel-leakproc's, with OTEL_RESOURCE_ATTRIBUTES on top and the SDK's identity.
    assert resource["service.name"] == "otel-leakproc"
    assert resource["service.version"]
    assert resource["service.instance.id"]
    assert resource["deployment.environment.name"] == "ci"
    assert resource["team"] == "observability"
    assert resource["telemetry.sdk.name"] == "opentelemetry"

    received = own["otel_leakproc.profiles.received"]
    assert received.unit == "{profile}"
    assert received.sum.is_monotonic
    assert received.sum.aggregation_temporality == 2  # cumulative
    assert [set(attrs(p.attributes)) for p in received.sum.data_points] == [{"tenant", "dialect"}]
    assert sum_points(own["otel_leakproc.profiles.rejected"], reason="bad_protobuf") == 1
    assert gauge_value(own["otel_leakproc.queue.capacity"]) > 0
    assert gauge_value(own["otel_leakproc.series.tracked"]) == 1
    # The decode histogram keeps its buckets: every accepted upload was decoded in a worker.
    decode = own["otel_leakproc.decode"]
    assert decode.unit == "s"
    (point,) = decode.histogram.data_points
    assert point.count >= UPLOADS
    assert point.sum > 0
    assert sum(point.bucket_counts) == point.count
    assert len(point.bucket_counts) == len(point.explicit_bounds) + 1
    assert list(point.explicit_bounds) == sorted(point.explicit_bounds)
    # The exporters' delivery counters (default registry) and process metrics come along.
    assert "otel_leakproc.export.failures" in own
    assert "otel_leakproc.events.spooled" in own
    assert "process_resident_memory_bytes" in own

    # Never mixed: own metrics only under otel-leakproc's resource, derived ones only under the monitored one.
    for res, metric_pb in receiver.metric_points():
        if res.get("service.name") == "otel-leakproc":
            assert not metric_pb.name.startswith("leakproc."), metric_pb.name
        else:
            assert res.get("service.name") == "checkout", res
            assert metric_pb.name.startswith("leakproc."), metric_pb.name
            assert "telemetry.sdk.name" not in res


def test_no_endpoint_no_own_otlp_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    assert build_self_telemetry(ExportConfig(), environ={}) is None
    with running_service(make_settings(tmp_path / "state")) as svc:
        assert svc.service.self_telemetry is None
    # The standard variable alone turns it on, like the derived signals.
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}
    own = build_self_telemetry(ExportConfig(otlp=OtlpConfig(timeout_seconds=0.5)), environ=env)
    assert own is not None
    own.shutdown(0.5)


# --- names: the OTLP names translate back to the /metrics names ------------------------------------


def translated(name: str, unit: str, family_type: str) -> str:
    """The Prometheus name a collector's Prometheus exporter gives an own metric exported over OTLP (counters
    as monotonic sums, histograms as histograms, the other families as gauges)."""
    kind = family_type if family_type in ("counter", "histogram") else "gauge"
    return prometheus_name(name, unit, kind)


def own_families() -> list[Any]:
    """Every own metric family, registered as the service registers them: the telemetry (ingest, state,
    exporters), the pipeline's table gauges and the scrape receiver's metrics."""
    telemetry = Telemetry()
    Pipeline(SeriesTable(ProcessorConfig(), max_series=10), telemetry)
    ScrapeMetrics(telemetry.registry)
    families = list(telemetry.registry.collect())
    assert not [f.name for f in REGISTRY.collect() if f.name.startswith("otel_leakproc_")], "globals are gone"
    return families


def test_every_own_metric_has_an_otel_name_that_translates_back_to_its_metrics_name() -> None:
    families = own_families()
    names = {f.name for f in families}
    assert names >= {"otel_leakproc_profiles_received", "otel_leakproc_export_failures", "otel_leakproc_scrape_up"}
    missing = sorted(names - set(OTEL_NAMES))
    assert not missing, f"add these to self_telemetry.OTEL_NAMES and docs/metrics.md: {missing}"
    for family in families:
        name, unit = otel_name(family)
        assert re.fullmatch(r"[a-z][a-z0-9_.]*", name), name
        assert "_total" not in name, name
        assert not name.endswith(("_seconds", "_bytes")), name
        exposed = f"{family.name}_total" if family.type == "counter" else family.name
        assert translated(name, unit, family.type) == exposed, (family.name, name, unit)


def test_the_alert_rules_names_are_reachable_through_otlp() -> None:
    rules = RULES.read_text()
    used = set(re.findall(r"\b(otel_leakproc_[a-z_]+?)(?:_bucket|_count|_sum)?\b", rules))
    assert used, "the rules watch otel-leakproc's own metrics"
    exposed = {translated(*otel_name(f), f.type) for f in own_families()}  # in a Prometheus fed over OTLP
    for name in used:
        assert name in exposed, f"{name} (alert rules) has no OTLP counterpart"


def test_the_name_mapping_is_documented() -> None:
    doc = (REPO / "docs" / "metrics.md").read_text()
    section = doc.split("## otel-leakproc's own telemetry", 1)[1]
    for family in own_families():
        name, unit = otel_name(family)
        exposed = translated(name, unit, family.type)
        assert f"| `{exposed}` | `{name}` | {f'`{unit}`' if unit else '(none)'} |" in section, family.name
