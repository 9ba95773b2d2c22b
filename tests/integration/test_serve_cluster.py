"""Several `serve` processes sharing the series through one real redis-server (and a 3-node Redis Cluster):
any replica answers any upload, one owner per partition, nothing answered is lost (docs/scaling.md)."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis_support import RedisServer, redis_cluster, redis_server
from serve_support import STEADY_LEAK, ServeProcess, http, metric, series
from test_scrape_support import build_go, go_program

from otel_leakproc.cluster.partitions import PartitionKeys, partition_of

PROFILES = sorted(STEADY_LEAK.glob("*.pb.gz"))
PARTITIONS = 8
TTL = 3.0


def replica(workdir: Path, name: str, url: str, **redis: Any) -> ServeProcess:
    folder = workdir / name
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "state": {
            "backend": "redis",
            "dir": str(folder / "state"),
            "snapshot_interval_seconds": 1,
            "redis": {"url": url, "partitions": PARTITIONS, "lease_ttl_seconds": TTL, "replica_id": name, **redis},
        },
        "export": {"console": False},
    }
    return ServeProcess(config, folder)


@contextmanager
def replicas(workdir: Path, url: str, names: list[str], **redis: Any) -> Iterator[dict[str, ServeProcess]]:
    procs = {name: replica(workdir, name, url, **redis) for name in names}
    with ExitStack() as stack:
        for proc in procs.values():
            stack.callback(proc.kill)
            proc.start()
        yield procs


def upload(url: str, path: Path, instance: str = "pod-1") -> int:
    name = f"checkout{{instance={instance}}}"
    try:
        return http("POST", f"{url}/ingest?name={name}&format=pprof", path.read_bytes(), timeout=10).status
    except OSError:
        return 0


def profiles(url: str, instance: str = "pod-1") -> int:
    found = [s for s in series(url, timeline="0") if s["instance"] == instance]
    return found[0]["profiles"] if found else 0


def wait_for(predicate: Any, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.1)
    return time.monotonic() - start


def owner(client: Any, instance: str = "pod-1", tenant: str = "default", service: str = "checkout") -> str | None:
    keys = PartitionKeys("leakproc", partition_of(tenant, service, instance, PARTITIONS))
    value = client.get(keys.lease)
    return value.decode() if value else None


def verdict(obj: dict[str, Any]) -> tuple[Any, ...]:
    top = obj["top_growers"][0]["function"] if obj["top_growers"] else None
    return (obj["status"], top, obj["first_flagged_at"], obj["profiles"], obj["transitions"])


def single_replica_verdict(tmp_path: Path) -> tuple[Any, ...]:
    proc = ServeProcess({"state": {"dir": str(tmp_path / "single")}, "export": {"console": False}}, tmp_path)
    proc.start()
    try:
        assert [upload(proc.url, p) for p in PROFILES] == [200] * len(PROFILES)
        (found,) = series(proc.url)
        return verdict(found)
    finally:
        proc.kill()


def test_uploads_to_random_replicas_give_one_series_with_the_single_replica_verdict(tmp_path: Path) -> None:
    expected = single_replica_verdict(tmp_path)
    assert expected[0] in ("suspected", "confirmed"), expected  # the corpus series leaks
    rng = random.Random(13)
    with redis_server(tmp_path) as server, replicas(tmp_path, server.url, ["a", "b", "c"]) as procs:
        urls = [p.url for p in procs.values()]
        for path in PROFILES:
            assert upload(rng.choice(urls), path) == 200
        for url in urls:
            wait_for(lambda url=url: profiles(url) == len(PROFILES), 20, f"every profile on {url}")
        for url in urls:
            (found,) = series(url)
            assert verdict(found) == expected
        # One owner holds the series' partition; the live replicas share the partitions.
        client = server.client()
        assert owner(client) in procs
        # After the start-up rebalancing settles, every partition has a live owner.
        wait_for(lambda: all(owner_of(client, n) in procs for n in range(PARTITIONS)), TTL * 2, "every partition owned")


def owner_of(client: Any, n: int) -> str | None:
    value = client.get(PartitionKeys("leakproc", n).lease)
    return value.decode() if value else None


def test_kill_9_of_the_owner_moves_its_partitions_and_loses_no_answered_upload(tmp_path: Path) -> None:
    rng = random.Random(9)
    with redis_server(tmp_path) as server, replicas(tmp_path, server.url, ["a", "b", "c"]) as procs:
        client = server.client()
        wait_for(lambda: owner(client) is not None, 10, "an owner")
        answered = 0
        for path in PROFILES[:20]:
            answered += upload(rng.choice([p.url for p in procs.values()]), path) == 200
        victim = owner(client)
        assert victim is not None
        owned_before = {n for n in range(PARTITIONS) if owner_of(client, n) == victim}
        procs[victim].kill()
        killed_at = time.monotonic()
        live = [p.url for name, p in procs.items() if name != victim]
        for path in PROFILES[20:40]:  # the stream goes on through the takeover
            answered += upload(rng.choice(live), path) == 200
        moved = wait_for(
            lambda: all(owner_of(client, n) not in (None, victim) for n in owned_before), 30, "the takeover"
        )
        assert time.monotonic() - killed_at <= TTL + 5, moved
        assert answered == 40
        for url in live:
            wait_for(lambda url=url: profiles(url) == answered, 20, f"every answered profile on {url}")


def test_scaling_2_to_3_to_2_keeps_every_series(tmp_path: Path) -> None:
    instances = [f"pod-{i}" for i in range(6)]
    with redis_server(tmp_path) as server, ExitStack() as stack:
        client = server.client()
        procs = {name: replica(tmp_path, name, server.url) for name in ("a", "b", "c")}
        for proc in procs.values():
            stack.callback(proc.kill)
        procs["a"].start()
        procs["b"].start()
        sent = 0

        def send(count: int, urls: list[str]) -> None:
            nonlocal sent
            for path in PROFILES[sent : sent + count]:
                for i, instance in enumerate(instances):
                    assert upload(urls[i % len(urls)], path, instance) == 200
            sent += count

        send(10, [procs["a"].url, procs["b"].url])
        procs["c"].start()
        wait_for(
            lambda: any(owner_of(client, n) == "c" for n in range(PARTITIONS)), TTL * 3, "c to take its partitions"
        )
        send(10, [p.url for p in procs.values()])
        assert procs["a"].signal(signal.SIGTERM) == 0  # hands its partitions over at once
        wait_for(lambda: all(owner_of(client, n) in ("b", "c") for n in range(PARTITIONS)), TTL * 2, "a's handover")
        send(10, [procs["b"].url, procs["c"].url])
        owned = [metric(procs[n].url, "otel_leakproc_cluster_partitions_owned") for n in ("b", "c")]
        assert sum(owned) == PARTITIONS, owned
        for url in (procs["b"].url, procs["c"].url):
            wait_for(
                lambda url=url: [profiles(url, i) for i in instances] == [sent] * len(instances),
                20,
                f"every series on {url}",
            )
        # Each series is tracked (and counted on /metrics) by exactly one replica: its owner.
        owners = [metric(procs[n].url, "otel_leakproc_series_tracked") for n in ("b", "c")]
        assert sum(owners) == len(instances), owners


def test_redis_restarted_mid_stream_loses_nothing_answered(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    try:
        with replicas(tmp_path, server.url, ["a", "b"]) as procs:
            urls = [p.url for p in procs.values()]
            answered = 0
            for path in PROFILES[:15]:
                answered += upload(urls[answered % 2], path) == 200
            server.stop()
            refused = http(
                "POST", f"{urls[0]}/ingest?name=checkout{{instance=pod-1}}&format=pprof", PROFILES[15].read_bytes()
            )
            assert refused.status == 503, refused
            assert "retry-after" in refused.headers, refused
            wait_for(lambda: http("GET", f"{urls[1]}/readyz").status == 503, 10, "not ready")
            server.start()
            for url in urls:
                wait_for(lambda url=url: http("GET", f"{url}/readyz").status == 200, 15, f"{url} ready again")
            for path in PROFILES[15:30]:
                answered += upload(urls[answered % 2], path) == 200
            assert answered == 30
            for url in urls:
                wait_for(lambda url=url: profiles(url) == answered, 20, f"every answered profile on {url}")
    finally:
        server.stop()


def test_a_three_node_redis_cluster(tmp_path: Path) -> None:
    with redis_cluster(tmp_path) as nodes:
        url = nodes[0].url
        with replicas(tmp_path, url, ["a", "b"], cluster=True) as procs:
            urls = [p.url for p in procs.values()]
            instances = [f"pod-{i}" for i in range(4)]
            for i, path in enumerate(PROFILES[:12]):
                for instance in instances:
                    assert upload(urls[i % 2], path, instance) == 200
            for url in urls:
                wait_for(
                    lambda url=url: [profiles(url, i) for i in instances] == [12] * len(instances),
                    20,
                    f"every series on {url}",
                )


def test_each_scrape_target_is_scraped_by_the_owner_of_its_series_only(tmp_path: Path) -> None:
    healthy = build_go("healthy", tmp_path)
    instances = [f"cat-{i}" for i in range(6)]
    with go_program(healthy) as address, redis_server(tmp_path) as server:
        scrape = {
            "enabled": True,
            "interval_seconds": 0.5,
            "jitter": 0.1,
            "timeout_seconds": 3,
            "profiles": ["heap"],
            "static_targets": [{"address": address, "service": "catalog", "instance": i} for i in instances],
        }
        procs = {name: replica(tmp_path, name, server.url) for name in ("a", "b")}
        with ExitStack() as stack:
            for proc in procs.values():
                config = yaml.safe_load(proc.config_path.read_text())
                proc.config_path.write_text(yaml.safe_dump({**config, "scrape": scrape}))
                stack.callback(proc.kill)
                proc.start()

            def scraped_by() -> dict[str, list[str]]:
                out: dict[str, list[str]] = {i: [] for i in instances}
                for name, proc in procs.items():
                    body = http("GET", f"{proc.url}/api/v1/series?timeline=0").json()
                    for target in body["targets"]:
                        if target["scrapes"] > 0:
                            out[target["instance"]].append(name)
                return out

            client = server.client()

            def by_owner_only() -> bool:
                # Ownership may still be moving while replica b joins; read the leases around the scrapers'
                # lists so that a settled answer is one ownership, not two readings of a moving one.
                before = {i: owner(client, i, service="catalog") for i in instances}
                found = scraped_by()
                after = {i: owner(client, i, service="catalog") for i in instances}
                return before == after and all(found[i] == [after[i]] for i in instances)

            # b starts after a took every partition: first the rebalance that gives b its share of the targets,
            # then each of them scraped by its new owner and no longer by a.
            wait_for(lambda: {owner(client, i, service="catalog") for i in instances} == {"a", "b"}, 20, "b's share")
            wait_for(by_owner_only, 20, "every target scraped once, by the owner of its series")
            # Every replica shows every scraped series, whichever replica scraped it.
            for proc in procs.values():
                wait_for(
                    lambda proc=proc: {s["instance"] for s in series(proc.url, timeline="0")} == set(instances),
                    20,
                    f"every series on {proc.url}",
                )


def test_the_password_comes_from_a_file_or_the_environment_and_is_never_logged(tmp_path: Path) -> None:
    secret = "s3cret-redis-pw"
    server = RedisServer(tmp_path, extra=("--requirepass", secret))
    server.start()
    try:
        (tmp_path / "pw").write_text(secret + "\n")
        good = replica(tmp_path, "a", f"redis://:{secret}@127.0.0.1:{server.port}/0")  # in the URL: masked in logs
        good.start()
        try:
            assert upload(good.url, PROFILES[0]) == 200
            wait_for(lambda: profiles(good.url) == 1, 10, "the upload applied")
        finally:
            assert good.signal(signal.SIGTERM) == 0
        filed = replica(tmp_path, "b", server.url, password_file=str(tmp_path / "pw"))
        filed.start()
        try:
            assert upload(filed.url, PROFILES[1]) == 200
            wait_for(lambda: profiles(filed.url) == 2, 10, "both uploads applied")
        finally:
            assert filed.signal(signal.SIGTERM) == 0
        logs = {name: (tmp_path / name / "stderr.txt").read_text() for name in ("a", "b")}
        assert f"redis://:***@127.0.0.1:{server.port}/0" in logs["a"]  # the URL is logged masked
        assert all(secret not in log for log in logs.values())
        missing = replica(tmp_path, "c", server.url, password_env="LEAKPROC_TEST_UNSET_PASSWORD")
        with pytest.raises(AssertionError, match="LEAKPROC_TEST_UNSET_PASSWORD is not set"):
            missing.start()
    finally:
        server.stop()


def test_a_stream_nobody_drains_is_bounded_by_refusing_uploads_and_loses_nothing(tmp_path: Path) -> None:
    with redis_server(tmp_path) as server:
        client = server.client()
        # An owner that reads its streams once a minute: nothing drains the stream during the test.
        slow = replica(tmp_path, "a", server.url, poll_interval_ms=60000, max_stream_entries=5)
        slow.start()
        try:
            wait_for(lambda: owner(client) == "a", TTL * 2, "a owns the partition")
            answered, refused = 0, None
            for path in PROFILES[:20]:
                reply = http(
                    "POST", f"{slow.url}/ingest?name=checkout{{instance=pod-1}}&format=pprof", path.read_bytes()
                )
                if reply.status != 200:
                    refused = reply
                    break
                answered += 1
                time.sleep(0.2)  # lets a lease round see the stream's length
            assert refused is not None
            assert refused.status == 503, refused
            assert "retry-after" in refused.headers
            assert b"max_stream_entries" in refused.body
            assert answered >= 5
        finally:
            assert slow.signal(signal.SIGTERM) == 0
        # A replica that keeps up takes the partition over and applies every answered upload.
        with replicas(tmp_path, server.url, ["b"]) as procs:
            wait_for(lambda: profiles(procs["b"].url) == answered, 20, "every answered upload applied")
