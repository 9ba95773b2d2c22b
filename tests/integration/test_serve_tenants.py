"""Tenant isolation against a real `otel-leakproc serve` (issue 16): one tenant floods new series with
large uploads from many connections; the other keeps every series, every profile and every 200."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hostile import slow_heap_profile
from serve_support import STEADY_LEAK, ServeProcess, http, metric, series

PROFILES = sorted(STEADY_LEAK.glob("*.pb.gz"))
QUIET_SERVICES = 5
SERIES_QUOTA = 20
QUEUE = 8
SHARE = 0.5  # the flooder may hold 4 decode slots; 4 stay free for the others


def test_a_flooding_tenant_is_evicted_and_throttled_within_its_own_share(tmp_path: Path) -> None:
    config = {
        "state": {"dir": "", "max_series": 40, "max_series_per_tenant": SERIES_QUOTA},
        "ingest": {"workers": 1, "queue_size": QUEUE, "max_queue_share_per_tenant": SHARE},
    }
    proc = ServeProcess(config, tmp_path)
    proc.start()
    try:
        quiet = {"X-Scope-OrgID": "quiet"}
        flood = {"X-Scope-OrgID": "flood"}
        # The quiet tenant's history before the flood.
        for index, path in enumerate(PROFILES[:10]):
            for s in range(QUIET_SERVICES):
                url = f"{proc.url}/ingest?name=quiet-{s}&format=pprof"
                assert http("POST", url, path.read_bytes(), quiet).status == 200, (index, s)

        big = slow_heap_profile()
        stop = threading.Event()
        flood_statuses: Counter[int] = Counter()
        lock = threading.Lock()

        def flooder(worker: int) -> None:
            n = 0
            while not stop.is_set():
                url = f"{proc.url}/ingest?name=flood-{worker}-{n}&format=pprof"
                status = http("POST", url, big, flood, timeout=60).status
                with lock:
                    flood_statuses[status] += 1
                n += 1

        quiet_statuses: list[int] = []
        with ThreadPoolExecutor(12) as pool:
            flooders = [pool.submit(flooder, w) for w in range(12)]
            try:
                # While the flood runs, the quiet tenant keeps uploading, one request at a time.
                for path in PROFILES[10:22]:
                    for s in range(QUIET_SERVICES):
                        url = f"{proc.url}/ingest?name=quiet-{s}&format=pprof"
                        quiet_statuses.append(http("POST", url, path.read_bytes(), quiet, timeout=60).status)
            finally:
                # On a slow machine the quiet uploads may finish before the flood got past its quota: let
                # it go on (bounded) until it has, so the eviction is exercised.
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    with lock:
                        if flood_statuses[200] > SERIES_QUOTA + 2:
                            break
                    time.sleep(0.1)
                stop.set()
                for f in flooders:
                    f.result()

        assert quiet_statuses == [200] * (12 * QUIET_SERVICES)
        assert flood_statuses[200] > SERIES_QUOTA, flood_statuses  # enough new series to hit the quota
        assert flood_statuses[429] > 0, flood_statuses
        assert set(flood_statuses) <= {200, 429}, flood_statuses

        tracked = series(proc.url, timeline="0")
        by_tenant = Counter(s["tenant"] for s in tracked)
        assert by_tenant["flood"] == SERIES_QUOTA
        quiet_profiles = {s["service"]: s["profiles"] for s in tracked if s["tenant"] == "quiet"}
        assert quiet_profiles == {f"quiet-{s}": 22 for s in range(QUIET_SERVICES)}

        assert metric(proc.url, "otel_leakproc_tenant_series_evicted_total", tenant="flood") == (
            flood_statuses[200] - SERIES_QUOTA
        )
        assert metric(proc.url, "otel_leakproc_tenant_series_evicted_total", tenant="quiet") == 0
        assert metric(proc.url, "otel_leakproc_profiles_rejected_total", reason="tenant_queue_share") > 0
    finally:
        proc.kill()
