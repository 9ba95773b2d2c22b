"""The Helm chart, rendered offline for every scenario in ci/ and checked without a cluster.

helm-python-sdk renders and lints (Helm 4 as a library); kubernetes-validate checks every manifest against the
Kubernetes OpenAPI schemas in strict mode (unknown fields fail) for the oldest and a recent supported version.
Prometheus Operator resources have no schema there and are checked structurally, the rule groups against
config/alerts.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import CHART_DIR, ROOT, require_module

SCENARIOS = sorted(p.name.removesuffix("-values.yaml") for p in (CHART_DIR / "ci").glob("*-values.yaml"))
KUBE_VERSIONS = ["1.29.0", "1.34.0"]
RELEASE = "leakproc"
NAMESPACE = "observability"
FULLNAME = "leakproc-otel-leakproc"
ALERT_FILES = sorted((ROOT / "config" / "alerts").glob("*.yml"))
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
STATE_DIR = "/var/lib/otel-leakproc"


def _helm() -> Any:
    helm = require_module("helm_python")
    helm.disable_logging()
    return helm


@pytest.fixture(scope="module")
def chart() -> Any:
    with _helm().Chart.load(CHART_DIR) as loaded:
        yield loaded


def scenario_values(name: str) -> dict[str, Any]:
    values = yaml.safe_load((CHART_DIR / "ci" / f"{name}-values.yaml").read_text(encoding="utf-8")) or {}
    if name == "collector" and not ALERT_FILES:
        # config/alerts has no rule files yet: the PrometheusRule cannot render (test_rule_without_alerts_fails).
        values["prometheusRule"] = {"enabled": False}
    return values


def render(chart: Any, values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every rendered manifest (NOTES.txt left out), as parsed documents."""
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def merged(base: Any, override: Any) -> Any:
    """Helm's values merge: maps merge key by key, anything else replaces, null deletes."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = copy.deepcopy(base)
        for key, value in override.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = merged(out.get(key), value)
        return out
    return copy.deepcopy(override)


def effective_values(name: str) -> dict[str, Any]:
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
    return merged(defaults, scenario_values(name))


@pytest.fixture(scope="module", params=SCENARIOS)
def scenario(request: pytest.FixtureRequest, chart: Any) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(chart, scenario_values(request.param))


def main_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return container


# ---- schema, lint, Kubernetes validation -------------------------------------------------------------


def test_config_schema_matches_the_config_dataclasses() -> None:
    spec = importlib.util.spec_from_file_location("gen_chart_schema", ROOT / "scripts" / "gen_chart_schema.py")
    assert spec is not None
    assert spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    current = (CHART_DIR / "values.schema.json").read_text(encoding="utf-8")
    assert current == gen.updated_schema_text(), "values.schema.json is stale: run python scripts/gen_chart_schema.py"


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", SCENARIOS)
def test_lint_strict(name: str, kube_version: str) -> None:
    report = _helm().lint(
        CHART_DIR, scenario_values(name), strict=True, namespace=NAMESPACE, kube_version=f"v{kube_version}"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == []
    assert problems == []


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_manifest_validates_strictly(scenario: tuple[str, list[dict[str, Any]]], kube_version: str) -> None:
    kv = require_module("kubernetes_validate")
    _, docs = scenario
    checked = 0
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        kv.validate(doc, kube_version, strict=True)
        checked += 1
    assert checked >= 6


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCuont": 2}, "replicaCuont"),
        ({"config": {"server": {"http": {"adress": "0.0.0.0:4040"}}}}, "adress"),
        ({"config": {"procesor": {}}}, "procesor"),
        ({"config": {"state": {"max_series": "many"}}}, "max_series"),
        ({"persistence": {"enabled": True, "sise": "1Gi"}}, "sise"),
        ({"exporter": {"otlp": {"protocol": "http/json"}}}, "protocol"),
        ({"prometheusRule": {"runbookBaseURL": "docs.example.com/"}}, "runbookBaseURL"),
    ],
)
def test_schema_rejects_unknown_keys_and_wrong_types(chart: Any, values: dict[str, Any], message: str) -> None:
    helm = _helm()
    with pytest.raises(helm.HelmError, match=message):
        chart.validate_schema(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"terminationGracePeriodSeconds": 20}, "must exceed config.server.shutdown_timeout_seconds"),
        (
            {"persistence": {"enabled": True}, "autoscaling": {"enabled": True}, "redis": {"url": "redis://r:6379"}},
            "needs a single replica",
        ),
        ({"persistence": {"enabled": True}, "replicaCount": 2, "redis": {"url": "redis://r:6379"}}, "single replica"),
        ({"replicaCount": 2}, "redis"),
        ({"autoscaling": {"enabled": True}}, "redis"),
        ({"config": {"state": {"backend": "redis"}}}, "set redis.url"),
        ({"redis": {"url": "redis://:s3cret@r:6379/0"}}, "put no password in the URL"),
        ({"tls": {"enabled": True}}, "tls.enabled needs"),
        (
            {"tls": {"existingSecret": "s"}, "config": {"server": {"http": {"tls": {"client_ca_file": "/ca"}}}}},
            "mTLS on the HTTP listener",
        ),
        ({"tls": {"clientAuth": True}}, "tls.clientAuth needs tls.enabled"),
    ],
)
def test_invalid_combinations_fail(chart: Any, values: dict[str, Any], message: str) -> None:
    helm = _helm()
    with pytest.raises(helm.HelmError, match=message):
        chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


# ---- what every scenario must keep ---------------------------------------------------------------------


def test_secure_contexts(scenario: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = scenario
    pods = [one(docs, "Deployment")["spec"]["template"]["spec"]]
    pods += [d["spec"] for d in by_kind(docs, "Pod")]  # the helm test pod
    assert len(pods) == 2
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["privileged"] is False
            assert ctx["runAsNonRoot"] is True
            assert ctx["capabilities"] == {"drop": ["ALL"]}
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
            assert container["resources"]["limits"]["memory"]


def test_probes_ports_and_service(scenario: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = scenario
    tls = effective_values(name)["tls"]["enabled"]
    container = main_container(docs)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == 4040
    assert ports["grpc"] == 4317
    scheme = "HTTPS" if tls else "HTTP"
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http", "scheme": scheme}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http", "scheme": scheme}
    assert container["startupProbe"]["httpGet"]["path"] == "/livez"
    assert container["args"][:3] == ["serve", "--config", "/etc/otel-leakproc/leakproc.yaml"]

    service = one(docs, "Service")
    svc_ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert svc_ports["http"] == (4040, "http")
    assert svc_ports["grpc"] == (4317, "grpc")
    assert service["spec"]["selector"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]

    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["state"] == STATE_DIR
    assert mounts["tmp"] == "/tmp"
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    values = effective_values(name)
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > values["config"]["server"]["shutdown_timeout_seconds"]


def test_configmap_equals_values_and_loads(scenario: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = scenario
    values = effective_values(name)
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["leakproc.yaml"])
    expected = copy.deepcopy(values["config"])
    if values["tls"]["enabled"]:
        tls = {"cert_file": "/etc/otel-leakproc/tls/tls.crt", "key_file": "/etc/otel-leakproc/tls/tls.key"}
        grpc_tls = dict(tls)
        if values["tls"]["clientAuth"]:
            grpc_tls["client_ca_file"] = "/etc/otel-leakproc/tls/ca.crt"
        expected = merged(expected, {"server": {"http": {"tls": tls}, "grpc": {"tls": grpc_tls}}})
    redis = values["redis"]
    if redis["url"]:
        shared = {"url": redis["url"], "cluster": redis["cluster"]}
        if redis["password"] or redis["existingSecret"]:
            shared["password_env"] = "LEAKPROC_REDIS_PASSWORD"
        expected = merged(expected, {"state": {"backend": "redis", "redis": shared}})
    assert config == expected

    # The service's own loader accepts the file, with the chart's Secret values in the environment.
    from otel_leakproc.config import settings_from_mapping, substitute_env

    text = one(docs, "ConfigMap")["data"]["leakproc.yaml"]
    env = {k: str(v) for k, v in values["secretEnv"].items()}
    settings = settings_from_mapping(yaml.safe_load(substitute_env(text, env)))
    assert settings.server.http.address == "0.0.0.0:4040"
    assert settings.state.dir == STATE_DIR


def test_config_checksum_follows_the_config(chart: Any) -> None:
    def checksum(values: dict[str, Any]) -> str:
        deployment = one(render(chart, values), "Deployment")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum({}) == checksum({})
    assert checksum({}) != checksum({"config": {"state": {"max_series": 5}}})


def test_helm_test_pod_checks_the_service(scenario: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = scenario
    pod = one(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][-1]
    assert f"{FULLNAME}:4040" in script
    assert "/readyz" in script
    compile(script, "test-connection", "exec")  # the rendered script is valid Python


def test_notes_render(chart: Any) -> None:
    for name in SCENARIOS:
        notes = chart.render(scenario_values(name), name=RELEASE, namespace=NAMESPACE, is_install=True)
        text = next(v for k, v in notes.items() if k.endswith("NOTES.txt"))
        assert f"{FULLNAME}.{NAMESPACE}.svc:4040" in text


def test_notes_say_when_replicas_share_the_series_through_redis(chart: Any) -> None:
    """docs/scaling.md: several replicas need (and say they use) the shared state."""

    def notes(values: dict[str, Any]) -> str:
        out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        return str(next(v for k, v in out.items() if k.endswith("NOTES.txt")))

    assert "shared through Redis" not in notes({})
    assert "shared through Redis (redis://r:6379/0)" in notes({"replicaCount": 3, "redis": {"url": "redis://r:6379/0"}})


def test_redis_turns_the_backend_on_with_the_password_from_a_secret_and_no_affinity(chart: Any) -> None:
    values = {"replicaCount": 3, "redis": {"url": "rediss://r:6380/0", "password": "s3cret", "cluster": True}}
    docs = render(chart, values)
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["leakproc.yaml"])
    assert config["state"]["backend"] == "redis"
    assert config["state"]["redis"] == {
        "url": "rediss://r:6380/0",
        "cluster": True,
        "password_env": "LEAKPROC_REDIS_PASSWORD",
    }
    assert "s3cret" not in json.dumps(one(docs, "ConfigMap"))
    secret = next(d for d in by_kind(docs, "Secret") if d["metadata"]["name"].endswith("-redis"))
    env = {e["name"]: e for e in main_container(docs)["env"]}
    ref = env["LEAKPROC_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == (secret["metadata"]["name"], "password")
    assert one(docs, "Service")["spec"]["sessionAffinity"] == "None"
    assert one(docs, "Deployment")["spec"]["replicas"] == 3
    # The file backend (default) keeps ClientIP affinity and has no Redis settings.
    default = render(chart, {})
    assert one(default, "Service")["spec"]["sessionAffinity"] == "ClientIP"
    assert "redis" not in yaml.safe_load(one(default, "ConfigMap")["data"]["leakproc.yaml"]).get("state", {})


# ---- scenario specifics -------------------------------------------------------------------------------


def test_defaults_scenario(chart: Any) -> None:
    docs = render(chart, scenario_values("defaults"))
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount", "Pod"])
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["state"]
    env = {e["name"] for e in main_container(docs).get("env", [])}
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env


def test_tls_auth_scenario(chart: Any) -> None:
    docs = render(chart, scenario_values("tls-auth"))
    values = scenario_values("tls-auth")
    (secret,) = by_kind(docs, "Secret")  # the TLS Secret is existing; only the env Secret is created
    assert secret["metadata"]["name"] == f"{FULLNAME}-env"
    assert set(secret["data"]) == set(values["secretEnv"])
    container = main_container(docs)
    assert {"secretRef": {"name": f"{FULLNAME}-env"}} in container["envFrom"]
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "otel-leakproc-tls"
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["leakproc.yaml"])
    assert config["server"]["auth"]["credentials"][0]["token"] == "${ACME_TOKEN}"
    assert "client_ca_file" not in config["server"]["http"]["tls"]
    # No secret value leaks into the ConfigMap.
    for secret_value in values["secretEnv"].values():
        assert secret_value not in json.dumps(one(docs, "ConfigMap"))
    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert {p["port"] for p in policy["spec"]["ingress"][0]["ports"]} == {"http", "grpc"}


def test_tls_secret_created_from_values(chart: Any) -> None:
    docs = render(chart, {"tls": {"enabled": True, "cert": "CERT", "key": "KEY", "clientCA": "CA", "clientAuth": True}})
    (secret,) = by_kind(docs, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}


def test_persistence_scenario(chart: Any) -> None:
    docs = render(chart, scenario_values("persistence"))
    pvc = one(docs, "PersistentVolumeClaim")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]


def test_hpa_scenario(chart: Any) -> None:
    docs = render(chart, scenario_values("hpa"))
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}
    assert "replicas" not in one(docs, "Deployment")["spec"]
    assert one(docs, "Service")["spec"]["sessionAffinity"] == "None"  # any replica takes any upload
    env = {e["name"]: e for e in main_container(docs)["env"]}
    ref = env["LEAKPROC_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "redis", "key": "redis-password"}
    assert not [d for d in by_kind(docs, "Secret") if d["metadata"]["name"].endswith("-redis")]
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    # Each series' derived metrics come from its partition's owner only (docs/scaling.md).
    endpoints = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert [(e["port"], e.get("honorLabels", False)) for e in endpoints] == [("http", False), ("metrics", True)]
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in {e["name"] for e in main_container(docs).get("env", [])}


def test_collector_scenario(chart: Any) -> None:
    docs = render(chart, scenario_values("collector"))
    container = main_container(docs)
    env = {e["name"]: e for e in container["env"]}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://otel-collector.observability.svc.cluster.local:4317"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"]["value"] == "grpc"
    headers = env["OTEL_EXPORTER_OTLP_HEADERS"]["valueFrom"]["secretKeyRef"]
    assert headers == {"name": "collector-auth", "key": "headers"}
    assert {"name": "metrics", "containerPort": 9464, "protocol": "TCP"} in container["ports"]
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    endpoints = [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]]
    assert endpoints == [("http", "/metrics"), ("metrics", "/metrics")]
    assert [e.get("honorLabels", False) for e in monitor["spec"]["endpoints"]] == [False, True]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service_labels = one(docs, "Service")["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()


def test_prometheus_rule_equals_config_alerts(chart: Any) -> None:
    assert ALERT_FILES, "config/alerts/*.yml: the shipped rules are missing"
    docs = render(chart, {"prometheusRule": {"enabled": True, "labels": {"release": "prom"}}})
    rule = one(docs, "PrometheusRule")
    expected = [g for f in ALERT_FILES for g in yaml.safe_load(f.read_text(encoding="utf-8"))["groups"]]
    assert rule["spec"]["groups"] == expected
    assert rule["metadata"]["labels"]["release"] == "prom"


@pytest.mark.parametrize("base", ["https://github.com/acme/otel-leakproc/blob/v0.1.0/", "https://docs.example.com"])
def test_runbook_base_url_makes_runbook_urls_absolute(chart: Any, base: str) -> None:
    docs = render(chart, {"prometheusRule": {"enabled": True, "runbookBaseURL": base}})
    rules = [r for g in one(docs, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    shipped = [
        r for f in ALERT_FILES for g in yaml.safe_load(f.read_text(encoding="utf-8"))["groups"] for r in g["rules"]
    ]
    assert len(rules) == len(shipped) >= 10
    for rule, original in zip(rules, shipped, strict=True):
        relative = original["annotations"]["runbook_url"]
        assert relative.startswith("docs/runbook.md#")
        assert rule["annotations"]["runbook_url"] == base.rstrip("/") + "/" + relative
        # Nothing else changes.
        assert {k: v for k, v in rule["annotations"].items() if k != "runbook_url"} == {
            k: v for k, v in original["annotations"].items() if k != "runbook_url"
        }
        assert rule["expr"] == original["expr"]


def doc_values_snippets() -> list[tuple[str, dict[str, Any]]]:
    """The YAML blocks of docs/ whose top-level keys are all chart values (tests/unit/test_docs_snippets.py
    finds the blocks)."""
    spec = importlib.util.spec_from_file_location("docs_snippets", ROOT / "tests" / "unit" / "test_docs_snippets.py")
    assert spec is not None
    assert spec.loader is not None
    snippets = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = snippets  # its dataclass resolves annotations through sys.modules
    spec.loader.exec_module(snippets)
    keys = set(yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8")))
    return [
        (block.where, doc)
        for block, doc in snippets.yaml_docs()
        if isinstance(doc, dict) and set(doc) <= keys and block.path.parent.name == "docs"
    ]


def test_documented_values_snippets_render(chart: Any) -> None:
    """Every values snippet in docs/ passes the schema and renders (with the secrets it references)."""
    found = doc_values_snippets()
    assert {where.split(":")[0] for where, _ in found} >= {"docs/deploy.md", "docs/scrape.md"}
    assert len(found) >= 5
    for where, values in found:
        try:
            docs = render(chart, values)
        except _helm().HelmError as exc:
            pytest.fail(f"{where}: {exc}")
        assert one(docs, "Deployment"), where


def test_packaged_chart_carries_the_rules(tmp_path: Path) -> None:
    """`helm package` resolves the files/config link: the archive renders the same rules on its own."""
    helm = _helm()
    archive = Path(helm.package(CHART_DIR, destination=tmp_path))
    with helm.Chart.load_archive(archive.read_bytes()) as packaged:
        files = sorted(f["name"] for f in packaged.files if f["name"].startswith("files/"))
        expected_files = ["files/config/leakproc.yaml"] + [f"files/config/alerts/{f.name}" for f in ALERT_FILES]
        assert files == sorted(expected_files)  # the rule tests under alerts/tests/ are left out (.helmignore)
        rule = one(render(packaged, {"prometheusRule": {"enabled": True}}), "PrometheusRule")
        expected = [g for f in ALERT_FILES for g in yaml.safe_load(f.read_text(encoding="utf-8"))["groups"]]
        assert rule["spec"]["groups"] == expected


def test_chart_links_config_folder() -> None:
    link = CHART_DIR / "files" / "config"
    assert link.is_symlink()
    assert link.resolve() == (ROOT / "config").resolve()
    assert Path(os.readlink(link)) == Path("../../../../config")
