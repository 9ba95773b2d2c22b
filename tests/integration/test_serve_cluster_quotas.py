"""Tenant limits hold for the whole cluster (issue 13): two `serve` replicas and one real redis-server; one
tenant floods new series over both replicas and is held to one series quota and one upload rate for the
cluster, not one per replica, while another tenant loses nothing."""

from __future__ import annotations

import json
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import yaml
from redis_support import redis_server
from serve_support import STEADY_LEAK, http, metric, series
from test_serve_cluster import PARTITIONS, owner_of, replica, wait_for

from otel_leakproc.cluster.partitions import partition_of
from otel_leakproc.cluster.quotas import registry_key

PROFILES = sorted(STEADY_LEAK.glob("*.pb.gz"))
QUOTA = 8  # series per tenant, for the cluster
RATE = 2.0  # uploads/s per tenant, for the cluster
BURST = 24
QUIET_SERVICES = 3
FLOOD_UPLOADS = 60


def post(url: str, service: str, tenant: str, body: bytes) -> tuple[int, str | None]:
    target = f"{url}/ingest?name={service}{{instance=pod-1}}&format=pprof"
    reply = http("POST", target, body, {"X-Scope-OrgID": tenant}, timeout=30)
    return reply.status, reply.headers.get("retry-after")


def test_a_flooding_tenant_is_held_to_one_quota_and_one_rate_for_the_whole_cluster(tmp_path: Path) -> None:
    with redis_server(tmp_path) as server, ExitStack() as stack:
        procs = {}
        for name in ("a", "b"):
            proc = replica(tmp_path, name, server.url)
            data = yaml.safe_load(proc.config_path.read_text())
            data["state"]["max_series_per_tenant"] = QUOTA
            data["server"]["rate_limit"] = {"uploads_per_second": RATE, "burst": BURST}
            proc.config_path.write_text(yaml.safe_dump(data))
            stack.callback(proc.kill)
            proc.start()
            procs[name] = proc
        urls = [p.url for p in procs.values()]
        client = server.client()
        owned = dict.fromkeys(procs, 0)

        def settled() -> bool:
            holders = [owner_of(client, n) for n in range(PARTITIONS)]
            owned.update(Counter(h for h in holders if h is not None))
            return all(h in procs for h in holders) and all(owned[name] > 0 for name in procs)

        wait_for(settled, 30, "the partitions shared by both replicas")

        # The quiet tenant's history before the flood.
        quiet_profiles = PROFILES[:4]
        for path in quiet_profiles:
            for s in range(QUIET_SERVICES):
                assert post(urls[s % 2], f"quiet-{s}", "quiet", path.read_bytes())[0] == 200

        # The flood: new series one after another as fast as they are answered, alternating between the
        # replicas (one at a time, so the order they were answered in is the order of their numbers).
        body = PROFILES[0].read_bytes()
        statuses: list[tuple[int, int, str | None]] = []
        started = time.monotonic()
        for i in range(FLOOD_UPLOADS):
            status, retry = post(urls[i % 2], f"flood-{i}", "flood", body)
            statuses.append((i, status, retry))
            if i in (20, 40):  # the quiet tenant goes on during the flood, on both replicas
                path = PROFILES[4 + i // 40]
                for s in range(QUIET_SERVICES):
                    assert post(urls[(s + 1) % 2], f"quiet-{s}", "quiet", path.read_bytes())[0] == 200
        elapsed = time.monotonic() - started

        by_status = Counter(status for _, status, _ in statuses)
        assert set(by_status) <= {200, 429}, by_status
        admitted = sorted(i for i, status, _ in statuses if status == 200)
        # One bucket for the cluster: the burst and the rate once, not once per replica (that would admit
        # 2 x BURST and more).
        assert QUOTA < len(admitted) <= BURST + RATE * elapsed + 1, (len(admitted), elapsed)
        assert all(retry is not None and int(retry) >= 1 for _, status, retry in statuses if status == 429)
        rejected = sum(metric(u, "otel_leakproc_profiles_rejected_total", reason="rate_limited") for u in urls)
        assert rejected == by_status[429]
        # The admitted flood series live in partitions of both replicas.
        holders = {owner_of(client, partition_of("flood", f"flood-{i}", "pod-1", PARTITIONS)) for i in admitted}
        assert holders == set(procs)

        # One series quota for the cluster: the flooding tenant keeps QUOTA series, its most recent ones.
        def flood_series(url: str) -> list[int]:
            return sorted(
                int(s["service"].removeprefix("flood-")) for s in series(url, timeline="0") if s["tenant"] == "flood"
            )

        def evicted() -> float:
            return sum(metric(u, "otel_leakproc_tenant_series_evicted_total", tenant="flood") for u in urls)

        wait_for(lambda: evicted() >= len(admitted) - QUOTA, 20, "the owners evicted the series over the quota")
        registered = sorted(
            int(json.loads(m)[1].removeprefix("flood-"))
            for m in client.zrange(registry_key("leakproc", "flood"), 0, -1)
        )
        assert len(registered) == QUOTA
        for url in urls:
            wait_for(lambda url=url: flood_series(url) == registered, 20, f"the flood held to its quota on {url}")
        # The series kept are the most recently answered ones, whichever replica answered or owns them.
        assert registered == admitted[-QUOTA:], (registered, admitted)
        time.sleep(1.5)  # nothing more is evicted than the quota asks
        assert evicted() == len(admitted) - QUOTA
        popped = sum(metric(u, "otel_leakproc_cluster_quota_evictions_total") for u in urls)
        assert popped == len(admitted) - QUOTA
        # Both replicas evicted some: the stalest series lived in either one's partitions.
        assert all(metric(u, "otel_leakproc_tenant_series_evicted_total", tenant="flood") > 0 for u in urls)

        # The quiet tenant lost nothing: every series, every profile, seen the same from both replicas.
        want = {f"quiet-{s}": len(quiet_profiles) + 2 for s in range(QUIET_SERVICES)}
        for url in urls:
            wait_for(
                lambda url=url: (
                    {s["service"]: s["profiles"] for s in series(url, timeline="0") if s["tenant"] == "quiet"} == want
                ),
                20,
                f"every quiet profile on {url}",
            )
            assert metric(url, "otel_leakproc_tenant_series_evicted_total", tenant="quiet") == 0
        assert client.zcard(registry_key("leakproc", "quiet")) == QUIET_SERVICES
