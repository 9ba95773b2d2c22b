"""Bounded memory whatever the input (issue 16): hostile uploads against a real `otel-leakproc serve`.

The shapes are the ones that grew the service by gigabytes before string caps: 64 functions with
900,000-character names in a 60 KB upload, and a goroutine dump with a 10 MB function name. The bounds
asserted here are the ones stated in docs/serve.md ("Bounds and memory").
"""

from __future__ import annotations

import re
from pathlib import Path

from hostile import long_function_names, long_goroutine_function
from proc_memory import status_kib
from serve_support import ServeProcess, http, metric, series

from otel_leakproc.receiver.value_caps import TRUNCATION_MARK
from otel_leakproc.state.journal import FileStore
from otel_leakproc.state.records import point_from_payload

HEAP_UPLOADS = 8
DUMP_UPLOADS = 2
# docs/serve.md: the main process grows by at most 16 MiB over its idle size for these uploads (their
# names would have taken over 450 MB uncapped), journal writes included.
MAIN_GROWTH_BOUND_KIB = 16 * 1024


def test_hostile_names_are_capped_counted_and_memory_stays_bounded(tmp_path: Path) -> None:
    # No checkpoint in the run: every accepted profile stays in the journal, read back below.
    proc = ServeProcess({"state": {"dir": str(tmp_path / "state"), "snapshot_interval_seconds": 3600}}, tmp_path)
    proc.start()
    try:
        assert proc.proc is not None
        pid = proc.proc.pid
        idle = status_kib(pid, "VmRSS")
        for i in range(HEAP_UPLOADS):
            body = long_function_names(f"h{i}")
            reply = http("POST", f"{proc.url}/ingest?name=hostile-{i}&format=pprof", body, timeout=60)
            assert reply.status == 200, reply.body
        # Small enough to be decoded on the event loop (ingest.inline_max_bytes): capped there too.
        small = long_function_names("inline", functions=2, chars=100_000)
        assert len(small) <= 16 * 1024, len(small)
        reply = http("POST", f"{proc.url}/ingest?name=hostile-inline&format=pprof", small, timeout=60)
        assert reply.status == 200, reply.body
        for i in range(DUMP_UPLOADS):
            body = long_goroutine_function(f"g{i}")
            headers = {"Content-Encoding": "gzip"}
            reply = http("POST", f"{proc.url}/ingest?name=dump-{i}", body, headers, timeout=60)
            assert reply.status == 200, reply.body
        peak = status_kib(pid, "VmHWM")
        growth = peak - idle
        assert growth < MAIN_GROWTH_BOUND_KIB, f"main process grew {growth} KiB (idle {idle} KiB, peak {peak} KiB)"

        assert metric(proc.url, "otel_leakproc_values_truncated_total", field="function") >= HEAP_UPLOADS * 6 + 2
        listed = series(proc.url, timeline="0")
        assert len(listed) == HEAP_UPLOADS + 1 + DUMP_UPLOADS
        assert http("GET", f"{proc.url}/livez", timeout=2).status == 200
    finally:
        proc.kill()
    print(f"idle {idle} KiB, peak {peak} KiB, growth {growth} KiB")
    # The journal holds every accepted profile as it entered state: names cut, marked, none over the cap.
    loaded = FileStore(tmp_path / "state").load()
    points = [point_from_payload(p, names) for p, names in loaded.points]
    assert len(points) == HEAP_UPLOADS + 1 + DUMP_UPLOADS
    names = [
        name
        for point in points
        for name in (*(site.function for site in point.summary.sites), *(g.function for g in point.summary.groups))
        if re.match(r"main\.([hg]\d+|inline)_", name)
    ]
    assert names, "the hostile names are in the journal"
    assert all(len(n) <= 512 and n.endswith(TRUNCATION_MARK) for n in names), max(map(len, names))
