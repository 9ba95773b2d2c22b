"""Kubernetes pod discovery: the official client against a fake API server answering list and watch with the
recorded objects of tests/testdata/k8s/ (the only fake, at the API boundary), the real service scraping the
discovered pods, which are real Go programs on loopback.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_support import FAST_PROCESSOR, http, make_settings, metric, running_service
from test_scrape_support import (
    build_go,
    fake_kubernetes,
    go_program,
    pointed_at,
    recorded_events,
    recorded_pods,
)

pytestmark = pytest.mark.gotool


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = build_go("healthy", tmp_path_factory.mktemp("go"))
    with go_program(binary) as address:
        yield address


def targets(url: str) -> dict[str, dict[str, Any]]:
    reply = http("GET", f"{url}/api/v1/series?timeline=0")
    assert reply.status == 200, reply.body
    return {t["id"]: t for t in reply.json()["targets"]}


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def settings_for(state: Path, kubeconfig: Path, **kube: Any) -> Any:
    return make_settings(
        state,
        processor=FAST_PROCESSOR,
        scrape={
            "enabled": True,
            "interval_seconds": 0.5,
            "timeout_seconds": 2,
            "dump_on_suspect": {"enabled": False},
            "kubernetes": {"enabled": True, "kubeconfig": str(kubeconfig), "watch_timeout_seconds": 10, **kube},
        },
    )


def test_watch_events_add_change_and_remove_targets(healthy: str, tmp_path: Path) -> None:
    listed = recorded_pods()
    events = recorded_events()
    # Every recorded pod IP points at the healthy Go program on loopback, so each target is really scraped.
    pods = [pointed_at(p, healthy) for p in listed["items"]]
    with fake_kubernetes(pods, int(listed["metadata"]["resourceVersion"])) as api:
        settings = settings_for(tmp_path / "state", api.kubeconfig(tmp_path / "kubeconfig"))
        with running_service(settings) as svc:
            # The list: the two annotated running pods; redis (prometheus.io only) and the Pending job are not.
            wait_for(
                lambda: set(targets(svc.url)) == {"k8s/shop/checkout-7d9f8b6c5d-x2x8q", "k8s/shop/inventory-0"}, "list"
            )
            wait_for(lambda: api.watch_count() >= 1, "a watch")
            found = targets(svc.url)
            checkout = found["k8s/shop/checkout-7d9f8b6c5d-x2x8q"]
            assert checkout["source"] == "kubernetes"
            assert checkout["service"] == "checkout"
            assert checkout["instance"] == "checkout-7d9f8b6c5d-x2x8q"
            assert checkout["url"] == f"http://{healthy}/debug/pprof"
            assert checkout["labels"]["k8s.deployment.name"] == "checkout"
            assert checkout["labels"]["k8s.node.name"] == "kind-worker"
            inventory = found["k8s/shop/inventory-0"]
            assert inventory["url"] == f"http://{healthy}/internal/pprof"  # path annotation
            assert inventory["service"] == "inventory"

            # Scraped through the ingest core: the series identity and resource come from the pod.
            wait_for(lambda: targets(svc.url)["k8s/shop/checkout-7d9f8b6c5d-x2x8q"]["scrapes"] >= 2, "scrapes")
            checkout = targets(svc.url)["k8s/shop/checkout-7d9f8b6c5d-x2x8q"]
            assert checkout["profiles"]["heap"]["status"] == "ok", checkout
            assert checkout["health"] in ("up", "down")  # goroutine may be rejected (empty stack, Go 1.27)
            reply = http("GET", f"{svc.url}/api/v1/series?timeline=0&service=checkout&kind=heap")
            [heap] = reply.json()["series"]
            assert heap["instance"] == "checkout-7d9f8b6c5d-x2x8q"
            assert heap["resource"]["service.name"] == "checkout"
            assert heap["resource"]["service.instance.id"] == "checkout-7d9f8b6c5d-x2x8q"
            assert heap["resource"]["k8s.namespace.name"] == "shop"
            assert heap["resource"]["k8s.pod.name"] == "checkout-7d9f8b6c5d-x2x8q"
            assert heap["resource"]["k8s.node.name"] == "kind-worker"
            assert heap["resource"]["k8s.deployment.name"] == "checkout"
            assert heap["resource"]["k8s.pod.label.team"] == "payments"
            # The healthy program serves no /internal/pprof: every profile of inventory-0 is a 404, absent.
            wait_for(lambda: targets(svc.url)["k8s/shop/inventory-0"]["scrapes"] >= 1, "inventory scrape")
            inventory = targets(svc.url)["k8s/shop/inventory-0"]
            assert inventory["profiles"] == {
                "heap": {"status": "absent", "error": inventory["profiles"]["heap"]["error"], "last_success": None},
                "goroutine": {
                    "status": "absent",
                    "error": inventory["profiles"]["goroutine"]["error"],
                    "last_success": None,
                },
            }
            assert "404" in inventory["profiles"]["heap"]["error"]

            # ADDED: a new checkout replica.
            api.push({**events[0], "object": pointed_at(events[0]["object"], healthy)})
            wait_for(lambda: "k8s/shop/checkout-7d9f8b6c5d-k7mzp" in targets(svc.url), "ADDED")
            assert targets(svc.url)["k8s/shop/checkout-7d9f8b6c5d-k7mzp"]["labels"]["k8s.node.name"] == "kind-worker2"
            # MODIFIED: the Pending job pod is now running: its service annotation names it.
            api.push({**events[1], "object": pointed_at(events[1]["object"], healthy)})
            wait_for(lambda: "k8s/jobs/report-builder-29123840-qk7wd" in targets(svc.url), "MODIFIED to Running")
            job = targets(svc.url)["k8s/jobs/report-builder-29123840-qk7wd"]
            assert job["service"] == "reports"
            assert job["labels"]["k8s.job.name"] == "report-builder-29123840"
            # MODIFIED: scrape annotation turned to "false": the target goes away.
            api.push({**events[2], "object": pointed_at(events[2]["object"], healthy)})
            wait_for(lambda: "k8s/shop/checkout-7d9f8b6c5d-x2x8q" not in targets(svc.url), "annotation off")
            # BOOKMARK, then DELETED.
            api.push(events[3])
            api.push({**events[4], "object": pointed_at(events[4]["object"], healthy)})
            wait_for(lambda: "k8s/shop/inventory-0" not in targets(svc.url), "DELETED")
            assert set(targets(svc.url)) == {
                "k8s/shop/checkout-7d9f8b6c5d-k7mzp",
                "k8s/jobs/report-builder-29123840-qk7wd",
            }
            assert metric(svc.url, "otel_leakproc_scrape_targets", source="kubernetes") == 2
            assert metric(svc.url, "otel_leakproc_scrape_up", target="k8s/shop/inventory-0") == 0.0

            # 410 Gone on the watch: the client lists again and keeps the same targets.
            lists_before = sum(1 for _, q in api.requests if q.get("watch") != ["true"])
            api.expire()
            wait_for(lambda: sum(1 for _, q in api.requests if q.get("watch") != ["true"]) > lists_before, "relist")
            assert set(targets(svc.url)) == {
                "k8s/shop/checkout-7d9f8b6c5d-k7mzp",
                "k8s/jobs/report-builder-29123840-qk7wd",
            }
        # Cluster-wide list and watch, with the official client's request shape.
        paths = {path for path, _ in api.requests}
        assert paths == {"/api/v1/pods"}
        watch = next(q for _, q in api.requests if q.get("watch") == ["true"])
        assert watch["resourceVersion"] == [listed["metadata"]["resourceVersion"]]
        assert watch["allowWatchBookmarks"] == ["true"]
        assert watch["timeoutSeconds"] == ["10"]


def test_namespaces_selector_and_max_targets(healthy: str, tmp_path: Path) -> None:
    listed = recorded_pods()
    pods = [pointed_at(p, healthy) for p in listed["items"]]
    extra = copy.deepcopy(pods[0])
    extra["metadata"]["name"] = "checkout-7d9f8b6c5d-zzzzz"
    extra["metadata"]["labels"]["team"] = "other"
    pods.append(extra)
    with fake_kubernetes(pods, int(listed["metadata"]["resourceVersion"])) as api:
        settings = settings_for(
            tmp_path / "state",
            api.kubeconfig(tmp_path / "kubeconfig"),
            namespaces=["shop"],
            label_selector="team=payments",
        )
        with running_service(settings) as svc:
            wait_for(lambda: set(targets(svc.url)) == {"k8s/shop/checkout-7d9f8b6c5d-x2x8q"}, "selected pods")
        assert {path for path, _ in api.requests} == {"/api/v1/namespaces/shop/pods"}
        assert all(q["labelSelector"] == ["team=payments"] for _, q in api.requests)

    with fake_kubernetes(pods, int(listed["metadata"]["resourceVersion"])) as api:
        settings = make_settings(
            tmp_path / "state2",
            scrape={
                "enabled": True,
                "max_targets": 1,
                "kubernetes": {"enabled": True, "kubeconfig": str(api.kubeconfig(tmp_path / "kubeconfig2"))},
            },
        )
        with running_service(settings) as svc:
            wait_for(lambda: len(targets(svc.url)) == 1, "one target")
            wait_for(lambda: metric(svc.url, "otel_leakproc_scrape_targets_dropped") == 2, "dropped gauge")


def test_unreachable_api_is_retried_not_fatal(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    with fake_kubernetes([], 1) as api:
        api.kubeconfig(kubeconfig)
    # The server is gone: the service still starts, counts the failed requests and serves no targets.
    settings = make_settings(
        tmp_path / "state",
        scrape={"enabled": True, "kubernetes": {"enabled": True, "kubeconfig": str(kubeconfig)}},
    )
    with running_service(settings) as svc:
        wait_for(lambda: metric(svc.url, "otel_leakproc_scrape_discovery_errors_total") >= 1, "discovery error")
        assert targets(svc.url) == {}
        assert http("GET", f"{svc.url}/readyz").status == 200
