"""OTLP export through a real collector (rotel-agent) to a recording receiver: resource, names, values,
events, and delivery across a collector outage and an otel-leakproc restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_export_support import RecordingReceiver, Rotel, attrs, rotel_chain, wait_for

from otel_leakproc.analyze import AnalyzeOptions, analyze_paths
from otel_leakproc.exporter.config import EventDeliveryConfig, ExportConfig, OtlpConfig
from otel_leakproc.exporter.otlp import OtlpExporter
from otel_leakproc.exporter.signals import event_id
from otel_leakproc.model import LeakEvent, SeriesReport, Status, event_name
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.receiver.decode import DecodeLimits

CORPUS = Path(__file__).parents[1] / "testdata" / "corpus"
RESOURCE = {"service.name": "checkout", "service.instance.id": "pod-1", "k8s.pod.name": "checkout-7d9f", "x.y": "z"}


@pytest.fixture(scope="module")
def timeline() -> list[SeriesReport]:
    options = AnalyzeOptions(service="checkout", instance="pod-1", memory_limit_bytes=2**30, keep_timeline=True)
    results = analyze_paths([str(CORPUS / "steady_leak")], ProcessorConfig(), DecodeLimits(), options)
    return results[0].timeline


def events_of(timeline: list[SeriesReport]) -> list[LeakEvent]:
    events, previous = [], Status.INSUFFICIENT_DATA
    for report in timeline:
        name = event_name(report.key.kind, previous, report.status)
        if name:
            events.append(LeakEvent(name, report.last_time_nanos, previous, report, RESOURCE))
        previous = report.status
    return events


def feed(exporter: OtlpExporter, timeline: list[SeriesReport]) -> list[LeakEvent]:
    events = events_of(timeline)
    by_time = {e.time_nanos: e for e in events}
    for report in timeline:
        exporter.on_report(report, RESOURCE)
        if report.last_time_nanos in by_time:
            exporter.on_event(by_time[report.last_time_nanos])
    return events


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[tuple[Rotel, RecordingReceiver]]:
    yield from rotel_chain(tmp_path)


@pytest.mark.parametrize(("protocol", "compression"), [("grpc", "gzip"), ("http/protobuf", "gzip"), ("grpc", "none")])
def test_metrics_and_events_reach_the_collector(
    chain: tuple[Rotel, RecordingReceiver],
    timeline: list[SeriesReport],
    tmp_path: Path,
    protocol: str,
    compression: str,
) -> None:
    rotel, receiver = chain
    port = rotel.grpc_port if protocol == "grpc" else rotel.http_port
    otlp = OtlpConfig(
        endpoint=f"http://127.0.0.1:{port}",
        protocol=protocol,  # type: ignore[arg-type]
        compression=compression,  # type: ignore[arg-type]
        headers={"x-tenant": "acme"},
        export_interval_seconds=1,
    )
    exporter = OtlpExporter(ExportConfig(otlp=otlp), tmp_path / "spool")
    events = feed(exporter, timeline)
    assert [e.name for e in events] == ["leak.suspected", "leak.confirmed"]
    wait_for(lambda: len(receiver.log_records()) >= 2 and receiver.metric_points(), what="events and metrics")
    exporter.shutdown(10)

    final = timeline[-1]
    resource, _ = receiver.metric_points()[-1]
    assert resource == {"service.name": "checkout", "service.instance.id": "pod-1", "k8s.pod.name": "checkout-7d9f"}
    latest = {m.name: m for _, m in receiver.metric_points()}
    assert latest["leakproc.heap.in_use"].unit == "By"
    assert latest["leakproc.heap.in_use"].gauge.data_points[0].as_double == final.current
    assert latest["leakproc.heap.growth_rate"].unit == "By/h"
    assert latest["leakproc.heap.growth_rate"].gauge.data_points[0].as_double == pytest.approx(final.growth_per_hour)
    assert latest["leakproc.heap.time_to_limit"].gauge.data_points[0].as_double == pytest.approx(
        final.time_to_limit_seconds
    )
    status = {
        attrs(p.attributes)["leakproc.status"]: p.as_double for p in latest["leakproc.series.status"].gauge.data_points
    }
    assert status == {"insufficient_data": 0.0, "ok": 0.0, "suspected": 0.0, "confirmed": 1.0}
    site = latest["leakproc.heap.site.growth_rate"].gauge.data_points[0]
    assert attrs(site.attributes)["code.function.name"] == "main.(*orderHistoryArchive).appendOrderSnapshot"
    assert attrs(site.attributes)["leakproc.grower.rank"] == 1

    records = receiver.log_records()
    assert [r.event_name for _, r in records] == ["leak.suspected", "leak.confirmed"]
    assert [(r.severity_number, r.severity_text) for _, r in records] == [(13, "WARN"), (17, "ERROR")]
    assert all(res["service.name"] == "checkout" for res, _ in records)
    confirmed = attrs(records[1][1].attributes)
    assert confirmed["code.function.name"] == "main.(*orderHistoryArchive).appendOrderSnapshot"
    assert confirmed["leakproc.time_to_limit_seconds"] == pytest.approx(events[1].report.time_to_limit_seconds)
    assert confirmed["leakproc.window.seconds"] > 0
    assert records[1][1].time_unix_nano == events[1].time_nanos


def test_events_survive_a_collector_outage_and_a_restart(timeline: list[SeriesReport], tmp_path: Path) -> None:
    receiver = RecordingReceiver()
    rotel = Rotel(tmp_path, receiver.port)  # ports chosen, collector not running yet
    spool = tmp_path / "spool"
    config = ExportConfig(
        otlp=OtlpConfig(endpoint=f"http://127.0.0.1:{rotel.grpc_port}", timeout_seconds=1, export_interval_seconds=1),
        events=EventDeliveryConfig(max_backoff_seconds=1),
    )
    try:
        first = OtlpExporter(config, spool)
        events = feed(first, timeline)  # suspected and confirmed
        wait_for(lambda: len(list(spool.glob("*.event.json"))) == len(events), what="events spooled to disk")
        time.sleep(2)  # a few failed attempts
        first.shutdown(5)  # otel-leakproc stops while the collector is down: the spool stays on disk
        assert len(list(spool.glob("*.event.json"))) == len(events)

        second = OtlpExporter(config, spool)  # restarted; one more event arrives while still down
        later = timeline[-1]
        resolved = LeakEvent("leak.resolved", later.last_time_nanos + 1, Status.CONFIRMED, later, RESOURCE)
        second.on_event(resolved)
        second.on_report(later, RESOURCE)
        time.sleep(2)
        assert receiver.log_records() == []

        rotel.start()
        expected = [*events, resolved]
        wait_for(lambda: len(receiver.log_records()) >= len(expected), timeout=30, what="spooled events delivered")
        wait_for(lambda: bool(receiver.metric_points()), timeout=30, what="metrics resumed")
        time.sleep(2)  # a duplicate would arrive by now
        second.shutdown(10)
        records = receiver.log_records()
        ids = [attrs(r.attributes)["event.id"] for _, r in records]
        assert ids == [event_id(e) for e in expected]  # all of them, in order, once
        assert [r.event_name for _, r in records] == ["leak.suspected", "leak.confirmed", "leak.resolved"]
        assert list(spool.glob("*.event.json")) == []
    finally:
        rotel.stop()
        receiver.stop()
