"""Pods of the recorded Kubernetes API responses become targets with the right URL, identity and resource."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from otel_leakproc.receiver.scrape.config import KubernetesDiscoveryConfig, ScrapeConfig, StaticTarget
from otel_leakproc.receiver.scrape.targets import pod_target, static_target

K8S = Path(__file__).resolve().parents[3] / "testdata" / "k8s"
KUBE = KubernetesDiscoveryConfig(enabled=True)
SCRAPE = ScrapeConfig(enabled=True)


def pods() -> dict[str, dict[str, Any]]:
    items = json.loads((K8S / "pods-list.json").read_text())["items"]
    return {p["metadata"]["name"]: p for p in items}


def events() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (K8S / "pods-watch.jsonl").read_text().splitlines()]


def test_deployment_pod() -> None:
    target = pod_target(pods()["checkout-7d9f8b6c5d-x2x8q"], KUBE, SCRAPE)
    assert target is not None
    assert target.id == "k8s/shop/checkout-7d9f8b6c5d-x2x8q"
    assert target.source == "kubernetes"
    assert target.base_url == "http://10.244.1.17:6060/debug/pprof"
    assert target.service == "checkout"  # app.kubernetes.io/name
    assert target.instance == "checkout-7d9f8b6c5d-x2x8q"
    assert target.profiles == SCRAPE.profiles
    labels = dict(target.labels)
    assert labels["k8s.namespace.name"] == "shop"
    assert labels["k8s.pod.name"] == "checkout-7d9f8b6c5d-x2x8q"
    assert labels["k8s.pod.uid"] == "6f1c2b9e-3d4a-4c1e-9a7b-2f8e5d6c1a01"
    assert labels["k8s.node.name"] == "kind-worker"
    assert labels["k8s.deployment.name"] == "checkout"
    assert labels["k8s.replicaset.name"] == "checkout-7d9f8b6c5d"
    assert labels["k8s.pod.label.app.kubernetes.io_name"] == "checkout"
    assert labels["k8s.pod.label.team"] == "payments"
    assert target.ingest_name().startswith(
        "checkout{service.instance.id=checkout-7d9f8b6c5d-x2x8q,k8s.namespace.name=shop,"
    )


def test_the_pods_version_label_becomes_service_version() -> None:
    pod = pods()["inventory-0"]
    assert "service.version" not in dict(pod_target(pod, KUBE, SCRAPE).labels)  # type: ignore[union-attr]
    pod["metadata"]["labels"] = {**pod["metadata"].get("labels", {}), "app.kubernetes.io/version": "1.4.2"}
    target = pod_target(pod, KUBE, SCRAPE)
    assert target is not None
    assert dict(target.labels)["service.version"] == "1.4.2"
    assert ",service.version=1.4.2," in target.ingest_name()


def test_statefulset_pod_annotations_override_path_port_and_profiles() -> None:
    target = pod_target(pods()["inventory-0"], KUBE, SCRAPE)
    assert target is not None
    assert target.base_url == "http://10.244.2.9:6061/internal/pprof"
    assert target.profiles == ("heap", "goroutine")
    assert target.service == "inventory"  # no app.kubernetes.io/name: the StatefulSet
    labels = dict(target.labels)
    assert labels["k8s.statefulset.name"] == "inventory"
    assert "k8s.deployment.name" not in labels


@pytest.mark.parametrize("name", ["redis-5c8f9b7d4-h2kqz", "report-builder-29123840-qk7wd"])
def test_not_annotated_or_not_running_is_not_a_target(name: str) -> None:
    # redis has only prometheus.io annotations; the report builder is still Pending (no pod IP).
    assert pod_target(pods()[name], KUBE, SCRAPE) is None


def test_watch_events_change_eligibility() -> None:
    by_type = [(e["type"], e["object"]) for e in events()]
    added = pod_target(by_type[0][1], KUBE, SCRAPE)
    assert added is not None
    assert added.base_url == "http://10.244.2.14:6060/debug/pprof"
    running = pod_target(by_type[1][1], KUBE, SCRAPE)
    assert running is not None
    assert running.service == "reports"  # the service annotation wins
    assert dict(running.labels)["k8s.job.name"] == "report-builder-29123840"
    assert pod_target(by_type[2][1], KUBE, SCRAPE) is None  # scrape: "false"
    assert pod_target(by_type[4][1], KUBE, SCRAPE) is None  # being deleted


def test_config_port_path_prefix_and_named_port() -> None:
    pod = pods()["checkout-7d9f8b6c5d-x2x8q"]
    del pod["metadata"]["annotations"]["otel-leakproc.io/port"]
    named = pod_target(pod, KUBE, SCRAPE)
    assert named is not None
    assert named.base_url == "http://10.244.1.17:6060/debug/pprof"  # the container port named pprof
    custom = KubernetesDiscoveryConfig(enabled=True, port=7070, path="/pprof/", scheme="https", profiles=("heap",))
    target = pod_target(pod, custom, SCRAPE)
    assert target is not None
    assert target.base_url == "https://10.244.1.17:7070/pprof"
    assert target.profiles == ("heap",)
    prometheus_style = KubernetesDiscoveryConfig(enabled=True, annotation_prefix="prometheus.io/")
    assert pod_target(pods()["redis-5c8f9b7d4-h2kqz"], prometheus_style, SCRAPE) is not None


def test_bad_port_annotation_skips_the_pod() -> None:
    pod = pods()["checkout-7d9f8b6c5d-x2x8q"]
    pod["metadata"]["annotations"]["otel-leakproc.io/port"] = "http"
    assert pod_target(pod, KUBE, SCRAPE) is None


def test_static_target() -> None:
    spec = StaticTarget(service="checkout", address="127.0.0.1:6060", labels={"region": "eu-1"})
    target = static_target(spec, SCRAPE)
    assert target.base_url == "http://127.0.0.1:6060/debug/pprof"
    assert target.instance == "127.0.0.1:6060"
    assert target.id == "static/checkout/127.0.0.1:6060"
    assert target.ingest_name() == "checkout{service.instance.id=127.0.0.1:6060,region=eu-1}"
    spec = StaticTarget(service="api", url="https://api.internal:8443/pprof/", instance="api-1", profiles=("heap",))
    target = static_target(spec, SCRAPE)
    assert target.base_url == "https://api.internal:8443/pprof"
    assert target.profiles == ("heap",)
