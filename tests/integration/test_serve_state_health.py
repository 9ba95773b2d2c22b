"""The state store failing is visible and honest (issue 16), against a real `otel-leakproc serve`:
/readyz says why, uploads get 503 with Retry-After instead of 200s that would be lost, the service
recovers by itself, a failed final save exits non-zero with a truthful log line, and an unusable state
folder stops the start with a clear message."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from serve_support import STEADY_LEAK, ServeProcess, fill_disk, http, metric, small_disk

PROFILES = sorted(STEADY_LEAK.glob("*.pb.gz"))


def upload(url: str, index: int) -> int:
    return http("POST", f"{url}/ingest?name=checkout&format=pprof", PROFILES[index].read_bytes()).status


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def grpc_health(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    return int(reply.status)


@pytest.fixture(name="disk")
def disk_fixture(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "disk") as mount:
        yield mount


def refused_once_full(url: str, disk: Path) -> Path:
    """Fill the disk under the journal, upload until one is refused (the journal's last page may take a
    few records first); returns the filler file."""
    filler = fill_disk(disk)
    for index in range(1, 12):
        if upload(url, index) != 200:
            return filler
    raise AssertionError("no upload was refused on a full disk")


def test_unwritable_state_makes_readyz_false_uploads_503_and_recovers(tmp_path: Path, disk: Path) -> None:
    proc = ServeProcess({"state": {"dir": str(disk / "state"), "fsync": "always"}}, tmp_path)
    proc.start()
    try:
        assert upload(proc.url, 0) == 200
        filler = refused_once_full(proc.url, disk)
        ready = http("GET", f"{proc.url}/readyz")
        assert ready.status == 503
        assert ready.json()["status"] == "not ready"
        assert "no space left" in ready.json()["reason"], ready.json()

        # While the store fails, uploads are refused before they are decoded, and say why.
        refused = http("POST", f"{proc.url}/ingest?name=checkout&format=pprof", PROFILES[12].read_bytes())
        assert refused.status == 503
        assert refused.json()["code"] == "unavailable"
        assert "state cannot be written" in refused.json()["message"]
        assert int(refused.headers["retry-after"]) >= 1
        assert metric(proc.url, "otel_leakproc_state_writable") == 0
        assert metric(proc.url, "otel_leakproc_ready") == 0
        wait_for(lambda: grpc_health(proc.grpc_port) == health_pb2.HealthCheckResponse.NOT_SERVING)
        assert metric(proc.url, "otel_leakproc_profiles_rejected_total", reason="state_unavailable") >= 1

        # Space returns: the store's probe succeeds and uploads are accepted again, without a restart.
        filler.unlink()
        wait_for(lambda: http("GET", f"{proc.url}/readyz").status == 200)
        assert metric(proc.url, "otel_leakproc_state_writable") == 1
        assert metric(proc.url, "otel_leakproc_ready") == 1
        wait_for(lambda: grpc_health(proc.grpc_port) == health_pb2.HealthCheckResponse.SERVING)
        assert upload(proc.url, 13) == 200
        answered = http("GET", f"{proc.url}/api/v1/series").json()["series"][0]["profiles"]
        assert proc.signal(signal.SIGTERM) == 0
        assert "stopped: 1 series kept" in proc.stderr.read_text()
    finally:
        proc.kill()

    proc.start()  # every upload answered 200, before and after the failure, survived it
    try:
        assert http("GET", f"{proc.url}/api/v1/series").json()["series"][0]["profiles"] == answered
    finally:
        proc.kill()


def test_a_failed_final_save_exits_non_zero_and_says_so(tmp_path: Path, disk: Path) -> None:
    proc = ServeProcess({"state": {"dir": str(disk / "state"), "fsync": "always"}}, tmp_path)
    proc.start()
    try:
        assert upload(proc.url, 0) == 200
        refused_once_full(proc.url, disk)
        assert proc.signal(signal.SIGTERM) == 1
        log = proc.stderr.read_text()
        assert "stopped: the state could NOT be made durable" in log
        assert "no space left" in log
        assert "series kept" not in log
    finally:
        proc.kill()


def test_an_unusable_state_folder_stops_the_start_with_a_clear_message(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("a file where the state folder should be")
    proc = ServeProcess({"state": {"dir": str(state)}}, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "otel_leakproc", "serve", "--config", str(proc.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert f"cannot start: state.dir {str(state)!r} is not a folder" in result.stderr
    assert "starting with no history" not in result.stderr
