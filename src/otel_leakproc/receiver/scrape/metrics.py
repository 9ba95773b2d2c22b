"""The scrape receiver's own metrics, registered in the service's registry (served on `GET /metrics`).

Per-target series carry `target` (the target id), bounded by `scrape.max_targets`; a removed target's
series are removed too.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Closed set of `result` values of otel_leakproc_scrape_requests_total.
RESULTS = ("ok", "not_found", "http_error", "timeout", "connection_error", "too_large", "rejected", "refused")
DUMP_RESULTS = ("ok", "rate_limited", "failed")


class ScrapeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.targets = Gauge(
            "otel_leakproc_scrape_targets", "Scrape targets currently scraped, by source.", ["source"], registry=r
        )
        self.targets_dropped = Gauge(
            "otel_leakproc_scrape_targets_dropped",
            "Targets found but not scraped because scrape.max_targets was reached.",
            registry=r,
        )
        self.requests = Counter(
            "otel_leakproc_scrape_requests",
            "Profile requests to scrape targets, by profile and result (ok, not_found, http_error, timeout, "
            "connection_error, too_large, rejected, refused).",
            ["profile", "result"],
            registry=r,
        )
        self.duration = Histogram(
            "otel_leakproc_scrape_duration_seconds",
            "Time to scrape every profile of one target once (fetch and ingest).",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.up = Gauge(
            "otel_leakproc_scrape_up", "1 when the target's last scrape had no error, else 0.", ["target"], registry=r
        )
        self.last_scrape = Gauge(
            "otel_leakproc_scrape_last_scrape_timestamp_seconds",
            "Unix time of the target's last scrape.",
            ["target"],
            registry=r,
        )
        self.dumps = Counter(
            "otel_leakproc_scrape_dumps",
            "goroutine debug=2 dumps triggered by a flagged series, by result (ok, rate_limited, failed).",
            ["result"],
            registry=r,
        )
        self.discovery_errors = Counter(
            "otel_leakproc_scrape_discovery_errors",
            "Failed Kubernetes list or watch requests (retried with a backoff).",
            registry=r,
        )
        for result in DUMP_RESULTS:
            self.dumps.labels(result)

    def forget(self, target: str) -> None:
        for gauge in (self.up, self.last_scrape):
            with contextlib.suppress(KeyError):
                gauge.remove(target)
