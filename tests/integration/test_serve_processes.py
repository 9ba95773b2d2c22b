"""`serve` with `server.processes: 2` as a real process tree: uploads for many series over HTTP land with
exactly one owner each, either process lists every series, SIGTERM stops every process cleanly, and a
SIGKILL of the parent leaves no process behind (`cluster/peers.py`, `cluster/supervisor.py`)."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import grpc
from proc_memory import alive, descendants
from serve_support import STEADY_LEAK, ServeProcess, http, series

from otel_leakproc.receiver.proto import push_pb2

SERIES = 40
BATCH = 8  # series in one gRPC push: their owners differ, each keeps its own


def _push_batch(port: int, profile: bytes) -> None:
    request = push_pb2.PushRequest()
    for i in range(BATCH):
        series_ = request.series.add()
        for key, value in {"__name__": "memory", "service_name": f"batch-{i}", "instance": "pod"}.items():
            series_.labels.add(name=key, value=value)
        series_.samples.add(raw_profile=profile, ID="1")
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        push = channel.unary_unary(
            "/push.v1.PusherService/Push",
            request_serializer=push_pb2.PushRequest.SerializeToString,
            response_deserializer=lambda b: b,
        )
        push(request, timeout=30)


def _metric_by_process(url: str, name: str) -> dict[str, float]:
    """One metric's samples by their `process` label (summed over any other labels)."""
    reply = http("GET", f"{url}/metrics")
    assert reply.status == 200, reply.body
    out: dict[str, float] = {}
    for line in reply.body.decode().splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match:
            process = re.search(r'process="(\d+)"', match.group(1))
            assert process is not None, line
            out[process.group(1)] = out.get(process.group(1), 0.0) + float(match.group(2))
    return out


def _command(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [pid for pid in pids if alive(pid)]


def test_two_processes_share_the_port_and_own_each_series_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = {"server": {"processes": 2}, "state": {"dir": str(state)}, "export": {"console": False}}
    proc = ServeProcess(config, tmp_path)
    proc.start()
    try:
        assert proc.proc is not None
        # Both processes answer on the one port (each urllib request is a new connection, spread by the
        # kernel): wait until each says ready, i.e. it is connected to the other.
        profile = (STEADY_LEAK / "0000.pb.gz").read_bytes()
        for i in range(SERIES):
            reply = http("POST", f"{proc.url}/ingest?name=svc-{i}{{instance=pod-{i}}}&format=pprof", profile)
            assert reply.status == 200, reply.body
        _push_batch(proc.grpc_port, profile)  # gRPC shares its port the same way
        received = _metric_by_process(proc.url, "otel_leakproc_profiles_received_total")
        assert set(received) == {"0", "1"}, received
        assert sum(received.values()) == SERIES + BATCH, received
        assert all(v > 0 for v in received.values()), f"the kernel gave every connection to one process: {received}"
        tracked = _metric_by_process(proc.url, "otel_leakproc_series_tracked")
        assert sum(tracked.values()) == SERIES + BATCH, tracked
        assert all(v > 0 for v in tracked.values()), tracked
        for _ in range(6):  # new connections: whichever process answers lists all of them
            listed = series(proc.url, timeline="1")
            want = [f"svc-{i}" for i in range(SERIES)] + [f"batch-{i}" for i in range(BATCH)]
            assert sorted(s["service"] for s in listed) == sorted(want)
            assert all(s["profiles"] == 1 for s in listed)
        assert [s["service"] for s in series(proc.url, service="svc-7")] == ["svc-7"]
        children = descendants(proc.proc.pid)
        assert len(children) >= 4, children  # two serve processes, their decoder workers and forkservers

        assert proc.signal(signal.SIGTERM, timeout=60) == 0
        assert _wait_gone(children, 10) == []
        kept = [int(n) for n in re.findall(r"stopped: (\d+) series kept", proc.stderr.read_text())]
        assert len(kept) == 2, kept
        assert sum(kept) == SERIES + BATCH, kept
        assert sorted(p.name for p in state.iterdir()) == ["process-0-of-2", "process-1-of-2", "processes"]

        # Restarted on the same folder: every series back once, with its one point.
        proc.start()
        listed = series(proc.url, timeline="0")
        assert len(listed) == SERIES + BATCH
        assert all(s["profiles"] == 1 for s in listed)

        children = descendants(proc.proc.pid)
        serving = [_command(pid) for pid in children if "otel_leakproc.cluster.supervisor" in _command(pid)]
        assert len(serving) == 2, serving
        runtime = Path(serving[0][serving[0].index("--runtime") + 1])
        resources = sorted(
            v
            for pid in children
            if "otel_leakproc.cluster.supervisor" in _command(pid)
            for v in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
            if v.startswith("OTEL_RESOURCE_ATTRIBUTES=")
        )
        own = [r.removeprefix("OTEL_RESOURCE_ATTRIBUTES=").rsplit(",", 1)[-1] for r in resources]
        assert own == ["otel_leakproc.process=0", "otel_leakproc.process=1"]  # one OTLP resource each
        assert any(p.suffix == ".sock" for p in runtime.iterdir())
        proc.kill()  # SIGKILL of the parent: no shutdown code runs in it
        assert _wait_gone(children, 30) == []
        assert not runtime.exists()  # the last process removed the sockets' folder
    finally:
        proc.kill()
