"""A leaking Python workload profiled by pyroscope-io. Usage: python leaky_app.py PORT SECONDS [mem]

Works with pyroscope-io 1.x (memory profiling with `mem`, 5 s uploads) and 0.8.x (CPU only, fixed 10 s
uploads: that version has neither `mem_enabled` nor `upload_interval`).
"""

from __future__ import annotations

import inspect
import sys
import time
from typing import Any

import pyroscope  # type: ignore[import-not-found]  # installed only in the capture venvs

RETAINED: list[bytearray] = []


def cache_order_snapshot(i: int) -> None:
    # The leak: every call keeps ~8 KiB alive forever in a global list.
    RETAINED.append(bytearray(8192) + str(i).encode())


def busy(n: int) -> int:
    total = 0
    for k in range(n):
        total += k * k
    return total


def main() -> None:
    port, seconds = int(sys.argv[1]), float(sys.argv[2])
    kwargs: dict[str, Any] = {}
    if len(sys.argv) > 3 and sys.argv[3] == "mem":
        kwargs["mem_enabled"] = True
    if "upload_interval" in inspect.signature(pyroscope.configure).parameters:
        kwargs["upload_interval"] = 5
    pyroscope.configure(
        application_name="leaky-py",
        server_address=f"http://127.0.0.1:{port}",
        tags={"instance": "pod-7", "namespace": "shop", "region": "eu-1"},
        **kwargs,
    )
    deadline = time.time() + seconds
    i = 0
    while time.time() < deadline:
        cache_order_snapshot(i)
        busy(2000)
        i += 1
        time.sleep(0.002)
    pyroscope.shutdown()
    print("retained", len(RETAINED))


if __name__ == "__main__":
    main()
