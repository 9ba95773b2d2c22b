"""The single-writer rule through a real collector: three `serve` replicas sharing one redis-server, each
exporting through its own rotel-agent to its own recording receiver (so the receiver an export arrives at
names the replica that sent it). A leaking series is uploaded to random replicas and its owner is killed
with SIGKILL between the two events: the collector sees each `event.id` once, and the series' metrics from
one replica at a time, with the monitored service's resource only."""

from __future__ import annotations

import random
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml
from redis_support import redis_server
from serve_support import STEADY_LEAK, ServeProcess, http
from test_export_support import RecordingReceiver, Rotel, attrs, wait_for
from test_serve_cluster import TTL, owner, replica, upload

from otel_leakproc.exporter.signals import event_id
from otel_leakproc.model import SeriesKey
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.state import SeriesTable
from otel_leakproc.receiver.decode import DecodeLimits, decode_profile

PROFILES = sorted(STEADY_LEAK.glob("*.pb.gz"))


class TimedReceiver(RecordingReceiver):
    """Also keeps when each metrics request arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[float, Any]] = []
        self._arrival_lock = threading.Lock()

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC method name)
        with self._arrival_lock:
            self.arrivals.append((time.monotonic(), request))
        return super().Export(request, context)

    def series_times(self, instance: str) -> list[float]:
        """When metrics of the series of `instance` arrived here."""
        with self._arrival_lock:
            out = []
            for at, request in self.arrivals:
                for rm in getattr(request, "resource_metrics", ()):
                    if attrs(rm.resource.attributes).get("service.instance.id") == instance:
                        out.append(at)
            return out


def expected_events() -> list[Any]:
    table = SeriesTable(ProcessorConfig(), 10)
    summaries = [decode_profile(p.read_bytes(), DecodeLimits()) for p in PROFILES]
    key = SeriesKey("default", "checkout", "pod-1", summaries[0].kind)
    resource = {"service.name": "checkout", "service.instance.id": "pod-1"}
    return [u.event for u in (table.update(key, resource, s) for s in summaries) if u.event is not None]


def test_one_writer_per_series_and_each_event_once_through_a_real_collector(tmp_path: Path) -> None:
    events = expected_events()
    assert [e.name for e in events][:2] == ["leak.suspected", "leak.confirmed"], events
    first_at = next(
        i
        for i, p in enumerate(PROFILES)
        if decode_profile(p.read_bytes(), DecodeLimits()).time_nanos == events[0].time_nanos
    )
    rng = random.Random(5)
    with redis_server(tmp_path) as server, ExitStack() as stack:
        names = ["a", "b", "c"]
        receivers = {n: TimedReceiver() for n in names}
        procs: dict[str, ServeProcess] = {}
        for name in names:
            stack.callback(receivers[name].stop)
            rotel = Rotel(tmp_path / name, receivers[name].port)
            (tmp_path / name).mkdir(parents=True, exist_ok=True)
            rotel.start()
            stack.callback(rotel.stop)
            proc = replica(tmp_path, name, server.url)
            otlp = {
                "endpoint": f"http://127.0.0.1:{rotel.grpc_port}",
                "timeout_seconds": 1,
                "export_interval_seconds": 1,
            }
            config = yaml.safe_load(proc.config_path.read_text())
            config["export"] = {"console": False, "otlp": otlp, "events": {"max_backoff_seconds": 1}}
            proc.config_path.write_text(yaml.safe_dump(config))
            stack.callback(proc.kill)
            proc.start()
            procs[name] = proc
        client = server.client()
        wait_for(lambda: owner(client) is not None, 10, "an owner")
        for path in PROFILES[: first_at + 1]:
            assert upload(rng.choice([p.url for p in procs.values()]), path) == 200
        wait_for(lambda: any(r.log_records() for r in receivers.values()), 20, "the first event delivered")
        victim = owner(client)
        assert victim is not None
        time.sleep(1.5)  # a metrics export or two from the owner
        procs[victim].kill()
        live = [p.url for n, p in procs.items() if n != victim]
        for path in PROFILES[first_at + 1 :]:
            assert upload(rng.choice(live), path) == 200
        wait_for(
            lambda: sum(len(r.log_records()) for r in receivers.values()) >= len(events), 30, "every event delivered"
        )
        # The killed replica comes back (same identity): it wins its partitions again, and the interim owner
        # hands them over (checkpoint, stop exporting, release) before it takes them.
        interim = owner(client)
        assert interim not in (None, victim)
        procs[victim].start()
        wait_for(lambda: owner(client) == victim, TTL * 3, "the handover back")
        time.sleep(3)  # a repeated event or a second writer would show by now
        records = [(n, rec) for n, r in receivers.items() for _, rec in r.log_records()]
        ids = [attrs(rec.attributes)["event.id"] for _, rec in records]
        assert sorted(ids) == sorted(event_id(e) for e in events)  # each once, none missing
        # Metrics of the series: from one replica at a time. In arrival order they come in three runs: the first
        # owner until its kill, the interim owner, the first owner again; a second writer would interleave.
        arrivals = sorted((at, n) for n, r in receivers.items() for at in r.series_times("pod-1"))
        runs = [n for i, (_, n) in enumerate(arrivals) if i == 0 or arrivals[i - 1][1] != n]
        assert runs == [victim, interim, victim], runs
        # The derived metrics carry the monitored service's resource, the same from every replica.
        resources = {
            tuple(sorted(res.items()))
            for r in receivers.values()
            for res, _ in r.metric_points()
            if res.get("service.name") == "checkout"
        }
        assert len(resources) == 1, resources
        assert dict(next(iter(resources)))["service.instance.id"] == "pod-1"
        assert http("GET", f"{live[0]}/readyz").status == 200
