"""The scrape receiver: pull profiles from `net/http/pprof` targets (static or Kubernetes pods) into the
same ingest core as uploads. See docs/scrape.md."""

from otel_leakproc.receiver.scrape.config import (
    DumpOnSuspectConfig,
    KubernetesDiscoveryConfig,
    ScrapeConfig,
    StaticTarget,
)
from otel_leakproc.receiver.scrape.manager import ScrapeManager
from otel_leakproc.receiver.scrape.targets import Target, pod_target, static_target

__all__ = [
    "DumpOnSuspectConfig",
    "KubernetesDiscoveryConfig",
    "ScrapeConfig",
    "ScrapeManager",
    "StaticTarget",
    "Target",
    "pod_target",
    "static_target",
]
