"""The cluster-wide tenant limits of `cluster/quotas.py` against a real redis-server (and a 3-node Redis
Cluster): the series registry holds a tenant to its quota whichever replica registers, popping the tenant's
least recently updated series; the token bucket gives a tenant its upload rate once for all replicas."""

from __future__ import annotations

import asyncio
import itertools
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis.cluster
from cluster_support import cluster_node
from redis_support import redis_cluster, redis_server
from serve_support import STEADY_LEAK, RecordingExporter

from otel_leakproc.cluster.connection import connect
from otel_leakproc.cluster.node import ClusterNode
from otel_leakproc.cluster.partitions import PartitionKeys, partition_of
from otel_leakproc.cluster.quotas import (
    SeriesQuota,
    SharedRateLimiter,
    TenantChanges,
    bucket_key,
    from_member,
    member,
    registry_key,
    score_of,
)
from otel_leakproc.errors import RefusedError
from otel_leakproc.model import ProfileKind, SeriesKey
from otel_leakproc.processor.config import RedisConfig
from otel_leakproc.processor.pipeline import Pipeline
from otel_leakproc.receiver.config import RateLimitConfig
from otel_leakproc.receiver.decode import DecodeLimits, decode_profile
from otel_leakproc.state.records import point_frame


def key(tenant: str, n: int) -> SeriesKey:
    return SeriesKey(tenant, f"svc-{n}", "pod{1}", ProfileKind.HEAP)


CLOCK = itertools.count(1_700_000_000_000)  # stream ids' milliseconds: appended in call order


def new(*keys: SeriesKey) -> dict[str, TenantChanges]:
    out: dict[str, TenantChanges] = {}
    for k in keys:
        out.setdefault(k.tenant, TenantChanges(set(), {}, {})).fresh[k] = score_of(f"{next(CLOCK)}-0".encode())
    return out


def touch(*keys: SeriesKey) -> dict[str, TenantChanges]:
    out: dict[str, TenantChanges] = {}
    for k in keys:
        out.setdefault(k.tenant, TenantChanges(set(), {}, {})).touched[k] = score_of(f"{next(CLOCK)}-0".encode())
    return out


def test_a_tenant_is_held_to_its_quota_across_replicas_and_its_least_recently_updated_series_pays(
    tmp_path: Path,
) -> None:
    with redis_server(tmp_path) as server:
        # Two replicas' views of the same registries.
        a = SeriesQuota(connect(RedisConfig(url=server.url)), "leakproc", 3, cluster=False)
        b = SeriesQuota(connect(RedisConfig(url=server.url)), "leakproc", 3, cluster=False)
        assert a.sync(new(key("flood", 0), key("flood", 1))).victims == []
        assert b.sync(new(key("flood", 2), key("quiet", 0))).victims == []
        assert a.count("flood") == 3
        # Series 0 is updated on replica a: series 1 is now the least recently updated of the tenant.
        assert a.sync(touch(key("flood", 0))).missing == []
        result = b.sync(new(key("flood", 3)))
        assert result.victims == [key("flood", 1)]
        assert a.count("flood") == b.count("flood") == 3
        # A replayed registration (a takeover re-reads the stream) counts nothing twice and pops nothing.
        assert a.sync(new(key("flood", 3))).victims == []
        assert a.count("flood") == 3
        # A registration that reaches Redis late (its owner polled later) is ordered by when its profile
        # was appended: older than every other series, it is the one popped.
        late = {"flood": TenantChanges(set(), {key("flood", 4): score_of(b"1600000000000-0")}, {})}
        assert a.sync(late).victims == [key("flood", 4)]
        # An update older than the registered score (applied late) does not make a series younger.
        stale = {"flood": TenantChanges(set(), {}, {key("flood", 2): score_of(b"1600000000000-3")})}
        assert a.sync(stale).missing == []
        # More new series in one call than the quota: the earliest of them go first.
        result = a.sync(new(*(key("flood", n) for n in range(10, 15))))
        assert len(result.victims) == 5
        assert set(result.victims) == {key("flood", n) for n in (0, 2, 3)} | {key("flood", n) for n in (10, 11)}
        # A popped series that its owner still updated (the eviction record was lost) is reported missing.
        assert a.sync(touch(key("flood", 0))).missing == [key("flood", 0)]
        assert a.count("flood") == 3
        # A series that left its owner's table leaves the registry, making room without a victim.
        gone = {"flood": TenantChanges({key("flood", 12)}, {}, {})}
        assert a.sync(gone).victims == []
        assert a.count("flood") == 2
        assert b.sync(new(key("flood", 20))).victims == []
        # The other tenant was never touched.
        assert a.count("quiet") == 1
        client = server.client()
        members = client.zrange(registry_key("leakproc", "flood"), 0, -1)
        assert [from_member(m) for m in members] == [key("flood", 13), key("flood", 14), key("flood", 20)]
        assert from_member(member(key("x{y}", 1))) == key("x{y}", 1)
        assert score_of(b"1700000000123-7") == 1700000000123007
        assert score_of(b"1700000000123-5000") == 1700000000123999


