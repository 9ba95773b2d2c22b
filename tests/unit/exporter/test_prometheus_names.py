"""The tests' OTLP-to-Prometheus name translation (`tests/prometheus_names.py`) against the published examples.

The exporter and self-telemetry tests check the product's Prometheus names with that translation, so it is
checked here against what the specification and the collector publish, not against the product.
"""

from __future__ import annotations

import pytest
from prometheus_names import PER_UNIT_WORDS, UNIT_WORDS, prometheus_name

# The examples of the collector's translator README (opentelemetry-collector-contrib,
# pkg/translator/prometheus/README.md, "List of transformations to convert OpenTelemetry metrics to
# Prometheus metrics"): (OTLP name, unit, OTLP type, Prometheus name).
COLLECTOR_EXAMPLES = [
    ("(lambda).function.executions(#)", "", "gauge", "lambda_function_executions"),
    ("system.filesystem.usage", "By", "gauge", "system_filesystem_usage_bytes"),
    ("system.network.dropped", "{packets}", "gauge", "system_network_dropped"),
    ("system.network.dropped", "packets", "gauge", "system_network_dropped_packets"),
    ("system.memory.utilization", "1", "gauge", "system_memory_utilization_ratio"),
    ("storage.filesystem.utilization", "%", "gauge", "storage_filesystem_utilization_percent"),
    ("astro.light.speed", "m/s", "gauge", "astro_light_speed_meters_per_second"),
    ("crypto.dogecoin.value", "$", "gauge", "crypto_dogecoin_value_dollars"),
    ("system.processes.created", "", "counter", "system_processes_created_total"),
]

# The rules of the specification (opentelemetry-specification,
# specification/compatibility/prometheus_and_openmetrics.md, "OTLP Metric points to Prometheus"), each with
# the example the rule gives, on a name of our own.
SPEC_EXAMPLES = [
    # "ms" to "milliseconds"
    ("http.server.duration", "ms", "histogram", "http_server_duration_milliseconds"),
    # the part of the unit in brackets is dropped: "a count of foo" is unitless
    ("queue.items", "{packet}", "gauge", "queue_items"),
    # "1" to "ratio" (a gauge; the collector leaves counters without it)
    ("cache.hit_fraction", "1", "gauge", "cache_hit_fraction_ratio"),
    ("requests.retried", "1", "counter", "requests_retried_total"),
    # "foo/bar" to "foo_per_bar"
    ("work.speed", "foo/bar", "gauge", "work_speed_foo_per_bar"),
    # no unit suffix when the name has the unit already
    ("process.uptime.seconds", "s", "gauge", "process_uptime_seconds"),
    # the unit suffix comes before the type suffix
    ("process.cpu.time", "s", "counter", "process_cpu_time_seconds_total"),
    # `_total` only once
    ("jobs.done_total", "", "counter", "jobs_done_total"),
    # invalid characters become `_`, repeated `_` become one
    ("odd--name..here", "", "gauge", "odd_name_here"),
]


@pytest.mark.parametrize(("name", "unit", "kind", "expected"), COLLECTOR_EXAMPLES + SPEC_EXAMPLES)
def test_published_examples(name: str, unit: str, kind: str, expected: str) -> None:
    assert prometheus_name(name, unit, kind) == expected


@pytest.mark.parametrize(("unit", "word"), sorted(UNIT_WORDS.items()))
def test_every_unit_of_the_collectors_table(unit: str, word: str) -> None:
    assert prometheus_name("x", unit, "gauge") == f"x_{word}"


@pytest.mark.parametrize(("unit", "word"), sorted(PER_UNIT_WORDS.items()))
def test_every_per_unit_is_singular(unit: str, word: str) -> None:
    assert prometheus_name("x", f"By/{unit}", "gauge") == f"x_bytes_per_{word}"
    assert prometheus_name("x", f"{{item}}/{unit}", "gauge") == f"x_per_{word}"


def test_a_leading_digit_gets_an_underscore() -> None:
    assert prometheus_name("5xx.responses", "", "counter") == "_5xx_responses_total"


def test_an_unknown_type_is_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        prometheus_name("x", "", "sum")
