"""The whole chain, every part real: a leaking Go program -> `serve` -> OTLP -> rotel (a real collector) and
the derived-metrics exposition -> Prometheus 2.42 evaluating the shipped rules -> Alertmanager 0.25 -> a
webhook receiver. Needs apt: prometheus prometheus-alertmanager (installed by .ci/run)."""

from __future__ import annotations

import json
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from alerting_stack import alerting_stack
from serve_support import FAST_PROCESSOR, TESTDATA, go_program, http, make_settings, running_service, series
from test_export_support import free_port, rotel_chain, wait_for

pytestmark = pytest.mark.gotool

LEAKER = "main.(*sessionCache).rememberSession"


def test_leaking_go_program_pages_through_alertmanager(tmp_path: Path) -> None:
    exposition = free_port()
    with (
        contextmanager(rotel_chain)(tmp_path) as (rotel, receiver),
        go_program(TESTDATA / "go" / "leaky", tmp_path, LEAK_INTERVAL_MS="20") as target,
    ):
        settings = make_settings(
            tmp_path / "state",
            processor=FAST_PROCESSOR,
            export={
                "otlp": {
                    "endpoint": f"http://127.0.0.1:{rotel.grpc_port}",
                    "protocol": "grpc",
                    "insecure": True,
                    "export_interval_seconds": 1,
                },
                "prometheus": {"enabled": True, "address": f"127.0.0.1:{exposition}"},
            },
        )
        with running_service(settings, real_exporters=True) as svc:
            # 1. The Go program's profiles reach serve as it runs (pulled like an agent, pushed like curl).
            name = "inventory{instance=inv-0,namespace=shop}"
            deadline = time.monotonic() + 90  # about 20 s on a quiet machine; CI shares 2 cores
            while time.monotonic() < deadline:
                for profile in ("heap", "goroutine"):
                    with urllib.request.urlopen(f"{target}/debug/pprof/{profile}", timeout=10) as response:
                        body = response.read()
                    assert http("POST", f"{svc.url}/ingest?name={name}&format=pprof", body).status == 200
                heap = series(svc.url, service="inventory", kind="heap")
                if heap and heap[0]["status"] == "confirmed":
                    break
                time.sleep(0.5)
            heap = series(svc.url, service="inventory", kind="heap")[0]
            assert heap["status"] == "confirmed", json.dumps(
                {k: heap[k] for k in ("status", "evidence", "top_growers")}, indent=1
            )
            assert heap["top_growers"][0]["function"] == LEAKER

            # 2. OTLP metrics and events arrive at the collector with the monitored service as resource.
            def inventory_events() -> dict[str, tuple[dict[str, object], object]]:
                out = {}
                for res, rec in receiver.log_records():
                    if res.get("service.name") == "inventory":
                        names = [a.value.string_value for a in rec.attributes if a.key == "event_name"]
                        out[names[0] if names else rec.event_name] = (res, rec)
                return out

            wait_for(lambda: {"leak.suspected", "leak.confirmed"} <= set(inventory_events()), 30, "heap events")
            events = inventory_events()
            assert {"leak.suspected", "leak.confirmed"} <= set(events), set(events)
            resource, record = events["leak.confirmed"]
            assert resource["service.instance.id"] == "inv-0"
            assert resource["service.namespace"] == "shop"
            assert LEAKER in json.dumps([str(a.value) for a in record.attributes])
            wait_for(
                lambda: any(
                    r.get("service.name") == "inventory" and m.name == "leakproc.heap.in_use"
                    for r, m in receiver.metric_points()
                ),
                30,
                "leakproc.heap.in_use at the collector",
            )
            in_use = [
                m
                for r, m in receiver.metric_points()
                if r.get("service.name") == "inventory" and m.name == "leakproc.heap.in_use"
            ]
            assert in_use[-1].unit == "By"
            assert in_use[-1].gauge.data_points[-1].as_double > 0 or in_use[-1].gauge.data_points[-1].as_int > 0

            # 3. Prometheus scrapes the derived metrics, evaluates the shipped rules; Alertmanager pages.
            with alerting_stack(tmp_path, exposition) as stack:
                alert = stack.wait_for_alert("LeakprocHeapLeakConfirmed")
    assert alert["status"] == "firing"
    assert alert["labels"]["service_name"] == "inventory"
    assert alert["labels"]["service_instance_id"] == "inv-0"
    assert alert["labels"]["severity"] == "critical"
    assert LEAKER in alert["annotations"]["description"]