def test_the_rate_limit_is_one_bucket_per_tenant_for_the_whole_cluster(tmp_path: Path) -> None:
    config = RateLimitConfig(uploads_per_second=2.0, burst=4)
    with redis_server(tmp_path) as server:
        replicas = [SharedRateLimiter(connect(RedisConfig(url=server.url)), "leakproc", config) for _ in range(3)]
        assert all(r.enabled for r in replicas)
        # The burst is shared: four uploads in all, wherever they land; the fifth waits about 1/rate.
        for i in range(4):
            replicas[i % 3].admit("flood")
        with pytest.raises(RefusedError) as refused:
            replicas[1].admit("flood")
        assert 0 < refused.value.retry_after <= 0.5
        assert "2 uploads/s" in str(refused.value)
        # Refused again at once by the same replica without asking Redis: the bucket cannot refill sooner.
        calls = replicas[1].calls
        with pytest.raises(RefusedError) as again:
            replicas[1].admit("flood")
        assert replicas[1].calls == calls
        assert 0 < again.value.retry_after <= refused.value.retry_after
        replicas[2].admit("quiet")  # another tenant has its own bucket
        time.sleep(refused.value.retry_after + 0.05)
        replicas[0].admit("flood")
        with pytest.raises(RefusedError):
            replicas[2].admit("flood")
        # The bucket expires once it would be full again: no key is left per idle tenant.
        ttl = server.client().pttl(bucket_key("leakproc", "flood"))
        assert 0 < ttl <= 3000
        # Off (the default): no Redis call at all.
        off = SharedRateLimiter(connect(RedisConfig(url=server.url)), "leakproc", RateLimitConfig())
        assert not off.enabled
        for _ in range(100):
            off.admit("flood")


def test_a_redis_that_cannot_answer_lets_the_upload_through_to_the_append(tmp_path: Path) -> None:
    config = RateLimitConfig(uploads_per_second=1.0, burst=1)
    with redis_server(tmp_path) as server:
        limiter = SharedRateLimiter(connect(RedisConfig(url=server.url, timeout_seconds=0.5)), "leakproc", config)
        limiter.admit("flood")
        server.stop()
        limiter.admit("flood")  # not a 429: the append that follows refuses it with 503


def test_the_limits_work_on_a_redis_cluster(tmp_path: Path) -> None:
    with redis_cluster(tmp_path) as nodes:
        config = RedisConfig(url=nodes[0].url, cluster=True)
        quota = SeriesQuota(connect(config), "leakproc", 2, cluster=True)
        changes = new(key("flood", 0), key("flood", 1), key("quiet", 0), key("other", 0))
        assert quota.sync(changes).calls == 3
        assert quota.sync(new(key("flood", 2))).victims == [key("flood", 0)]
        assert quota.count("flood") == 2
        limiter = SharedRateLimiter(connect(config), "leakproc", RateLimitConfig(uploads_per_second=1.0, burst=2))
        limiter.admit("flood")
        limiter.admit("flood")
        with pytest.raises(RefusedError):
            limiter.admit("flood")
        # Each tenant's keys share one slot.
        client = connect(config)
        assert isinstance(client, redis.cluster.RedisCluster)
        slot = client.keyslot(registry_key("leakproc", "flood"))  # type: ignore[no-untyped-call]
        assert client.keyslot(bucket_key("leakproc", "flood")) == slot  # type: ignore[no-untyped-call]


