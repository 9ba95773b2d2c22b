"""The exporters' own health metrics, in prometheus_client's default registry (rendered by `GET /metrics`).

These describe otel-leakproc itself, never a monitored service; `config/alerts` watches them.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge

__all__ = ["EVENTS_DELIVERED", "EVENTS_DROPPED", "EVENTS_SPOOLED", "EXPORT_FAILURES", "REGISTRY"]

EXPORT_FAILURES = Counter(
    "otel_leakproc_export_failures",
    "OTLP export requests that failed after the SDK's own retries, by signal (metrics, logs).",
    ["signal"],
    registry=REGISTRY,
)
EVENTS_SPOOLED = Gauge(
    "otel_leakproc_events_spooled",
    "Log events waiting for delivery (in the spool) because the collector did not accept them yet.",
    registry=REGISTRY,
)
EVENTS_DROPPED = Counter(
    "otel_leakproc_events_dropped",
    "Log events dropped because the spool was full (the oldest go first).",
    registry=REGISTRY,
)
EVENTS_DELIVERED = Counter(
    "otel_leakproc_events_delivered",
    "Log events the collector accepted.",
    registry=REGISTRY,
)
for _signal in ("metrics", "logs"):
    EXPORT_FAILURES.labels(signal=_signal)  # present at 0 from the start, so rate() and increase() work
