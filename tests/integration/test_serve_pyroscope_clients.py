"""Real pyroscope-io clients push to `serve`: 1.4.0 (Connect push, memory profiles) and 0.8.16 (`/ingest`).

Each client lives in its own virtualenv (`make client-venvs`, run by .ci/run); the workload is a Python
service that leaks order snapshots into a global list.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import toolchain
from serve_support import FAST_PROCESSOR, TESTDATA, http, make_settings, metric, running_service, series

WORKLOAD = TESTDATA / "pyroscope" / "leaky_service.py"


def client_python(version: str) -> Path:
    return Path(toolchain.tool(f"pyroscope-io-{version}"))


def run_workload(version: str, url: str, seconds: float, interval: int) -> str:
    done = subprocess.run(
        [str(client_python(version)), str(WORKLOAD), url, str(seconds), str(interval)],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_pyroscope_io_140_python_heap_leak_is_flagged_with_the_leaking_function(tmp_path: Path) -> None:
    settings = make_settings("", processor=FAST_PROCESSOR)
    with running_service(settings) as svc:
        run_workload("1.4.0", svc.url, 16, 1)
        found = series(svc.url, service="orders-py")
        assert [s["kind"] for s in found] == ["heap"]
        heap = found[0]
        assert heap["instance"] == "orders-0"
        assert heap["resource"]["service.namespace"] == "shop"
        assert heap["profiles"] >= 10
        assert heap["status"] in ("suspected", "confirmed"), heap["evidence"]
        top = heap["top_growers"][0]
        assert top["function"] == "remember_order"
        assert top["file"].endswith("leaky_service.py")
        assert top["share"] > 0.5
        # CPU profiles ride along in the same pushes and are skipped, not rejected. Not one per push: a run on
        # a loaded machine counted 7 for 16 heap profiles.
        assert metric(svc.url, "otel_leakproc_profiles_ignored_total", dialect="push") >= 1
        assert metric(svc.url, "otel_leakproc_profiles_rejected_total", reason="bad_protobuf") == 0


def test_pyroscope_io_0816_uploads_over_ingest_are_accepted(tmp_path: Path) -> None:
    # 0.8.16 has no memory profiling: it sends CPU profiles to /ingest every 10 s. They must be accepted
    # (200, counted as ignored), so the client logs no errors; there is no leak signal to track.
    with running_service(make_settings("")) as svc:
        run_workload("0.8.16", svc.url, 12, 10)
        deadline = time.monotonic() + 15
        while (
            time.monotonic() < deadline
            and metric(svc.url, "otel_leakproc_profiles_ignored_total", dialect="ingest") < 1
        ):
            time.sleep(0.5)
        assert metric(svc.url, "otel_leakproc_profiles_ignored_total", dialect="ingest") >= 1
        assert (
            sum(
                v
                for v in [
                    metric(svc.url, "otel_leakproc_profiles_rejected_total", reason=r)
                    for r in ("bad_protobuf", "bad_gzip", "unsupported")
                ]
            )
            == 0
        )
        assert series(svc.url) == []
        assert http("GET", f"{svc.url}/readyz").status == 200


@pytest.fixture(autouse=True)
def _venvs_exist() -> None:
    for version in ("1.4.0", "0.8.16"):
        client_python(version)