def quota_node(url: str, name: str, quota: int, cluster: bool) -> tuple[ClusterNode, RecordingExporter, Pipeline]:
    return cluster_node(url, name, ttl=5.0, cluster=cluster, state={"max_series_per_tenant": quota})


@pytest.mark.parametrize("cluster", [False, True], ids=["redis", "redis-cluster"])
def test_the_owner_of_the_stalest_series_evicts_it_and_a_takeover_replays_the_eviction(
    tmp_path: Path, cluster: bool
) -> None:
    summary = decode_profile(next(iter(sorted(STEADY_LEAK.glob("*.pb.gz")))).read_bytes(), DecodeLimits())
    services = [f"svc-{i}" for i in range(40)]
    old = next(s for s in services if partition_of("t", s, "pod", 4) == 0)
    new = next(s for s in services if partition_of("t", s, "pod", 4) == 1)
    old_key = SeriesKey("t", old, "pod", summary.kind)
    new_key = SeriesKey("t", new, "pod", summary.kind)
    with ExitStack() as stack:
        if cluster:
            url = stack.enter_context(redis_cluster(tmp_path))[0].url
            client = connect(RedisConfig(url=url, cluster=True))
        else:
            server = stack.enter_context(redis_server(tmp_path))
            url, client = server.url, server.client()
        a, exported_a, pipeline_a = quota_node(url, "a", 1, cluster)
        b, _, pipeline_b = quota_node(url, "b", 1, cluster)
        streams = [PartitionKeys("leakproc", n).stream for n in range(4)]

        async def scenario() -> None:
            await a._take_over(0)
            await b._take_over(1)
            client.xadd(streams[0], {b"r": point_frame(0, old_key, {}, summary)})
            await a._poll_tick()
            assert a.owned[0].table.get(old_key) is not None
            # b's new series takes the tenant past its quota of 1: the series a holds is the stalest.
            client.xadd(streams[1], {b"r": point_frame(0, new_key, {}, summary)})
            await b._poll_tick()
            assert b.quota_victims == 1
            await a._poll_tick()  # a reads the eviction record b appended to partition 0's stream
            assert a.owned[0].table.get(old_key) is None
            assert old_key in exported_a.forgotten
            # a dies before any checkpoint; b takes partition 0 over and replays its stream: the series'
            # point and then its eviction, so it does not come back, and nothing more is popped.
            a.owned.clear()
            client.delete(PartitionKeys("leakproc", 0).lease)
            await b._take_over(0)
            await b._poll_tick()
            assert b.owned[0].table.get(old_key) is None
            assert b.owned[1].table.get(new_key) is not None
            await b._publish_tick()

        asyncio.run(scenario())
        assert [from_member(m) for m in client.zrange(registry_key("leakproc", "t"), 0, -1)] == [new_key]
        assert b.quota_victims == 1
        for pipeline in (pipeline_a, pipeline_b):  # counted where it was tracked: on a, then again on replay
            registry = pipeline.telemetry.registry
            assert registry.get_sample_value("otel_leakproc_tenant_series_evicted_total", {"tenant": "t"}) == 1


def test_a_large_sync_is_split_into_calls_of_at_most_a_thousand_series(tmp_path: Path) -> None:
    with redis_server(tmp_path) as server:
        quota = SeriesQuota(connect(RedisConfig(url=server.url)), "leakproc", 2000, cluster=False)
        first = new(*(key("big", n) for n in range(2500)))
        result = quota.sync(first)
        assert result.calls == 3
        assert len(result.victims) == 500  # the 500 oldest of the 2500 new series, in order
        assert result.victims == [key("big", n) for n in range(500)]
        assert quota.count("big") == 2000
        gone = {"big": TenantChanges({key("big", n) for n in range(500, 1700)}, {}, {})}
        assert quota.sync(gone).calls == 2
        assert quota.count("big") == 800
