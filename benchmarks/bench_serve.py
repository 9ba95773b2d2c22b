"""Throughput and latency of `otel-leakproc serve` over HTTP on loopback, and its RSS with many series.

Prints figures; asserts nothing (DESIGN.md: performance is measured by benchmarks, never by timed tests).

    python benchmarks/bench_serve.py                       # small and large profiles, RSS at 1k/10k series
    python benchmarks/bench_serve.py --clients 16 --seconds 20 --skip-rss

- Load: `--clients` concurrent keep-alive HTTP clients (aiohttp, one client process) POST `/ingest` as fast
  as the service answers, for `--seconds`. Every request carries a distinct profile time (variants of the
  same real profile, pre-built), spread over `--series` series, so the detectors do real work.
- small: `tests/testdata/corpus/steady_leak/heap/0000.pb.gz` (a real 2.2 KB Go heap profile);
  large: `benchmarks/out/large/heap_0000.pb.gz` (~180 KB, 13k samples; `benchmarks/make_profiles.sh`).
- RSS: a snapshot with N series, each holding a full default window (240 heap profiles of 64 sites) built
  from a real detector, is written to a state dir; `serve` starts on it and its VmRSS is read once ready.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

from otel_leakproc.model import ProfileKind, ProfileSummary, SeriesKey, SiteValue
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.detector import SeriesDetector
from otel_leakproc.receiver.proto import profile_pb2
from otel_leakproc.state.journal import CHECKPOINT_FILE, FileStore
from otel_leakproc.state.records import checkpoint_frame, series_id

REPO = Path(__file__).resolve().parents[1]
SMALL = REPO / "tests/testdata/corpus/steady_leak/heap/0000.pb.gz"
LARGE = REPO / "benchmarks/out/large/heap_0000.pb.gz"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def variants(path: Path, count: int) -> list[bytes]:
    """`count` copies of a real profile, each with its own time_nanos one minute apart."""
    profile = profile_pb2.Profile.FromString(gzip.decompress(path.read_bytes()))
    base = 1_790_000_000 * 10**9
    out = []
    for i in range(count):
        profile.time_nanos = base + i * 60 * 10**9
        out.append(gzip.compress(profile.SerializeToString(), 6))
    return out


class Serve:
    def __init__(self, state_dir: str, workers: int, sections: dict[str, dict[str, object]] | None = None) -> None:
        """`sections`: settings merged into the config's sections (e.g. {"processor": {...}})."""
        self.port = free_port()
        extra = sections or {}
        config = Path(tempfile.mkdtemp()) / "leakproc.yaml"
        config.write_text(
            json.dumps(
                {
                    "server": {
                        "http": {"address": f"127.0.0.1:{self.port}"},
                        "grpc": {"address": f"127.0.0.1:{free_port()}"},
                        **extra.get("server", {}),
                    },
                    "ingest": {"workers": workers, "queue_size": 256, **extra.get("ingest", {})},
                    "state": {
                        "dir": state_dir,
                        "max_series": 20000,
                        "max_series_per_tenant": 20000,
                        **extra.get("state", {}),
                    },
                    "export": {"console": False, "otlp": {"endpoint": ""}},
                    **{k: v for k, v in extra.items() if k not in ("server", "ingest", "state")},
                }
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_EXPORTER_OTLP")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "otel_leakproc", "serve", "--config", str(config), "--log-level", "warning"],
            stdout=subprocess.DEVNULL,
            env=env,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("serve did not start")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def children_rss_mib(self) -> float:
        total = 0.0
        for child in Path(f"/proc/{self.proc.pid}/task").iterdir():
            children = (child / "children").read_text().split()
            for pid in children:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
        return total

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


async def load(
    url: str, bodies: list[bytes], clients: int, seconds: float, series: int
) -> tuple[int, list[float], int]:
    latencies: list[float] = []
    errors = 0
    counter = 0
    deadline = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession, me: int) -> None:
        nonlocal errors, counter
        n = me
        while time.perf_counter() < deadline:
            body = bodies[(n // series) % len(bodies)]
            target = f"{url}/ingest?name=svc-{n % series}{{instance=i}}&format=pprof"
            n += clients
            start = time.perf_counter()
            async with session.post(target, data=body) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
                    continue
            latencies.append(time.perf_counter() - start)
            counter += 1

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session, i) for i in range(clients)))
    return counter, latencies, errors


