"""`serve` with `server.processes: 2` as a real process tree: uploads for many series over HTTP land with
exactly one owner each, either process lists every series, SIGTERM stops every process cleanly, and a
SIGKILL of the parent leaves no process behind (`cluster/peers.py`, `cluster/supervisor.py`)."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import grpc
from proc_memory import alive, descendants
from serve_support import STEADY_LEAK, ServeProcess, http, series

from otel_leakproc.cluster.partitions import local_owner
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
        serving = [_command(pid) for pid in children if "otel_leakproc.cluster.child" in _command(pid)]
        assert len(serving) == 2, serving
        runtime = Path(serving[0][serving[0].index("--runtime") + 1])
        resources = sorted(
            v
            for pid in children
            if "otel_leakproc.cluster.child" in _command(pid)
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


def _wait_state(pid: int, state: str, seconds: float) -> bool:
    """Wait until the process is in `state` (/proc/PID/stat: T stopped); whether it got there."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == state:
            return True
        time.sleep(0.01)
    return False


def _listeners(port: int) -> int:
    """Sockets listening on a TCP port (the serve processes' shared HTTP port), from /proc/net/tcp."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                count += 1
    return count


def _owned(tenant: str, services: list[str], instance: str) -> dict[str, int]:
    """How many of `services` each of two processes owns, by process label."""
    out = {"0": 0, "1": 0}
    for service in services:
        out[str(local_owner(tenant, service, instance, 2))] += 1
    return out


def test_an_ingest_upload_is_decoded_and_kept_once_by_its_owner_whichever_process_receives_it(
    tmp_path: Path,
) -> None:
    config = {
        "server": {"processes": 2},
        # The profiles are decoded by a worker where they arrive and kept by their owner (only the result
        # crosses); the bad bodies (10 bytes) cross as received and are decoded on the owner's loop.
        "ingest": {"inline_max_bytes": 512},
        "state": {"dir": str(tmp_path / "state")},
        "export": {"console": False},
    }
    proc = ServeProcess(config, tmp_path)
    proc.start()
    try:
        assert proc.proc is not None
        profile = (STEADY_LEAK / "0000.pb.gz").read_bytes()
        assert len(profile) > 512
        good = [f"svc-{i}" for i in range(SERIES)]
        for service in good:  # each a new connection: the kernel spreads them over both processes
            reply = http("POST", f"{proc.url}/ingest?name={service}{{instance=pod}}&format=pprof", profile)
            assert reply.status == 200, reply.body
        bad = [f"bad-{i}" for i in range(12)]
        for service in bad:  # the owner's decoder's answer, whichever process received it
            reply = http("POST", f"{proc.url}/ingest?name={service}{{instance=pod}}&format=pprof", b"\x1f\x8bnot gzip")
            assert reply.status == 400, reply.body
            assert reply.json()["code"] == "invalid_argument"
            assert reply.json()["message"].startswith("body: "), reply.body
        forwarded = _metric_by_process(proc.url, "otel_leakproc_uploads_forwarded_total")
        assert sum(forwarded.values()) > 0, forwarded
        # Profiles and rejections are counted where they were decoded: by each series' owner, once.
        (tenant,) = {s["tenant"] for s in series(proc.url)}
        received = _metric_by_process(proc.url, "otel_leakproc_profiles_received_total")
        assert received == {k: float(v) for k, v in _owned(tenant, good, "pod").items()}, received
        rejected = _metric_by_process(proc.url, "otel_leakproc_profiles_rejected_total")
        assert rejected == {k: float(v) for k, v in _owned(tenant, bad, "pod").items()}, rejected
        listed = series(proc.url, timeline="1")
        assert sorted(s["service"] for s in listed) == sorted(good)
        assert all(s["profiles"] == 1 for s in listed), listed
        tracked = _metric_by_process(proc.url, "otel_leakproc_series_tracked")
        assert tracked == {k: float(v) for k, v in _owned(tenant, good, "pod").items()}, tracked

        # The owner killed (its parent held still, so the group is not yet stopped): the upload of one of
        # its series is answered 503 with Retry-After at once, not after a hang; the survivor's own go on.
        children = descendants(proc.proc.pid)
        serving = {
            int(c[c.index("--index") + 1]): pid
            for pid in children
            if "otel_leakproc.cluster.child" in (c := _command(pid))
        }
        os.kill(proc.proc.pid, signal.SIGSTOP)
        try:
            assert _wait_state(proc.proc.pid, "T", 10)
            os.kill(serving[1], signal.SIGKILL)
            assert _wait_gone([serving[1]], 10) == []
            # Its threads may still be closing its listening socket (a connection queued there is reset).
            deadline = time.monotonic() + 10
            while _listeners(proc.http_port) > 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _listeners(proc.http_port) == 1
            theirs = next(s for s in (f"late-{i}" for i in range(50)) if local_owner(tenant, s, "pod", 2) == 1)
            mine = next(s for s in (f"late-{i}" for i in range(50)) if local_owner(tenant, s, "pod", 2) == 0)
            started = time.monotonic()
            reply = http("POST", f"{proc.url}/ingest?name={theirs}{{instance=pod}}&format=pprof", profile, timeout=20)
            assert reply.status == 503, reply.body
            assert time.monotonic() - started < 5
            assert reply.headers.get("retry-after"), reply.headers
            assert reply.json()["code"] == "unavailable"
            assert "process 1" in reply.json()["message"], reply.body
            reply = http("POST", f"{proc.url}/ingest?name={mine}{{instance=pod}}&format=pprof", profile)
            assert reply.status == 200, reply.body
        finally:
            os.kill(proc.proc.pid, signal.SIGCONT)
        assert proc.proc.wait(60) == 1  # a process that exited on its own stops the group
    finally:
        proc.kill()
