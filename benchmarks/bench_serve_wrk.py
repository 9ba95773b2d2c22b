"""Throughput and latency of `otel-leakproc serve` under wrk (a compiled load generator from Debian).

`wrk` posts `/ingest` over keep-alive connections for `--seconds`, its Lua script (`serve_wrk.lua`)
rotating pre-built bodies over `--series` series so that every request of a series carries the next
profile time: the detectors see a new point on every request. Prints requests/s, the latency
percentiles wrk reports, non-2xx answers, and the CPU seconds each side used (server: the serve
processes, i.e. event loops, and all their descendants, i.e. decoder workers; client: wrk), plus the load
average. `--set server.processes=2` runs two serve processes on the port (docs/serve.md).
Prints figures only; asserts nothing.

    apt-get install wrk
    python benchmarks/bench_serve_wrk.py --kind small --seconds 10
    python benchmarks/bench_serve_wrk.py --kind large --connections 8
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from bench_serve import SMALL, Serve  # type: ignore[import-not-found]

from otel_leakproc.receiver.proto import profile_pb2

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "serve_wrk.lua"
LARGE_DIR = HERE / "out" / "large"
TICKS = os.sysconf("SC_CLK_TCK")


def write_bodies(path: Path, count: int, folder: Path) -> int:
    """`count` gzipped variants of a real profile, one minute apart, as body_NNNN.bin; the size of one.

    Compressed at level 1, as runtime/pprof does (gzip.BestSpeed), so the bodies are the size Go sends."""
    profile = profile_pb2.Profile.FromString(gzip.decompress(path.read_bytes()))
    base = 1_790_000_000 * 10**9
    size = 0
    for i in range(count):
        profile.time_nanos = base + i * 60 * 10**9
        body = gzip.compress(profile.SerializeToString(), 1)
        (folder / f"body_{i:04d}.bin").write_bytes(body)
        size = len(body)
    return size


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User + system CPU of the serve processes (`pid` itself, and with `server.processes` > 1 the serve
    processes it started), and of every other live descendant (decoder workers, the forkservers)."""
    loops = 0.0
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            used = (int(fields[11]) + int(fields[12])) / TICKS
            command = Path(f"/proc/{current}/cmdline").read_bytes()
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, IndexError):
            continue
        total += used
        if current == pid or b"otel_leakproc.cluster.supervisor" in command:
            loops += used
    return loops, total - loops


def run_wrk(url: str, env: dict[str, str], args: argparse.Namespace) -> tuple[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [
            "wrk",
            f"-t{args.threads}",
            f"-c{args.connections}",
            f"-d{args.seconds}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(SCRIPT),
            url,
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.stderr.strip():  # e.g. a Lua error: wrk then sends plain GETs of the URL
        raise SystemExit(f"wrk: {done.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done.stdout, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kind", choices=("small", "large"), default="small")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--bodies", type=int, default=0, help="pre-built points (default: small 240, large 60)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0, help="decoder workers (0: auto)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a serve setting, e.g. ingest.inline_max_bytes=0 or processor.evaluate_every_seconds=0 (repeatable)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 1
    large = sorted(LARGE_DIR.glob("*.pb.gz"))
    path = SMALL if args.kind == "small" else (large[-1] if large else LARGE_DIR / "heap_0029.pb.gz")
    if not path.exists():
        print(f"{path} missing (run benchmarks/make_profiles.sh)", file=sys.stderr)
        return 1
    count = args.bodies or (240 if args.kind == "small" else 60)
    folder = Path(tempfile.mkdtemp(prefix="bench-wrk-"))
    try:
        size = write_bodies(path, count, folder)
        env = dict(
            os.environ,
            BODY_DIR=str(folder),
            BODY_COUNT=str(count),
            SERIES=str(args.series),
            THREADS=str(args.threads),
        )
        sections: dict[str, dict[str, object]] = {}
        for setting in args.set:
            name, _, value = setting.partition("=")
            section, _, key = name.partition(".")
            sections.setdefault(section, {})[key] = json.loads(value)
        serve = Serve("", args.workers, sections)
        try:
            warm = argparse.Namespace(**{**vars(args), "seconds": 2})
            run_wrk(serve.url, env, warm)  # workers warm, every series created
            load_before = Path("/proc/loadavg").read_text().strip()
            main_before, workers_before = cpu_seconds(serve.proc.pid)
            out, client_cpu = run_wrk(serve.url, env, args)
            main_after, workers_after = cpu_seconds(serve.proc.pid)
            main_cpu, workers_cpu = main_after - main_before, workers_after - workers_before
            load_after = Path("/proc/loadavg").read_text().strip()
            with urllib.request.urlopen(f"{serve.url}/api/v1/series?timeline=0", timeout=60) as response:
                tracked = json.loads(response.read())["series"]
        finally:
            serve.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    latency = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.MULTILINE))
    requests = int(total.group(1)) if total else 0
    print(
        f"{args.kind} {size / 1024:.1f} KiB, {args.series} series, {args.connections} connections: "
        f"{float(rate.group(1)) if rate else 0:.0f} profiles/s, p50 {latency.get('50', '?')}, "
        f"p99 {latency.get('99', '?')}, non-2xx {bad.group(1) if bad else 0}"
    )
    server_cpu = main_cpu + workers_cpu
    per = (
        f"{server_cpu / requests * 1000:.2f} ms per profile: event loops {main_cpu / requests * 1000:.2f}, "
        f"decoder workers {workers_cpu / requests * 1000:.2f}"
        if requests
        else "n/a"
    )
    print(f"cpu: server {server_cpu:.1f} s ({per}), wrk {client_cpu:.1f} s, over {args.seconds} s of wall time")
    points = sum(int(t["profiles"]) for t in tracked)
    print(f"check: {len(tracked)} series tracked, {points} profiles in their windows (warm-up included)")
    print(f"load average before: {load_before}; after: {load_after}; settings: {' '.join(args.set) or 'defaults'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
