"""Overhead of otel-leakproc's Python client on a realistic workload (prints figures; never asserted).

    python benchmarks/bench_python_client.py [--requests N] [--live N]

Each configuration runs in its own process: a request loop (JSON decode, objects built per request, an
LRU cache of recent orders, one retained object per request as a slow leak) over a live heap of
`--live` objects. Measured side by side in one run, as ratios to the run without tracemalloc:
- workload CPU time per request (tracemalloc's cost on every allocation), by traceback depth;
- memory: tracemalloc's own bookkeeping (`tracemalloc.get_tracemalloc_memory()`) and the RSS increase;
- one capture (snapshot -> pprof -> gzip, heap and threads): thread CPU time, first and steady state
  (median of 5), the gzipped size, and the traced blocks it went through.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections import OrderedDict
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from otel_leakproc.client._client import Client  # noqa: E402 - the checkout's client, not an installed one
from otel_leakproc.client._config import ClientConfig  # noqa: E402


class Order:
    __slots__ = ("customer", "id", "items", "total")

    def __init__(self, order_id: int, customer: str, items: list[dict[str, Any]]) -> None:
        self.id = order_id
        self.customer = customer
        self.items = items
        self.total = sum(i["price"] * i["qty"] for i in items)


AUDIT_LOG: list[tuple[int, str]] = []


def build_live_heap(n: int) -> list[Any]:
    rng = random.Random(7)
    return [
        {"sku": f"sku-{i}", "name": "x" * rng.randint(5, 60), "tags": [rng.random() for _ in range(3)]}
        for i in range(n)
    ]


def handle_request(raw: bytes, cache: OrderedDict[int, Order], i: int) -> int:
    payload = json.loads(raw)
    order = Order(i, payload["customer"], [dict(item) for item in payload["items"]])
    cache[i] = order
    if len(cache) > 20000:
        cache.popitem(last=False)
    AUDIT_LOG.append((i, payload["customer"]))  # the slow leak
    return len(json.dumps({"id": order.id, "total": order.total}))


def workload(requests: int, cache: OrderedDict[int, Order]) -> float:
    raw = json.dumps(
        {"customer": "c-42", "items": [{"sku": f"s{k}", "price": 3.5, "qty": k} for k in range(8)]}
    ).encode()
    started = time.process_time()
    for i in range(requests):
        handle_request(raw, cache, i)
    return time.process_time() - started


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(mode: str, requests: int, live: int) -> dict[str, Any]:
    frames = int(mode.split("=")[1]) if mode.startswith("frames=") else 0
    rss0 = rss_bytes()
    if frames:
        tracemalloc.start(frames)
    heap = build_live_heap(live)
    cache: OrderedDict[int, Order] = OrderedDict()
    workload(requests // 10, cache)  # warm up
    cpu = workload(requests, cache)
    out: dict[str, Any] = {
        "mode": mode,
        "cpu_per_request_us": cpu / requests * 1e6,
        "rss_increase_mib": (rss_bytes() - rss0) / 2**20,
        "live_objects": len(heap),
    }
    if frames:
        out["tracemalloc_memory_mib"] = tracemalloc.get_tracemalloc_memory() / 2**20
        out["traced_blocks"] = len(tracemalloc._get_traces())  # type: ignore[attr-defined]
        client = Client(ClientConfig(service="bench", url="http://127.0.0.1:9"))
        costs = []
        for _ in range(6):
            client.capture_into_buffer()
            costs.append(client.stats()["last_capture_cpu_seconds"])
            workload(requests // 20, cache)
        stats = client.stats()
        out["capture_first_ms"] = costs[0] * 1e3
        out["capture_steady_ms"] = statistics.median(costs[1:]) * 1e3
        out["profile_gzip_kib"] = stats["last_profile_bytes"] / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--live", type=int, default=100_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.requests, args.live)))
        return
    rows = []
    for mode in ("off", "frames=1", "frames=16", "frames=32"):
        done = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--requests", str(args.requests), "--live", str(args.live)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(done.stdout))
    base = rows[0]["cpu_per_request_us"]
    print(
        f"workload: {args.requests} requests over a live heap of {args.live} objects (Python {sys.version.split()[0]})"
    )
    print(
        f"{'mode':<10} {'us/request':>10} {'x off':>6} {'RSS +MiB':>9} {'tracemalloc MiB':>16} {'blocks':>8} "
        f"{'capture first ms':>17} {'capture steady ms':>18} {'profile KiB':>12}"
    )
    for row in rows:
        print(
            f"{row['mode']:<10} {row['cpu_per_request_us']:>10.1f} {row['cpu_per_request_us'] / base:>6.2f} "
            f"{row['rss_increase_mib']:>9.1f} {row.get('tracemalloc_memory_mib', 0):>16.1f} "
            f"{row.get('traced_blocks', 0):>8} {row.get('capture_first_ms', 0):>17.0f} "
            f"{row.get('capture_steady_ms', 0):>18.0f} {row.get('profile_gzip_kib', 0):>12.1f}"
        )


if __name__ == "__main__":
    main()
