"""otel-leakproc's Python client in a real leaking Python process, pushing to the real service.

The leaking program runs as a subprocess with `python -S` and only `src/` on its path: no site-packages,
so the test also proves the client needs nothing beyond the standard library.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from serve_support import FAST_PROCESSOR, REPO, TESTDATA, free_port, make_settings, metric, running_service, series

LEAKY = TESTDATA / "python_client" / "leaky_orders.py"


def start_leaky(url: str, seconds: float, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-S", str(LEAKY), url, str(seconds), *extra],
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float) -> tuple[dict[str, Any], str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    return json.loads(out.strip().splitlines()[-1]), err


def wait_for(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.5)


def test_leaking_python_service_is_flagged_and_the_leaking_function_named(tmp_path: Path) -> None:
    with running_service(make_settings("", processor=FAST_PROCESSOR)) as svc:
        stats, _ = finish(start_leaky(svc.url, 16, "--leak-threads"), timeout=90)
        assert stats["captures_dropped"] == 0
        assert stats["capture_errors"] == 0
        found = {s["kind"]: s for s in series(svc.url, service="orders-py")}
        heap = found["heap"]
        assert heap["instance"] == "orders-0"
        assert heap["profiles"] >= 10
        assert heap["status"] in ("suspected", "confirmed"), heap["evidence"]
        # The leaked orders are named; the parked threads' own allocations (Thread._set_tstate_lock and the
        # like) also grow, and on a loaded machine, where the order loop runs less often, can rank first.
        growers = heap["top_growers"][:3]
        named = [g for g in growers if g["function"] == "remember_order"]
        assert named, [g["function"] for g in growers]
        assert named[0]["file"] == str(LEAKY)
        assert named[0]["share"] > 0.1
        assert heap["resource"]["process.runtime.name"] == "cpython"
        # Threads go in as the goroutine kind: the threads parked in wait_for_reply pile up.
        threads = found["goroutine"]
        assert threads["profiles"] >= 10
        assert threads["current"] >= 20
        assert threads["status"] in ("suspected", "confirmed"), threads["evidence"]
        assert threads["top_growers"][0]["function"] == "wait_for_reply"
        assert metric(svc.url, "otel_leakproc_profiles_rejected_total", reason="bad_protobuf") == 0


def test_client_survives_the_service_being_down_then_delivers_when_it_comes_up(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_leaky(url, 14)
    try:
        time.sleep(5)  # ~4 captures fail to send: buffered, backing off
        assert proc.poll() is None, "the host process must keep running while the receiver is down"
        settings = make_settings("", processor=FAST_PROCESSOR, server={"http": {"address": f"127.0.0.1:{port}"}})
        with running_service(settings) as svc:
            stats, err = finish(proc, timeout=90)
            found = series(svc.url, service="orders-py", kind="heap")
            assert len(found) == 1
            # Captures taken while the service was down arrived too (the buffer holds 20).
            assert found[0]["profiles"] >= 12
            assert stats["captures_dropped"] == 0
            assert stats["requests_failed"] >= 1
            assert stats["profiles_delivered"] >= 24
            assert stats["buffered"] == 0
            # Backoff, not one attempt per capture; and one log line per kind of failure, not one per attempt.
            assert stats["requests_failed"] <= 4
            assert err.count("cannot reach") == 1, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
