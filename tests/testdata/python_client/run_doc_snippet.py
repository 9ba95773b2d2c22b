"""Runs one configuration snippet from docs/integrations.md, then a leaking workload, then shuts down.

Usage: python run_doc_snippet.py SNIPPET_FILE SECONDS

The snippet is executed exactly as written (it reads addresses and intervals from the environment, as
the documentation shows). The workload keeps every order's snapshot in a global list (`remember_order`).
"""

from __future__ import annotations

import sys
import time

ORDER_HISTORY: list[bytes] = []


def remember_order(i: int) -> None:
    # The leak: every order's snapshot stays referenced from a global list.
    ORDER_HISTORY.append(bytes(16384) + str(i).encode())


def price_basket(n: int) -> int:
    return sum(k * k for k in range(n))


def main() -> None:
    path, seconds = sys.argv[1], float(sys.argv[2])
    with open(path, encoding="utf-8") as f:
        snippet = f.read()
    exec(compile(snippet, path, "exec"), {"__name__": "__doc_snippet__"})  # the snippet comes from our own docs
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        remember_order(i)
        price_basket(300)
        i += 1
        time.sleep(0.002)
    if "otel_leakproc.client" in sys.modules:
        sys.modules["otel_leakproc.client"].stop(timeout=5)
    if "pyroscope" in sys.modules:
        sys.modules["pyroscope"].shutdown()
    print("retained", len(ORDER_HISTORY), flush=True)


if __name__ == "__main__":
    main()