def throughput(name: str, path: Path, args: argparse.Namespace) -> None:
    if not path.exists():
        print(f"{name}: {path} missing (run benchmarks/make_profiles.sh)")
        return
    bodies = variants(path, args.variants)
    serve = Serve("", args.workers)
    try:
        asyncio.run(load(serve.url, bodies[:4], args.clients, 2.0, args.series))  # warm-up
        done, latencies, errors = asyncio.run(load(serve.url, bodies, args.clients, args.seconds, args.series))
        latencies.sort()
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
        print(
            f"{name:<6} {len(bodies[0]) / 1024:7.1f} KiB  {done / args.seconds:8.1f} profiles/s  p50 {p50:7.1f} ms"
            f"  p99 {p99:7.1f} ms  errors {errors}  (clients {args.clients}, workers {args.workers or 'auto'},"
            f" server RSS {serve.rss_mib():.0f} MiB + workers {serve.children_rss_mib():.0f} MiB)"
        )
    finally:
        serve.stop()


def full_window_state() -> dict[str, object]:
    """The state of one heap detector holding a full default window of 64-site profiles."""
    config = ProcessorConfig()
    detector = SeriesDetector(SeriesKey("t", "s", "i", ProfileKind.HEAP), config)
    for j in range(config.max_points):
        sites = tuple(
            SiteValue(
                f"main.(*Store{k}).allocateRecord{k}", f"/src/app/store{k}.go", 100 + k, 1e5 * (k + 1) + j * 10 * k
            )
            for k in range(64)
        )
        total = sum(s.value for s in sites)
        detector.update(ProfileSummary(ProfileKind.HEAP, (1_790_000_000 + 30 * j) * 10**9, total, sites=sites))
    return detector.to_state()


def rss(counts: list[int], workers: int) -> None:
    state = full_window_state()
    base = Serve("", workers)
    empty = base.rss_mib()
    base.stop()
    print(f"rss    0 series: {empty:.0f} MiB (main process; decoder workers not included)")
    for count in counts:
        folder = tempfile.mkdtemp()
        store = FileStore(folder, "never")
        store.load()
        writer = store.begin_checkpoint(store.rotate(), 1)
        for n in range(count):
            key = SeriesKey("default", f"svc-{n}", "i", ProfileKind.HEAP)
            writer.put(series_id(key), checkpoint_frame(0, key, {}, state))
        writer.commit()
        store.close()
        start = time.perf_counter()
        serve = Serve(folder, workers)
        started = time.perf_counter() - start
        try:
            with urllib.request.urlopen(f"{serve.url}/api/v1/series?timeline=0&service=svc-0", timeout=60) as r:
                assert json.loads(r.read())["series"], "state not restored"
            # Every detector built (they are restored lazily), as after the background task has run.
            with urllib.request.urlopen(f"{serve.url}/api/v1/series?timeline=1", timeout=600) as r:
                r.read()
            mib = serve.rss_mib()
            size = Path(folder, CHECKPOINT_FILE).stat().st_size / 2**20
            print(
                f"rss {count:5d} series: {mib:.0f} MiB (+{(mib - empty) * 1024 / count:.0f} KiB per series; "
                f"checkpoint {size:.1f} MiB, ready after {started:.1f} s)"
            )
        finally:
            serve.stop()
            shutil.rmtree(folder, ignore_errors=True)  # checkpoints of 10,000 series are ~500 MiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--series", type=int, default=50)
    parser.add_argument("--variants", type=int, default=40)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--skip-rss", action="store_true")
    args = parser.parse_args()
    print(f"cpus {os.cpu_count()}, python {sys.version.split()[0]}")
    throughput("small", SMALL, args)
    throughput("large", LARGE, args)
    if not args.skip_rss:
        rss([1000, 10000], args.workers)


if __name__ == "__main__":
    main()
