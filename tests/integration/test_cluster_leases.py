"""Leases, fencing and event handoff of `cluster/node.py`, two nodes in this process over a real
redis-server: a stale owner's checkpoint is refused by the epoch, and a takeover after a crash neither drops
nor repeats an event."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import redis.cluster
from cluster_support import cluster_node
from redis_support import redis_cluster, redis_server
from serve_support import STEADY_LEAK, RecordingExporter, make_settings

from otel_leakproc.cluster.node import ClusterNode
from otel_leakproc.cluster.partitions import PartitionKeys, partition_of
from otel_leakproc.exporter.signals import event_id
from otel_leakproc.model import SeriesKey
from otel_leakproc.processor.state import SeriesTable
from otel_leakproc.receiver.decode import DecodeLimits, decode_profile
from otel_leakproc.receiver.uploads import DecodedProfile, UploadResult
from otel_leakproc.state.codec import read_frames
from otel_leakproc.state.records import point_frame, point_from_payload

PROFILES = sorted(STEADY_LEAK.glob("*.pb.gz"))
FAST = {
    "window_seconds": 3600,
    "heap": {"warmup_seconds": 60, "min_points": 6, "min_window_seconds": 60, "confirm_seconds": 120},
}


def node(url: str, name: str, ttl: float = 0.6, cluster: bool = False) -> tuple[ClusterNode, RecordingExporter]:
    made, exporter, _ = cluster_node(url, name, ttl=ttl, cluster=cluster, processor=FAST)
    return made, exporter


def summaries() -> list[Any]:
    return [decode_profile(p.read_bytes(), DecodeLimits()) for p in PROFILES]


def append(client: Any, keys: PartitionKeys, key: SeriesKey, items: list[Any]) -> None:
    for summary in items:
        client.xadd(keys.stream, {b"r": point_frame(0, key, {}, summary)})


def test_a_stale_owner_is_fenced_off_and_a_takeover_neither_drops_nor_repeats_events(tmp_path: Path) -> None:
    items = summaries()
    key = SeriesKey("", "checkout", "pod-1", items[0].kind)
    n = partition_of("", "checkout", "pod-1", 4)
    # What one replica alone reports: every event of the series, in order.
    table = SeriesTable(make_settings(processor=FAST).processor, 100)
    single = [u.event for u in (table.update(key, {}, s) for s in items) if u.event is not None]
    assert len(single) >= 2, single  # suspected, then confirmed

    with redis_server(tmp_path) as server:
        client = server.client()
        keys = PartitionKeys("leakproc", n)
        a, exported_a = node(server.url, "a")
        b, exported_b = node(server.url, "b")

        async def scenario() -> None:
            await a._take_over(n)
            assert n in a.owned
            await b._take_over(n)
            assert n not in b.owned  # held by a
            first_event = next(i for i, s in enumerate(items) if s.time_nanos >= single[0].time_nanos)
            # a applies the points up to just before the first event and checkpoints them ...
            append(client, keys, key, items[:first_event])
            await a._poll_tick()
            await a._checkpoint(a.owned[n])
            # ... then the points with the first event, which it exports, and crashes without a checkpoint.
            append(client, keys, key, items[first_event : first_event + 3])
            await a._poll_tick()
            assert [e.name for e in exported_a.events] == [single[0].name]
            stale = a.owned[n]
            stale.dirty.add(key)
            time.sleep(0.7)  # a's lease expires (0.6 s)
            await b._take_over(n)
            assert b.owned[n].epoch == stale.epoch + 1
            # a's late checkpoint carries the old epoch: refused, and a stops owning the partition at once.
            await a._checkpoint(stale)
            assert n not in a.owned
            assert key in exported_a.forgotten
            # b replays from a's checkpoint: the event a sent is not sent again; the rest of the series is b's.
            append(client, keys, key, items[first_event + 3 :])
            for _ in range(5):
                await b._poll_tick()
            await b._checkpoint(b.owned[n])

        asyncio.run(scenario())
        ids = [event_id(e) for e in exported_a.events + exported_b.events]
        assert ids == [event_id(e) for e in single]
        assert b.owned[n].table.get(key).report.profiles == len(items)  # type: ignore[union-attr]
        assert client.xlen(keys.stream) == 0  # trimmed up to b's checkpoint
        assert (a.takeovers, a.lost, b.takeovers) == (1, 1, 1)


def _batch(items: list[Any]) -> UploadResult:
    """One upload carrying the profiles of several processes (as a collector's OTLP batch does)."""
    return UploadResult(
        tuple(
            DecodedProfile(f"svc-{i}", f"pod-{i}", {"service.name": f"svc-{i}"}, summary)
            for i, summary in enumerate(items)
        )
    )


def _appended(client: Any, partitions: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in range(partitions):
        for _, fields in client.xrange(PartitionKeys("leakproc", n).stream):
            point = point_from_payload(read_frames(fields[b"r"])[0][0].payload)
            counts[point.key.service] = counts.get(point.key.service, 0) + 1
    return counts


def test_an_upload_of_several_processes_lands_in_their_partitions(tmp_path: Path) -> None:
    items = summaries()[:6]
    with redis_server(tmp_path) as server:
        a, _ = node(server.url, "a")
        a.accept("", None, _batch(items))  # type: ignore[arg-type]  # the request is not read
        counts = _appended(server.client(), 4)
        assert counts == {f"svc-{i}": 1 for i in range(6)}
        parts = {partition_of("", f"svc-{i}", f"pod-{i}", 4) for i in range(6)}
        assert len(parts) > 1  # the batch really spans partitions


def test_appends_work_on_a_redis_cluster(tmp_path: Path) -> None:
    items = summaries()[:6]
    with redis_cluster(tmp_path) as nodes:
        a, _ = node(nodes[0].url, "a", cluster=True)
        a.accept("", None, _batch(items))  # type: ignore[arg-type]
        a.accept("", None, _batch(items[:1]))  # type: ignore[arg-type]  # one process: one script call
        client = redis.cluster.RedisCluster(host="127.0.0.1", port=nodes[0].port)
        assert _appended(client, 4) == {"svc-0": 2, **{f"svc-{i}": 1 for i in range(1, 6)}}
