"""A real Go program, built in the test, leaks while its profiles are uploaded to `serve` as it runs.

It serves net/http/pprof; the test pulls heap, goroutine, goroutineleak and mutex profiles twice a second
(as a pyroscope agent or Alloy would) and uploads them with the curl-style `/ingest` call.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_support import (
    FAST_PROCESSOR,
    TESTDATA,
    RunningService,
    go_program,
    http,
    make_settings,
    running_service,
    series,
)

pytestmark = pytest.mark.gotool

SOURCE = TESTDATA / "go" / "leaky"


@pytest.fixture(scope="module")
def leaky(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with go_program(SOURCE, tmp_path_factory.mktemp("leaky"), LEAK_INTERVAL_MS="20") as address:
        yield address


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        data: bytes = response.read()
        return data


def test_live_go_service_leaks_are_flagged_and_named(leaky: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "state", processor=FAST_PROCESSOR)
    with running_service(settings) as svc:
        run(svc, leaky)


def run(svc: RunningService, target: str) -> None:
    name = "inventory{instance=inv-0,namespace=shop}"
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        for profile, extra in (
            ("heap", ""),
            ("goroutine", ""),
            ("goroutineleak", "&kind=goroutineleak"),
            ("mutex", "&kind=mutex"),
        ):
            body = fetch(f"{target}/debug/pprof/{profile}")
            reply = http("POST", f"{svc.url}/ingest?name={name}&format=pprof{extra}", body)
            assert reply.status == 200, (profile, reply.body)
        found = {s["kind"]: s for s in series(svc.url, service="inventory")}
        if all(
            found.get(k, {}).get("status") in ("suspected", "confirmed") for k in ("heap", "goroutine", "goroutineleak")
        ):
            break
        time.sleep(0.5)
    found = {s["kind"]: s for s in series(svc.url, service="inventory")}
    heap = found["heap"]
    assert heap["status"] in ("suspected", "confirmed"), heap
    assert heap["top_growers"][0]["function"] == "main.(*sessionCache).rememberSession"
    assert heap["instance"] == "inv-0"
    assert heap["resource"]["service.namespace"] == "shop"
    goroutines = found["goroutine"]
    assert goroutines["status"] in ("suspected", "confirmed"), goroutines
    assert goroutines["top_growers"][0]["function"] == "main.waitForReply"
    assert goroutines["top_growers"][0]["state"].startswith("chan receive")
    leak = found["goroutineleak"]
    assert leak["status"] == "confirmed"
    assert leak["top_growers"][0]["function"] == "main.waitForReply"
    mutex = found["mutex"]
    assert mutex["top_growers"][0]["function"] == "main.deductBatch"
    # The events went out once per transition of each series (the goroutine and goroutineleak series
    # both send goroutine_leak.* when both are flagged), naming the same functions.
    sent = [(e.name, e.report.key.kind) for e in svc.exporter.events if e.report.key.service == "inventory"]
    names = [name for name, _ in sent]
    assert "leak.suspected" in names or "leak.confirmed" in names
    assert "goroutine_leak.confirmed" in names
    assert len(sent) == len(set(sent)), sent
