"""After `kill -9` of `serve`, no decoder worker, forkserver or resource tracker is left running (issue 16)."""

from __future__ import annotations

import time
from pathlib import Path

from proc_memory import alive, descendants
from serve_support import STEADY_LEAK, ServeProcess, http


def test_decoder_processes_end_when_serve_is_killed(tmp_path: Path) -> None:
    proc = ServeProcess({"state": {"dir": ""}, "ingest": {"workers": 2}}, tmp_path)
    proc.start()
    try:
        profile = (STEADY_LEAK / "0000.pb.gz").read_bytes()
        assert http("POST", f"{proc.url}/ingest?name=x&format=pprof", profile).status == 200
        assert proc.proc is not None
        children = descendants(proc.proc.pid)
        # forkserver, resource tracker and the two workers at least
        assert len(children) >= 4, children
        proc.kill()  # SIGKILL: no shutdown code runs in serve
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in children if alive(pid)] == []
    finally:
        proc.kill()
