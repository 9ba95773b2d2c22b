"""A leaking Python service profiled by a real pyroscope-io client, for otel-leakproc's tests.

Usage: python leaky_service.py SERVER_URL SECONDS UPLOAD_INTERVAL

With pyroscope-io 1.x it turns on memory profiling and the given upload interval; 0.8.x has neither
(CPU only, fixed 10 s uploads), so those arguments are only passed where the client takes them.
"""

from __future__ import annotations

import inspect
import sys
import time
from typing import Any

import pyroscope  # type: ignore[import-not-found]  # installed in the client venvs only

ORDER_HISTORY: list[bytes] = []


def remember_order(i: int) -> None:
    # The leak: every order's snapshot stays referenced from a global list.
    ORDER_HISTORY.append(bytes(16384) + str(i).encode())


def price_basket(n: int) -> int:
    return sum(k * k for k in range(n))


def main() -> None:
    url, seconds, interval = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    options: dict[str, Any] = {}
    parameters = inspect.signature(pyroscope.configure).parameters
    if "mem_enabled" in parameters:
        options["mem_enabled"] = True
    if "upload_interval" in parameters:
        options["upload_interval"] = interval
    pyroscope.configure(
        application_name="orders-py",
        server_address=url,
        tags={"instance": "orders-0", "namespace": "shop"},
        **options,
    )
    deadline = time.time() + seconds
    i = 0
    while time.time() < deadline:
        remember_order(i)
        price_basket(500)
        i += 1
        time.sleep(0.001)
    pyroscope.shutdown()
    print("retained", len(ORDER_HISTORY), flush=True)


if __name__ == "__main__":
    main()
