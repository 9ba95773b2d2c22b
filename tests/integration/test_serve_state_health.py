"""The state store failing is visible and honest (issue 16), against a real `otel-leakproc serve`:
/readyz says why, uploads get 503 with Retry-After instead of 200s that would be lost, the service
recovers by itself, a failed final save exits non-zero with a truthful log line, and an unusable state
folder stops the start with a clear message."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from serve_support import STEADY_LEAK, ServeProcess, http, metric

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


def break_folder(state: Path) -> Path:
    """Put a file where the state folder was (the folder is kept aside to be put back)."""
    aside = state.with_name("state-aside")
    state.rename(aside)
    state.write_text("not a folder")
    return aside


def test_unwritable_state_makes_readyz_false_uploads_503_and_recovers(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = ServeProcess({"state": {"dir": str(state), "snapshot_interval_seconds": 1}}, tmp_path)
    proc.start()
    try:
        assert upload(proc.url, 0) == 200
        aside = break_folder(state)
        assert upload(proc.url, 1) == 200  # accepted before the next snapshot finds out; kept in memory
        wait_for(lambda: http("GET", f"{proc.url}/readyz").status == 503)
        ready = http("GET", f"{proc.url}/readyz").json()
        assert ready["status"] == "not ready"
        assert "state cannot be written" in ready["reason"], ready
        assert str(state) in ready["reason"]

        refused = http("POST", f"{proc.url}/ingest?name=checkout&format=pprof", PROFILES[2].read_bytes())
        assert refused.status == 503
        assert refused.json()["code"] == "unavailable"
        assert int(refused.headers["retry-after"]) >= 1
        assert metric(proc.url, "otel_leakproc_state_writable") == 0
        assert metric(proc.url, "otel_leakproc_ready") == 0
        assert grpc_health(proc.grpc_port) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert metric(proc.url, "otel_leakproc_snapshot_failures_total") >= 1
        assert metric(proc.url, "otel_leakproc_profiles_rejected_total", reason="state_unavailable") == 1

        # Put the folder back: the next retry writes the snapshot and uploads are accepted again.
        state.unlink()
        aside.rename(state)
        wait_for(lambda: http("GET", f"{proc.url}/readyz").status == 200)
        assert metric(proc.url, "otel_leakproc_state_writable") == 1
        assert metric(proc.url, "otel_leakproc_ready") == 1
        assert grpc_health(proc.grpc_port) == health_pb2.HealthCheckResponse.SERVING
        assert upload(proc.url, 2) == 200
        assert proc.signal(signal.SIGTERM) == 0
        assert "stopped: 1 series saved" in proc.stderr.read_text()
    finally:
        proc.kill()

    proc.start()  # the two uploads accepted before and during the failure survived it
    try:
        assert http("GET", f"{proc.url}/api/v1/series").json()["series"][0]["profiles"] == 3
    finally:
        proc.kill()


def test_a_failed_final_save_exits_non_zero_and_says_so(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = ServeProcess({"state": {"dir": str(state), "snapshot_interval_seconds": 3600}}, tmp_path)
    proc.start()
    try:
        assert upload(proc.url, 0) == 200
        break_folder(state)
        assert proc.signal(signal.SIGTERM) == 1
        log = proc.stderr.read_text()
        assert "final snapshot could NOT be written" in log
        assert "series saved" not in log
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
