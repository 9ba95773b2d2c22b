"""Soak test of `otel-leakproc serve` (a make target, not CI): memory stays flat, no accepted event is lost.

    python benchmarks/soak.py                       # 30 minutes, the collector stopped for 10 in the middle
    python benchmarks/soak.py --minutes 3 --outage-minutes 1

- `serve` runs as a real subprocess with its state and event spool on disk, exporting OTLP to a real
  collector (rotel-agent) that forwards to a recording OTLP receiver in this process.
- Load: `--tenants` tenants at a steady `--rate` uploads per second in all. Each tenant streams real Go
  heap profiles of a leaking service (tests/testdata/corpus/steady_leak, 60 profiles: each service turns
  suspected then confirmed), one new service after another; about `--invalid` of the uploads are invalid
  or hostile (bad gzip, a negative in-use value, 900,000-character function names, a missing name).
- The collector is stopped for `--outage-minutes` in the middle: events wait in the spool.
- Prints the server's RSS every `--every` seconds, then: events expected (status transitions the server
  reported on its console) against events delivered to the receiver (by `event.id`, duplicates counted;
  a redelivery after a crash between delivery and acknowledgement is the documented exception, and
  nothing crashes here), and every non-200 answer by status and code.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "integration"), str(ROOT / "tests")]  # serve_support needs toolchain

from hostile import long_function_names, negative_in_use  # noqa: E402
from proc_memory import status_kib  # noqa: E402
from serve_support import STEADY_LEAK, ServeProcess, http, metric  # noqa: E402
from test_export_support import RecordingReceiver, Rotel, attrs  # noqa: E402

PROFILES = [p.read_bytes() for p in sorted(STEADY_LEAK.glob("*.pb.gz"))]
EVENT_LINE = re.compile(r"\s(leak|goroutine_leak|contention)\.(suspected|confirmed|resolved)\s")


def invalid_upload(n: int, tenant: str) -> tuple[str, bytes, dict[str, str]]:
    kind = n % 4
    headers = {"X-Scope-OrgID": tenant}
    if kind == 0:
        return "/ingest?name=bad-gzip&format=pprof", b"\x1f\x8b\x08\x00broken", {**headers, "Content-Encoding": "gzip"}
    if kind == 1:
        return "/ingest?name=negative&format=pprof", negative_in_use(), headers
    if kind == 2:
        return "/ingest?name=hostile&format=pprof", long_function_names(f"{tenant}{n}", functions=8), headers
    return "/ingest?format=pprof", PROFILES[0], headers


class Load:
    def __init__(self, url: str, tenants: int, rate: float, invalid: float) -> None:
        self.url = url
        self.tenants = [f"tenant-{i}" for i in range(tenants)]
        self.interval = tenants / rate
        self.invalid_every = max(1, round(1 / invalid)) if invalid > 0 else 0
        self.statuses: collections.Counter[tuple[int, str]] = collections.Counter()
        self.sent = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self, tenant: str) -> None:
        service, index, n = 0, 0, 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            n += 1
            if self.invalid_every and n % self.invalid_every == 0:
                path, body, headers = invalid_upload(n, tenant)
            else:
                path = f"/ingest?name=svc-{service}{{instance=pod-1}}&format=pprof"
                body, headers = PROFILES[index], {"X-Scope-OrgID": tenant}
                index += 1
                if index == len(PROFILES):
                    service, index = service + 1, 0
            try:
                reply = http("POST", self.url + path, body, headers, timeout=30)
                code = "" if reply.status == 200 else str(json.loads(reply.body or b"{}").get("code", ""))
                outcome = (reply.status, code)
            except OSError as exc:
                outcome = (0, type(exc).__name__)
            with self.lock:
                self.statuses[outcome] += 1
                self.sent += 1
            next_at += self.interval
            self.stop.wait(max(0.0, next_at - time.monotonic()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--outage-minutes", type=float, default=10)
    parser.add_argument("--tenants", type=int, default=8)
    parser.add_argument("--rate", type=float, default=20.0, help="uploads per second, all tenants together")
    parser.add_argument("--invalid", type=float, default=0.1, help="share of invalid or hostile uploads")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between RSS lines")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="leakproc-soak-"))
    receiver = RecordingReceiver()
    rotel = Rotel(work, receiver.port)
    rotel.start()
    config = {
        "state": {"dir": str(work / "state"), "max_series": 200, "max_series_per_tenant": 50},
        "export": {
            "console": True,
            "otlp": {"endpoint": f"http://127.0.0.1:{rotel.grpc_port}", "export_interval_seconds": 10},
            "events": {"max_backoff_seconds": 5},
        },
        "ingest": {"workers": 2},
    }
    serve = ServeProcess(config, work)
    serve.start()
    try:
        return soak(args, serve, rotel, receiver)
    finally:
        serve.kill()  # only if still running (a failed run)
        rotel.stop()
        receiver.stop()


def soak(args: argparse.Namespace, serve: ServeProcess, rotel: Rotel, receiver: RecordingReceiver) -> int:
    assert serve.proc is not None
    load = Load(serve.url, args.tenants, args.rate, args.invalid)
    threads = [threading.Thread(target=load.run, args=(t,), daemon=True) for t in load.tenants]
    for thread in threads:
        thread.start()
    start = time.monotonic()
    total = args.minutes * 60
    outage_from = (total - args.outage_minutes * 60) / 2
    outage_to = outage_from + args.outage_minutes * 60
    collector_up = True
    outage_done = False
    window = f"{outage_from:.0f}-{outage_to:.0f} s"
    print(f"soak: {args.minutes} min, {args.tenants} tenants, {args.rate}/s, collector down {window}")
    print(f"{'t (s)':>7} {'RSS MiB':>8} {'uploads':>8} {'spooled':>8}  collector")
    next_line = 0.0
    while (elapsed := time.monotonic() - start) < total:
        if collector_up and not outage_done and elapsed >= outage_from:
            rotel.stop()
            collector_up = False
        elif not collector_up and elapsed >= outage_to:
            rotel.start()
            collector_up, outage_done = True, True
        if elapsed >= next_line:
            rss = status_kib(serve.proc.pid, "VmRSS") / 1024
            spooled = metric(serve.url, "otel_leakproc_events_spooled")
            state = "up" if collector_up else "DOWN"
            print(f"{elapsed:7.0f} {rss:8.1f} {load.sent:8d} {spooled:8.0f}  {state}", flush=True)
            next_line += args.every
        time.sleep(0.5)
    load.stop.set()
    for thread in threads:
        thread.join(40)
    if not collector_up:
        rotel.start()
    # Let the spool drain into the collector, then stop the server gracefully.
    deadline = time.monotonic() + 120
    while metric(serve.url, "otel_leakproc_events_spooled") > 0 and time.monotonic() < deadline:
        time.sleep(1)
    time.sleep(5)
    peak = status_kib(serve.proc.pid, "VmHWM") / 1024
    code = serve.signal(signal.SIGTERM, timeout=60)
    time.sleep(3)
    rotel.stop()
    receiver.stop()

    console = serve.stdout.read_text(errors="replace")
    expected = collections.Counter(m.group(1) + "." + m.group(2) for m in EVENT_LINE.finditer(console))
    ids: collections.Counter[str] = collections.Counter()
    names: collections.Counter[str] = collections.Counter()
    for _resource, record in receiver.log_records():
        record_attrs = attrs(record.attributes)
        if "event.id" in record_attrs:
            ids[str(record_attrs["event.id"])] += 1
            names[record.event_name] += 1
    print(f"serve exit code {code}, peak RSS {peak:.1f} MiB, uploads sent {load.sent}")
    print(f"events expected {sum(expected.values())} {dict(expected)}")
    print(f"events delivered {len(ids)} distinct event.id ({sum(ids.values())} records) {dict(names)}")
    duplicates = {k: v for k, v in ids.items() if v > 1}
    print(f"duplicate event.id: {len(duplicates)}")
    print("answers by status and code:")
    for (status, reason), count in sorted(load.statuses.items()):
        print(f"  {status} {reason or 'ok'}: {count}")
    lost = sum(expected.values()) - len(ids)
    return 0 if lost == 0 and not duplicates and code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
