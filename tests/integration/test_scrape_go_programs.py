"""The scrape receiver against real Go programs on loopback: a leaking one, a healthy one and a dead address.

The service pulls /debug/pprof/{heap,goroutine,goroutineleak,mutex,block} itself (static targets), every
profile goes through the ingest core, and the verdicts, target health, own metrics and the goroutine dump
fetched when a series of the leaking program is flagged are checked on the real HTTP API.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_support import FAST_PROCESSOR, free_port, http, make_settings, metric, running_service, series
from test_scrape_support import build_go, go_program

pytestmark = pytest.mark.gotool

FLAGGED = ("suspected", "confirmed")


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    work = tmp_path_factory.mktemp("go")
    leaky, healthy = build_go("leaky", work), build_go("healthy", work)
    with go_program(leaky, LEAK_INTERVAL_MS="20") as leaky_at, go_program(healthy) as healthy_at:
        yield leaky_at, healthy_at


def api(url: str, **params: str) -> dict[str, Any]:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    reply = http("GET", f"{url}/api/v1/series?timeline=0&{query}")
    assert reply.status == 200, reply.body
    result: dict[str, Any] = reply.json()
    return result


def test_scraped_leak_is_flagged_and_named_healthy_one_is_not(programs: tuple[str, str], tmp_path: Path) -> None:
    leaky_at, healthy_at = programs
    dead_at = f"127.0.0.1:{free_port()}"
    settings = make_settings(
        tmp_path / "state",
        processor=FAST_PROCESSOR,
        scrape={
            "enabled": True,
            "interval_seconds": 0.5,
            "jitter": 0.2,
            "timeout_seconds": 3,
            "static_targets": [
                {"address": leaky_at, "service": "inventory", "instance": "inv-0", "labels": {"region": "eu-1"}},
                {"url": f"http://{healthy_at}/debug/pprof/", "service": "catalog", "instance": "cat-0"},
                {"address": dead_at, "service": "ghost"},
            ],
            "dump_on_suspect": {"min_interval_seconds": 3600},
        },
    )
    with running_service(settings) as svc:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            found = {s["kind"]: s for s in series(svc.url, service="inventory")}
            leaky_target = next(t for t in api(svc.url)["targets"] if t["service"] == "inventory")
            if found.get("heap", {}).get("status") in FLAGGED and leaky_target["dump"] is not None:
                break
            time.sleep(0.5)
        body = api(svc.url)
        found = {s["kind"]: s for s in body["series"] if s["service"] == "inventory"}
        targets = {t["service"]: t for t in body["targets"]}

        # The leaking program: heap flagged and named, identity and resource from the target's config.
        heap = found["heap"]
        assert heap["status"] in FLAGGED, heap
        assert heap["top_growers"][0]["function"] == "main.(*sessionCache).rememberSession"
        assert heap["instance"] == "inv-0"
        assert heap["tenant"] == "default"
        assert heap["resource"]["service.instance.id"] == "inv-0"
        assert heap["resource"]["region"] == "eu-1"
        assert found["mutex"]["top_growers"][0]["function"] == "main.deductBatch"

        leaky = targets["inventory"]
        assert leaky["source"] == "static"
        assert leaky["url"] == f"http://{leaky_at}/debug/pprof"
        assert leaky["scrapes"] >= 5
        assert leaky["last_scrape"] is not None
        assert leaky["last_duration_seconds"] > 0
        assert {"heap", "goroutine", "goroutineleak", "mutex", "block"} <= set(leaky["profiles_available"])
        # Live Go 1.27 goroutine profiles hold samples with empty stacks; they are accepted.
        assert leaky["profiles"]["goroutine"]["status"] == "ok", leaky["profiles"]["goroutine"]
        assert "goroutine" in found
        if found.get("goroutine", {}).get("status") in FLAGGED:
            assert found["goroutine"]["top_growers"][0]["function"] == "main.waitForReply"
        leak = found["goroutineleak"]
        assert leak["status"] == "confirmed", leak
        assert leak["top_growers"][0]["function"] == "main.waitForReply"

        # The dump fetched when a series was flagged: wait minutes and stacks kept as evidence.
        dump = leaky["dump"]
        assert dump is not None, leaky
        assert "error" not in dump, dump
        # Any first flag of the target takes it: the heap's or, on a loaded machine, the goroutines' suspicion.
        assert dump["trigger"] in (
            "leak.suspected",
            "leak.confirmed",
            "goroutine_leak.suspected",
            "goroutine_leak.confirmed",
        ), dump["trigger"]
        # Fetched at the first flag, which comes early on a fast machine: only a few goroutines have leaked.
        # Which group is largest at that moment (the leaked receivers or the HTTP server's connection
        # readers) depends on how early the flag came; the leaked group must be there and named.
        # How many have leaked by then depends on the machine's load: one, in a run on a busy machine.
        top = next((g for g in dump["groups"] if g["function"] == "main.waitForReply"), None)
        assert top is not None, dump["groups"]
        assert dump["goroutines"] >= top["count"] >= 1, dump["groups"]
        assert top["function"] == "main.waitForReply"
        assert top["state"] == "chan receive"
        assert top["max_wait_minutes"] >= 0
        assert top["stack"][0].startswith("main.waitForReply ")
        assert "leaky/main.go:" in top["stack"][0]
        assert top["creator"].startswith("main.main.func")
        assert len(dump["groups"]) <= 10
        # Go 1.27 marks them "(leaked)" once a GC has proven it; the newest may not be proven yet when the dump
        # is taken, and at a heap flag that can be all of them. A goroutineleak flag means some were proven.
        assert 0 <= top["leaked"] <= top["count"], top
        if dump["trigger"] == "goroutine_leak.confirmed":
            assert top["leaked"] > 0, top

        # The healthy program: scraped, not flagged.
        healthy = targets["catalog"]
        assert healthy["url"] == f"http://{healthy_at}/debug/pprof"
        assert healthy["profiles"]["heap"]["status"] == "ok"
        healthy_series = {s["kind"]: s for s in body["series"] if s["service"] == "catalog"}
        assert healthy_series["heap"]["status"] in ("ok", "insufficient_data"), api(svc.url, service="catalog")
        assert healthy_series["heap"]["instance"] == "cat-0"
        for kind, item in healthy_series.items():
            assert item["status"] not in FLAGGED, (kind, item)
        assert healthy["dump"] is None
        # One dump for the leaking target however many of its series were flagged (rate limited).
        assert metric(svc.url, "otel_leakproc_scrape_dumps_total", result="ok") == 1

        # The dead address: its error is visible, and nothing of it is tracked.
        ghost = targets["ghost"]
        assert ghost["health"] == "down"
        assert ghost["instance"] == dead_at
        assert "ClientConnectorError" in ghost["last_error"] or "connect" in ghost["last_error"].lower()
        assert ghost["profiles_available"] == []
        assert ghost["last_success"] is None
        assert not [s for s in body["series"] if s["service"] == "ghost"]

        # Own metrics.
        assert metric(svc.url, "otel_leakproc_scrape_up", target=f"static/ghost/{dead_at}") == 0
        assert metric(svc.url, "otel_leakproc_scrape_up", target="static/catalog/cat-0") == 1
        assert metric(svc.url, "otel_leakproc_scrape_targets", source="static") == 3
        assert metric(svc.url, "otel_leakproc_scrape_requests_total", profile="heap", result="ok") >= 10
        assert metric(svc.url, "otel_leakproc_scrape_requests_total", profile="heap", result="connection_error") >= 1
        assert metric(svc.url, "otel_leakproc_profiles_received_total", tenant="default", dialect="ingest") >= 10

        # The API filters targets like series.
        assert [t["service"] for t in api(svc.url, service="catalog")["targets"]] == ["catalog"]
