"""The decoder worker pool (`receiver/worker_pool.py`) with real worker processes inside a real service:
a worker killed mid-decode fails that upload only, counted, and is replaced; workers ignore SIGTERM;
errors cross back; stopping the service ends every worker."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from proc_memory import alive
from serve_support import STEADY_LEAK, RunningService, http, make_settings, metric, running_service

from otel_leakproc.receiver.worker_pool import JOIN_SECONDS

PROFILES = sorted(STEADY_LEAK.glob("*.pb.gz"))


@pytest.fixture
def svc() -> Iterator[RunningService]:
    # inline_max_bytes 0: every upload goes to a worker, however small
    settings = make_settings("", ingest={"workers": 2, "inline_max_bytes": 0})
    with running_service(settings) as running:
        yield running


def post(svc: RunningService, name: str, index: int) -> int:
    body = PROFILES[index % len(PROFILES)].read_bytes()
    return http("POST", f"{svc.url}/ingest?name={name}&format=pprof", body).status


def pids(svc: RunningService) -> list[int]:
    async def read() -> list[int]:
        return svc.service.core.worker_pids

    result: list[int] = svc.call(read())
    return result


def in_workers(svc: RunningService) -> int:
    async def read() -> int:
        return svc.service.core.uploads_in_workers

    result: int = svc.call(read())
    return result


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def crashed(svc: RunningService) -> float:
    return metric(svc.url, "otel_leakproc_profiles_rejected_total", reason="decoder_crashed")


def test_a_worker_killed_mid_decode_fails_its_upload_only_and_is_replaced(svc: RunningService) -> None:
    first, second = pids(svc)
    assert crashed(svc) == 0
    for pid in (first, second):
        os.kill(pid, signal.SIGSTOP)  # each will hold one upload, undecoded, until we decide
    try:
        with ThreadPoolExecutor(4) as clients:
            replies: list[Future[int]] = [clients.submit(post, svc, f"svc-{i}", i) for i in range(4)]
            # two in each worker's socket: the one it decodes and the next
            wait_for(lambda: in_workers(svc) == 4, "both workers to hold two uploads")
            os.kill(first, signal.SIGKILL)
            os.kill(second, signal.SIGCONT)
            statuses = sorted(reply.result(30) for reply in replies)
    finally:
        for pid in (first, second):
            if alive(pid):
                os.kill(pid, signal.SIGCONT)
    # the upload the killed worker was on fails; the one queued behind it is decoded by another worker
    assert statuses == [200, 200, 200, 500]
    assert crashed(svc) == 1
    wait_for(lambda: len(pids(svc)) == 2, "a replacement worker")
    now = pids(svc)
    assert first not in now
    assert second in now
    wait_for(lambda: not alive(first), "the killed worker to be reaped")
    assert [post(svc, f"after-{i}", i) for i in range(6)] == [200] * 6
    assert crashed(svc) == 1


def test_workers_ignore_sigterm_and_errors_cross_back_counted(svc: RunningService) -> None:
    for pid in pids(svc):
        os.kill(pid, signal.SIGTERM)  # e.g. systemd signalling the whole group: the server drains them
    assert post(svc, "term", 0) == 200
    assert len(pids(svc)) == 2
    assert all(alive(pid) for pid in pids(svc))
    before = metric(svc.url, "otel_leakproc_profiles_rejected_total", reason="bad_gzip")
    reply = http(
        "POST", f"{svc.url}/ingest?name=bad&format=pprof", b"\x1f\x8b" + b"\x00" * 64, {"Content-Encoding": "gzip"}
    )
    assert reply.status == 400, reply.body
    assert metric(svc.url, "otel_leakproc_profiles_rejected_total", reason="bad_gzip") == before + 1
    assert crashed(svc) == 0


def test_stopping_the_service_ends_every_worker() -> None:
    with running_service(make_settings("", ingest={"workers": 2, "inline_max_bytes": 0})) as running:
        workers = pids(running)
        assert len(workers) == 2
        assert post(running, "x", 0) == 200
        stopping = time.monotonic()
    # each worker ends on its own when its socket closes: not killed after JOIN_SECONDS
    assert time.monotonic() - stopping < JOIN_SECONDS
    wait_for(lambda: not any(alive(pid) for pid in workers), "the workers to end", timeout=1)
