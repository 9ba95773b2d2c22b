"""The owner's fenced scripts of `cluster/node.py` against a real redis-server with thousands of series in
one call: Lua cannot unpack 8000 values at once, so a partition with a few thousand changed series must
still checkpoint, publish and unpublish (the stream would otherwise never be trimmed)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from redis_support import redis_server
from test_cluster_leases import node

from otel_leakproc.cluster.partitions import PartitionKeys


def test_fenced_writes_and_deletions_of_thousands_of_series_in_one_call(tmp_path: Path) -> None:
    with redis_server(tmp_path) as server:
        client = server.client()
        a, _ = node(server.url, "a", ttl=5.0)
        asyncio.run(a._take_over(0))
        owned = a.owned[0]
        keys = PartitionKeys("leakproc", 0)
        fields = [f"series-{i}" for i in range(6000)]
        pairs = [x for f in fields for x in (f, b"v" * 10)]
        assert a._fenced(keys=[keys.epoch, keys.reports, keys.stream], args=[owned.epoch, "", *pairs]) == 1
        assert client.hlen(keys.reports) == 6000
        assert a._fenced_unset(keys=[keys.epoch, keys.reports], args=[owned.epoch, *fields[:5999]]) == 1
        assert client.hkeys(keys.reports) == [b"series-5999"]
        # A stale epoch is still refused, writing nothing.
        assert a._fenced(keys=[keys.epoch, keys.reports, keys.stream], args=[owned.epoch - 1, "", *pairs]) == 0
        assert client.hlen(keys.reports) == 1
