"""One `ClusterNode` in this process over a real Redis (the lease, fencing and quota tests run two of them
side by side): its own pipeline and table, a recording exporter subscribed to it."""

from __future__ import annotations

from typing import Any

from serve_support import RecordingExporter, make_settings

from otel_leakproc.cluster.connection import connect
from otel_leakproc.cluster.node import ClusterNode, ClusterStore
from otel_leakproc.processor.pipeline import Pipeline
from otel_leakproc.processor.state import SeriesTable
from otel_leakproc.query.series import series_object
from otel_leakproc.telemetry import Telemetry


def cluster_node(
    url: str,
    name: str,
    *,
    ttl: float,
    cluster: bool = False,
    state: dict[str, Any] | None = None,
    processor: dict[str, Any] | None = None,
) -> tuple[ClusterNode, RecordingExporter, Pipeline]:
    """A node named `name` with 4 partitions and leases of `ttl` seconds, partitions initialised."""
    redis_config = {"url": url, "partitions": 4, "lease_ttl_seconds": ttl, "replica_id": name, "cluster": cluster}
    settings = make_settings(
        state={"backend": "redis", "redis": redis_config, **(state or {})}, processor=processor or {}
    )
    store = ClusterStore(connect(settings.state.redis), settings.state.redis.url)
    exporter = RecordingExporter()
    pipeline = Pipeline(SeriesTable(settings.processor, 100), Telemetry())
    pipeline.subscribe(exporter)
    node = ClusterNode(settings, store, pipeline, series_object)
    node._init_partitions()
    return node, exporter, pipeline
