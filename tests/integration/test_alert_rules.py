"""The shipped Prometheus rules: valid (`promtool check rules`), unit tested (`promtool test rules`), and
consistent with the metric contract and the runbook. Needs promtool (apt: prometheus)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import toolchain
import yaml

from otel_leakproc.exporter.signals import ALL_METRICS

ROOT = Path(__file__).parents[2]
ALERTS = ROOT / "config" / "alerts"
RULES = ALERTS / "leakproc-rules.yml"
PROMTOOL = toolchain.tool("promtool")
OWN_METRICS = {
    "otel_leakproc_profiles_received_total",
    "otel_leakproc_profiles_rejected_total",
    "otel_leakproc_queue_refused_total",
    "otel_leakproc_export_failures_total",
    "otel_leakproc_events_dropped_total",
    "otel_leakproc_series_tracked",
    "otel_leakproc_state_writable",
}


def rules() -> list[dict[str, object]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_promtool_check_rules() -> None:
    result = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", sorted((ALERTS / "tests").glob("*.yml")), ids=lambda p: p.name)
def test_promtool_test_rules(test_file: Path) -> None:
    result = subprocess.run(
        [PROMTOOL, "test", "rules", test_file.name],
        cwd=test_file.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_has_a_unit_test_firing_and_resolving() -> None:
    tested: dict[str, list[bool]] = {}
    for test_file in (ALERTS / "tests").glob("*.yml"):
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                tested.setdefault(check["alertname"], []).append(bool(check.get("exp_alerts")))
    for rule in rules():
        outcomes = tested.get(str(rule["alert"]), [])
        assert any(outcomes), f"{rule['alert']}: no test where it fires"
        assert outcomes.count(False) >= 2, f"{rule['alert']}: needs a not-firing and a resolved check"


def test_every_rule_has_severity_summary_description_and_a_runbook_section() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^## (.+)$", runbook, re.M)}
    for rule in rules():
        labels, annotations = rule["labels"], rule["annotations"]
        assert isinstance(labels, dict)
        assert isinstance(annotations, dict)
        assert labels["severity"] in {"warning", "critical"}
        assert annotations["summary"]
        assert annotations["description"]
        url = str(annotations["runbook_url"])
        assert url.startswith("docs/runbook.md#")
        assert url.split("#", 1)[1] in anchors, url


def test_rules_only_use_documented_metric_names() -> None:
    known = {spec.prometheus for spec in ALL_METRICS} | OWN_METRICS
    text = RULES.read_text()
    used = set(re.findall(r"\b(leakproc_[a-z_]+|otel_leakproc_[a-z_]+)(?=[{\[ ])", text))
    used = {
        name
        for name in used
        if not name.startswith(
            (
                "leakproc_status",
                "leakproc_profile_kind",
                "leakproc_grower",
                "leakproc_tenant",
                "leakproc_goroutine_state",
            )
        )
    }
    assert used <= known, used - known
