"""A leaking Python service profiled by otel-leakproc's own client, for the integration tests.

Usage: python leaky_orders.py SERVER_URL SECONDS [--leak-threads]

Every order's snapshot stays referenced from a global list (`remember_order`); with --leak-threads each
second also starts a thread that waits forever for a reply (`wait_for_reply`). Prints the client's
counters as JSON at the end.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import otel_leakproc.client

ORDER_HISTORY: list[bytes] = []
NEVER = threading.Event()


def remember_order(i: int) -> None:
    # The leak: every order's snapshot stays referenced from a global list.
    ORDER_HISTORY.append(bytes(8192) + str(i).encode())


def price_basket(n: int) -> int:
    return sum(k * k for k in range(n))


def wait_for_reply() -> None:
    NEVER.wait()


def main() -> None:
    url, seconds = sys.argv[1], float(sys.argv[2])
    leak_threads = "--leak-threads" in sys.argv
    # Captures every second for the test (a service keeps the 30 s default); the CPU budget is raised to
    # match, since the 5 % default would stretch 1 s intervals on a loaded test machine.
    otel_leakproc.client.start(service="orders-py", url=url, instance="orders-0", interval=1, max_cpu_fraction=0.5)
    deadline = time.monotonic() + seconds
    next_thread = time.monotonic()
    i = 0
    while time.monotonic() < deadline:
        remember_order(i)
        price_basket(300)
        if leak_threads and time.monotonic() >= next_thread:
            threading.Thread(target=wait_for_reply, daemon=True).start()
            next_thread += 0.5
        i += 1
        time.sleep(0.002)
    client = otel_leakproc.client.get_client()
    stats = client.stats() if client is not None else {}
    otel_leakproc.client.stop(timeout=5)
    print(json.dumps({"retained": len(ORDER_HISTORY), **stats}), flush=True)


if __name__ == "__main__":
    main()
