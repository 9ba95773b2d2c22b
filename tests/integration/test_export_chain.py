"""The chain from real series reports to Alertmanager: the Prometheus exposition fed SeriesReports from
the steady_leak corpus, scraped by a real Prometheus 2.42 evaluating the shipped rules, which notifies a real
Alertmanager 0.25 whose webhook receiver is this test. Needs apt: prometheus prometheus-alertmanager."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from test_export_support import free_port, wait_for

from otel_leakproc.analyze import AnalyzeOptions, analyze_paths
from otel_leakproc.exporter.config import PrometheusConfig
from otel_leakproc.exporter.prometheus import PrometheusExporter
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.receiver.decode import DecodeLimits

ROOT = Path(__file__).parents[2]
PROMETHEUS, ALERTMANAGER = shutil.which("prometheus"), shutil.which("prometheus-alertmanager")
# Installed by .ci/run; missing binaries fail this test rather than skipping it.
assert PROMETHEUS is not None, "prometheus is missing: apt-get install -y prometheus"
assert ALERTMANAGER is not None, "alertmanager is missing: apt-get install -y prometheus-alertmanager"


class Webhook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Webhook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_confirmed_heap_leak_reaches_alertmanager(tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    options = AnalyzeOptions(service="inventory", instance="pod-1", memory_limit_bytes=2**30)
    corpus = [str(ROOT / "tests/testdata/corpus/steady_leak")]
    report = analyze_paths(corpus, ProcessorConfig(), DecodeLimits(), options)[0].report
    assert report.status == "confirmed"
    exporter = PrometheusExporter(PrometheusConfig(address="127.0.0.1:0"))
    exporter.on_report(report, {"service.name": "inventory", "service.instance.id": "pod-1"})

    Webhook.received = []
    webhook = HTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=webhook.serve_forever, daemon=True).start()
    am_port, prom_port = free_port(), free_port()
    (tmp_path / "am.yml").write_text(
        json.dumps(
            {
                "route": {"receiver": "test", "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
                "receivers": [
                    {"name": "test", "webhook_configs": [{"url": f"http://127.0.0.1:{webhook.server_port}/"}]}
                ],
            }
        )
    )
    (tmp_path / "prometheus.yml").write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(ROOT / "config/alerts/leakproc-rules.yml")],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
                "scrape_configs": [
                    {
                        "job_name": "leakproc-derived",
                        "honor_labels": True,
                        "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
                    }
                ],
            }
        )
    )
    assert ALERTMANAGER is not None
    assert PROMETHEUS is not None
    processes.append(
        start(
            [
                ALERTMANAGER,
                f"--config.file={tmp_path / 'am.yml'}",
                f"--storage.path={tmp_path / 'am'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
            tmp_path / "am.log",
        )
    )
    processes.append(
        start(
            [
                PROMETHEUS,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            tmp_path / "prometheus.log",
        )
    )
    try:
        wait_for(
            lambda: any(
                a["labels"]["alertname"] == "LeakprocHeapLeakConfirmed" for n in Webhook.received for a in n["alerts"]
            ),
            timeout=60,
            what="LeakprocHeapLeakConfirmed at the webhook",
        )
    except AssertionError:
        print((tmp_path / "prometheus.log").read_text()[-3000:], (tmp_path / "am.log").read_text()[-2000:])
        raise
    finally:
        webhook.shutdown()
        webhook.server_close()
        exporter.shutdown(2)
    alert = next(
        a for n in Webhook.received for a in n["alerts"] if a["labels"]["alertname"] == "LeakprocHeapLeakConfirmed"
    )
    assert alert["status"] == "firing"
    assert alert["labels"]["service_name"] == "inventory"
    assert alert["labels"]["service_instance_id"] == "pod-1"
    assert alert["labels"]["severity"] == "critical"
    assert "main.(*orderHistoryArchive).appendOrderSnapshot" in alert["annotations"]["description"]
    assert alert["annotations"]["runbook_url"] == "docs/runbook.md#heap-leak-confirmed"
