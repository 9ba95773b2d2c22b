"""`serve` with a deploy: a leaking v1.4.1 pushed with a `version` label, then v1.4.2 of the same instance.

Real Go heap profiles (tests/testdata/versions), uploaded like `curl` does (`/ingest?name=...`) to the real
service; the fix verification shows in `/api/v1/series` (`fix`) and in the events (before and after).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_support import TESTDATA, RunningService, http, make_settings, running_service, series

from otel_leakproc.exporter.signals import event_record

VERSIONS = TESTDATA / "versions"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    with running_service(make_settings(tmp_path_factory.mktemp("state"))) as running:
        yield running


def push_versions(svc: RunningService, case: str, instance: str) -> None:
    for version in ("v1.4.1", "v1.4.2"):
        for path in sorted((VERSIONS / case / version / "heap").glob("*.pb.gz")):
            name = f"checkout{{instance={instance},version={version}}}"
            reply = http("POST", f"{svc.url}/ingest?name={name}&format=pprof", Path(path).read_bytes())
            assert reply.status == 200, reply.body


def test_a_deploy_that_fixed_the_leak(svc: RunningService) -> None:
    push_versions(svc, "checkout_fixed", "pod-1")
    (obj,) = series(svc.url, service="checkout", instance="pod-1")
    assert obj["status"] == "ok"
    assert obj["resource"]["service.version"] == "v1.4.2"
    fix = obj["fix"]
    assert fix["verdict"] == "fixed"
    assert fix["version"] == "v1.4.2"
    assert fix["sites"] == ["main.(*auditLog).retainAuditRecord"]
    assert fix["before"]["version"] == "v1.4.1"
    assert fix["after"]["version"] == "v1.4.2"
    assert fix["before"]["growth_per_hour"] > 10 * MIB
    assert fix["after"]["growth_per_hour"] < fix["before"]["growth_per_hour"] / 20
    assert fix["age_seconds"] == 1200
    events = [e for e in svc.exporter.events if e.report.key.instance == "pod-1"]
    assert [e.name for e in events] == ["leak.suspected", "leak.resolved"]
    record = event_record(events[-1])
    attributes = record["attributes"]
    assert isinstance(attributes, dict)
    assert attributes["leakproc.fix.verdict"] == "fixed"
    assert attributes["leakproc.fix.before.version"] == "v1.4.1"
    assert attributes["leakproc.fix.after.version"] == "v1.4.2"
    assert attributes["leakproc.fix.before.growth_rate_per_hour"] == pytest.approx(fix["before"]["growth_per_hour"])
    after_rate = fix["after"]["growth_per_hour"]
    assert attributes["leakproc.fix.after.growth_rate_per_hour"] == pytest.approx(after_rate, abs=1e-3)
    assert "fixed: growth 19.9 MiB/h before v1.4.2" in str(record["body"])


def test_a_deploy_that_did_not_fix_the_leak(svc: RunningService) -> None:
    push_versions(svc, "checkout_unfixed", "pod-2")
    (obj,) = series(svc.url, service="checkout", instance="pod-2")
    assert obj["status"] in ("suspected", "confirmed")
    assert obj["fix"]["verdict"] == "not_fixed"
    assert obj["fix"]["after"]["growth_per_hour"] > 0.5 * obj["fix"]["before"]["growth_per_hour"]
    events = [e.name for e in svc.exporter.events if e.report.key.instance == "pod-2"]
    assert events == ["leak.suspected", "leak.not_fixed"]
