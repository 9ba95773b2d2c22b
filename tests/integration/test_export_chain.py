"""The chain from real series reports to Alertmanager: the Prometheus exposition fed SeriesReports from
the steady_leak corpus, scraped by a real Prometheus 2.42 evaluating the shipped rules, which notifies a real
Alertmanager 0.25 whose webhook receiver is this test. Needs apt: prometheus prometheus-alertmanager."""

from __future__ import annotations

from pathlib import Path

from alerting_stack import alerting_stack

from otel_leakproc.analyze import AnalyzeOptions, analyze_paths
from otel_leakproc.exporter.config import PrometheusConfig
from otel_leakproc.exporter.prometheus import PrometheusExporter
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.receiver.decode import DecodeLimits

ROOT = Path(__file__).parents[2]


def test_confirmed_heap_leak_reaches_alertmanager(tmp_path: Path) -> None:
    options = AnalyzeOptions(service="inventory", instance="pod-1", memory_limit_bytes=2**30)
    corpus = [str(ROOT / "tests/testdata/corpus/steady_leak")]
    report = analyze_paths(corpus, ProcessorConfig(), DecodeLimits(), options)[0].report
    assert report.status == "confirmed"
    exporter = PrometheusExporter(PrometheusConfig(address="127.0.0.1:0"))
    exporter.on_report(report, {"service.name": "inventory", "service.instance.id": "pod-1"})
    try:
        with alerting_stack(tmp_path, exporter.port) as stack:
            alert = stack.wait_for_alert("LeakprocHeapLeakConfirmed", timeout=60)
    finally:
        exporter.shutdown(2)
    assert alert["status"] == "firing"
    assert alert["labels"]["service_name"] == "inventory"
    assert alert["labels"]["service_instance_id"] == "pod-1"
    assert alert["labels"]["severity"] == "critical"
    assert "main.(*orderHistoryArchive).appendOrderSnapshot" in alert["annotations"]["description"]
    assert alert["annotations"]["runbook_url"] == "docs/runbook.md#heap-leak-confirmed"
