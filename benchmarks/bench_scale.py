"""What scaling out through Redis costs (`state.backend: redis`, docs/scaling.md): 1, 2 and 3 `serve`
replicas in front of one redis-server, all on this machine.

Per run: SERIES series (distinct instances) x ROUNDS real heap profiles (the steady_leak corpus), uploaded by
CLIENTS threads to the replicas in turn; the run ends when every replica's /api/v1/series shows every
profile. Prints, per replica count: wall time, profiles/s, CPU seconds per profile in the replicas (all
processes: server and decoder workers) and in Redis, Redis commands per profile (INFO commandstats: a
script call and each command inside it count apart), the same net of the idle load (Redis commands per
second while nothing is uploaded, measured for `--idle` seconds before the uploads), and after the last
run Redis memory per series (checkpoint + published report) and stream bytes per profile; then the
commands per profile by name. `--tenants` spreads the series over tenants (X-Scope-OrgID), `--rate-limit`
turns on `server.rate_limit` (counted in Redis).
Two cores are shared by the replicas, their decoders, Redis and the client, so the profiles/s column is a
check, not a capacity figure: capacity follows from the CPU per profile (docs/scaling.md, "Sizing").

Usage: python benchmarks/bench_scale.py [--series 40] [--rounds 15] [--replicas 1,2,3] [--idle 5]
    [--tenants 1] [--rate-limit 0]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import redis
import yaml

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent / "tests" / "testdata" / "corpus" / "steady_leak" / "heap"
REDIS_SERVER = "/usr/bin/redis-server"  # Debian's redis-server (make test-deps installs it)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants still running (decoder workers, the
    multiprocessing fork server), from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
        todo += _children(p)
    return total


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def post(url: str, body: bytes, tenant: str = "") -> int:
    headers = {"X-Scope-OrgID": tenant} if tenant else {}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


def run(
    replicas: int,
    series: int,
    rounds: int,
    clients: int,
    workdir: Path,
    idle: float = 5.0,
    tenants: int = 1,
    rate_limit: float = 0.0,
) -> tuple[dict[str, float], dict[str, float]]:
    port = free_port()
    rdir = workdir / f"redis-{replicas}"
    rdir.mkdir()
    server = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(rdir), "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    procs: list[tuple[subprocess.Popen[bytes], str]] = []
    try:
        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.RedisError:
                time.sleep(0.05)
        for i in range(replicas):
            http_port = free_port()
            folder = workdir / f"r{replicas}-{i}"
            folder.mkdir()
            config = {
                "server": {
                    "http": {"address": f"127.0.0.1:{http_port}"},
                    "grpc": {"enabled": False},
                    "rate_limit": {"uploads_per_second": rate_limit, "burst": 1000},
                },
                "ingest": {"workers": 1},
                "state": {
                    "backend": "redis",
                    "dir": str(folder / "state"),
                    "snapshot_interval_seconds": 5,
                    "redis": {"url": f"redis://127.0.0.1:{port}/0", "partitions": 16, "replica_id": f"r{i}"},
                },
                "export": {"console": False},
            }
            (folder / "c.yaml").write_text(yaml.safe_dump(config))
            proc = subprocess.Popen(
                [sys.executable, "-m", "otel_leakproc", "serve", "--config", str(folder / "c.yaml")],
                stdout=subprocess.DEVNULL,
                stderr=(folder / "err.txt").open("wb"),
            )
            procs.append((proc, f"http://127.0.0.1:{http_port}"))
        for _, url in procs:
            for _ in range(300):
                try:
                    urllib.request.urlopen(f"{url}/readyz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
        time.sleep(2)  # leases settle
        profiles = [p.read_bytes() for p in sorted(CORPUS.glob("*.pb.gz"))][:rounds]
        client.config_resetstat()
        time.sleep(idle)
        idle_per_s = sum(v["calls"] for v in client.info("commandstats").values()) / idle if idle > 0 else 0.0
        client.config_resetstat()
        cpu0 = [cpu_seconds(p.pid) for p, _ in procs]
        rcpu0 = cpu_seconds(server.pid)
        started = time.monotonic()
        work = [(r, s) for r in range(rounds) for s in range(series)]  # round-major: each series in time order
        lock = threading.Lock()
        errors: list[str] = []

        def worker(k: int) -> None:
            # Each client owns a slice of the series, so one series' profiles stay in order.
            for r, s in work:
                if s % clients != k:
                    continue
                url = procs[(r + s) % len(procs)][1]
                tenant = f"t{s % tenants}" if tenants > 1 else ""
                status = post(f"{url}/ingest?name=bench{{instance=pod-{s}}}&format=pprof", profiles[r], tenant)
                if status != 200:
                    with lock:
                        errors.append(str(status))

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = series * rounds
        for _, url in procs:
            while sum(s["profiles"] for s in get(f"{url}/api/v1/series?timeline=0")["series"]) < total:
                time.sleep(0.1)
        wall = time.monotonic() - started
        cpu = sum(cpu_seconds(p.pid) for p, _ in procs) - sum(cpu0)
        rcpu = cpu_seconds(server.pid) - rcpu0
        stats = client.info("commandstats")
        calls = sum(v["calls"] for v in stats.values())
        by_name = {name.removeprefix("cmdstat_"): v["calls"] / total for name, v in stats.items()}
        time.sleep(6)  # a checkpoint of every series
        memory = client.info("memory")["used_memory"]
        checkpoint_bytes = report_bytes = stream_bytes = 0
        for key in client.scan_iter("leakproc:*"):
            size = client.memory_usage(key) or 0
            if key.endswith(b":checkpoints"):
                checkpoint_bytes += size
            elif key.endswith(b":reports"):
                report_bytes += size
            elif key.endswith(b":points"):
                stream_bytes += size
        frame_bytes = sum(len(p) for p in profiles)  # reference: the compressed pprof uploads
        return {
            "replicas": replicas,
            "idle_commands_per_s": idle_per_s,
            "errors": len(errors),
            "wall_s": wall,
            "profiles_per_s": total / wall,
            "replica_cpu_ms_per_profile": 1000 * cpu / total,
            "redis_cpu_ms_per_profile": 1000 * rcpu / total,
            "redis_commands_per_profile": calls / total,
            "net_of_idle": (calls - idle_per_s * wall) / total,
            "redis_used_memory_mb": memory / 2**20,
            "checkpoint_bytes_per_series": checkpoint_bytes / series,
            "report_bytes_per_series": report_bytes / series,
            "stream_bytes_left": stream_bytes,
            "upload_bytes_per_profile": frame_bytes / len(profiles),
        }, by_name
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            proc.wait(30)
        server.terminate()
        server.wait(10)


def stream_entry_bytes() -> float:
    """Bytes of one point record (the XADD payload) for the corpus profiles, as the service encodes them."""
    from otel_leakproc.model import SeriesKey  # noqa: PLC0415
    from otel_leakproc.receiver.decode import DecodeLimits, decode_profile  # noqa: PLC0415
    from otel_leakproc.state.records import point_frame  # noqa: PLC0415

    sizes = []
    for path in sorted(CORPUS.glob("*.pb.gz"))[:10]:
        summary = decode_profile(path.read_bytes(), DecodeLimits())
        key = SeriesKey("", "bench", "pod-0", summary.kind)
        sizes.append(len(point_frame(0, key, {"service.name": "bench"}, summary)))
    return sum(sizes) / len(sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--replicas", default="1,2,3")
    parser.add_argument("--idle", type=float, default=5.0)
    parser.add_argument("--tenants", type=int, default=1)
    parser.add_argument("--rate-limit", type=float, default=0.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        runs = [
            run(int(n), args.series, args.rounds, args.clients, workdir, args.idle, args.tenants, args.rate_limit)
            for n in args.replicas.split(",")
        ]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    try:
        entry = f"{stream_entry_bytes():.0f}"
    except Exception as exc:  # the figure is informative; the runs above are the benchmark
        entry = f"n/a ({exc})"
    print(
        f"series={args.series} rounds={args.rounds} clients={args.clients} tenants={args.tenants} "
        f"rate_limit={args.rate_limit}; point record (stream entry) bytes={entry}"
    )
    rows = [row for row, _ in runs]
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(f"{row[k]:.3g}" if isinstance(row[k], float) else str(row[k]) for k in keys))
    for row, by_name in runs:
        top = sorted(by_name.items(), key=lambda item: -item[1])
        named = ", ".join(f"{n} {v:.2f}" for n, v in top if v >= 0.01)
        print(f"{row['replicas']} replicas, commands per profile: {named}")


if __name__ == "__main__":
    main()
