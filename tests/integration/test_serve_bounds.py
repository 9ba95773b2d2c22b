"""Bounded memory whatever the input (issue 16): hostile uploads against a real `otel-leakproc serve`.

The shapes are the ones that grew the service by gigabytes before string caps: 64 functions with
900,000-character names in a 60 KB upload, and a goroutine dump with a 10 MB function name. The bounds
asserted here are the ones stated in docs/serve.md ("Bounds and memory").
"""

from __future__ import annotations

import gzip
import json
import re
import time
from pathlib import Path

from hostile import long_function_names, long_goroutine_function
from proc_memory import status_kib
from serve_support import ServeProcess, http, metric, series

from otel_leakproc.processor.state import SNAPSHOT_FILE
from otel_leakproc.receiver.value_caps import TRUNCATION_MARK

HEAP_UPLOADS = 8
DUMP_UPLOADS = 2
# docs/serve.md: the main process grows by at most 16 MiB over its idle size for these uploads (their
# names would have taken over 450 MB uncapped), snapshot writes included.
MAIN_GROWTH_BOUND_KIB = 16 * 1024


def test_hostile_names_are_capped_counted_and_memory_stays_bounded(tmp_path: Path) -> None:
    proc = ServeProcess({"state": {"dir": str(tmp_path / "state"), "snapshot_interval_seconds": 1}}, tmp_path)
    proc.start()
    try:
        assert proc.proc is not None
        pid = proc.proc.pid
        idle = status_kib(pid, "VmRSS")
        for i in range(HEAP_UPLOADS):
            body = long_function_names(f"h{i}")
            reply = http("POST", f"{proc.url}/ingest?name=hostile-{i}&format=pprof", body, timeout=60)
            assert reply.status == 200, reply.body
        for i in range(DUMP_UPLOADS):
            body = long_goroutine_function(f"g{i}")
            headers = {"Content-Encoding": "gzip"}
            reply = http("POST", f"{proc.url}/ingest?name=dump-{i}", body, headers, timeout=60)
            assert reply.status == 200, reply.body
        time.sleep(2.5)  # at least one snapshot holds every hostile series
        peak = status_kib(pid, "VmHWM")
        growth = peak - idle
        assert growth < MAIN_GROWTH_BOUND_KIB, f"main process grew {growth} KiB (idle {idle} KiB, peak {peak} KiB)"

        assert metric(proc.url, "otel_leakproc_values_truncated_total", field="function") >= HEAP_UPLOADS * 6
        assert len(series(proc.url, timeline="0")) == HEAP_UPLOADS + DUMP_UPLOADS
        assert http("GET", f"{proc.url}/livez", timeout=2).status == 200
    finally:
        proc.kill()
    print(f"idle {idle} KiB, peak {peak} KiB, growth {growth} KiB")
    # The snapshot holds every series' names as they are in state: cut, marked, none over the cap.
    raw = gzip.decompress((tmp_path / "state" / SNAPSHOT_FILE).read_bytes())
    assert len(raw) < 8 * 1024 * 1024, len(raw)
    names = [n for n in strings(json.loads(raw)) if re.match(r"main\.[hg]\d+_", n)]
    assert names, "the hostile names are in the snapshot"
    assert all(len(n) <= 512 and n.endswith(TRUNCATION_MARK) for n in names), max(map(len, names))


def strings(node: object) -> list[str]:
    """Every string in a JSON document (group keys `state|blocking|function|creator` split at '|')."""
    if isinstance(node, str):
        return node.split("|")
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*strings(k), *strings(v))]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return []
