"""Admission before reading (issue 16): many clients sending large bodies slowly against a real
`otel-leakproc serve`. Bodies are admitted (queue, bytes in flight) before they are read, so the
server's memory follows `ingest.max_bytes_in_flight`, not the number of open connections."""

from __future__ import annotations

import json
import select
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from hostile import padded_heap_profile
from proc_memory import status_kib
from serve_support import ServeProcess, metric

from otel_leakproc.receiver.proto import push_pb2

BODY_BYTES = 8 * 1024 * 1024
CLIENTS = 16
BUDGET = 16 * 1024 * 1024
# docs/serve.md: body memory is bounded by about 3 x ingest.max_bytes_in_flight (the body, its copy to a
# decoder worker, the request buffer); 16 clients x 8 MiB would be 128 MiB read at once without admission.
GROWTH_BOUND_KIB = 3 * BUDGET // 1024 + 16 * 1024


def slow_upload(port: int, body: bytes, chunk: int = 512 * 1024, pause: float = 0.05) -> int:
    """POST `body` in chunks with pauses; stops sending as soon as the server answers. Returns the status."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        head = (
            f"POST /ingest?name=slow&format=pprof HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
            "Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode())
        for offset in range(0, len(body), chunk):
            if select.select([sock], [], [], 0)[0]:
                break  # answered before the whole body was sent: refused at admission
            try:
                sock.sendall(body[offset : offset + chunk])
            except OSError:
                break
            time.sleep(pause)
        reply = b""
        while b"\r\n" not in reply:
            data = sock.recv(4096)
            if not data:
                break
            reply += data
    return int(reply.split(b" ", 2)[1])


def test_slow_large_bodies_are_admitted_before_reading_and_memory_follows_the_budget(tmp_path: Path) -> None:
    config = {
        "state": {"dir": ""},
        "ingest": {"workers": 1, "queue_size": 4, "max_bytes_in_flight": BUDGET, "max_queue_share_per_tenant": 1},
    }
    proc = ServeProcess(config, tmp_path)
    proc.start()
    try:
        assert proc.proc is not None
        pid = proc.proc.pid
        body = padded_heap_profile(BODY_BYTES)
        assert len(body) > BODY_BYTES - 2000
        idle = status_kib(pid, "VmRSS")
        with ThreadPoolExecutor(CLIENTS) as pool:
            statuses = list(pool.map(lambda _: slow_upload(proc.http_port, body), range(CLIENTS * 2)))
        peak = status_kib(pid, "VmHWM")
        assert statuses.count(200) >= 2, statuses
        assert set(statuses) <= {200, 429}, statuses
        refused = metric(proc.url, "otel_leakproc_profiles_rejected_total", reason="bytes_in_flight")
        assert refused == statuses.count(429)
        assert metric(proc.url, "otel_leakproc_queue_depth") == 0
    finally:
        proc.kill()
    growth = peak - idle
    print(f"idle {idle} KiB, peak {peak} KiB, growth {growth} KiB, statuses {sorted(statuses)}")
    assert growth < GROWTH_BOUND_KIB, f"grew {growth} KiB"


def test_a_client_that_disconnects_mid_body_gives_its_admission_back(tmp_path: Path) -> None:
    config = {"state": {"dir": ""}, "ingest": {"workers": 1, "queue_size": 2, "max_bytes_in_flight": BUDGET}}
    proc = ServeProcess(config, tmp_path)
    proc.start()
    try:
        body = padded_heap_profile(BODY_BYTES)
        for _ in range(4):  # more than the queue and the budget hold at once
            with socket.create_connection(("127.0.0.1", proc.http_port), timeout=10) as sock:
                head = f"POST /ingest?name=gone&format=pprof HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
                sock.sendall(head.encode() + body[: 1024 * 1024])
                time.sleep(0.2)  # admitted and reading
        deadline = time.monotonic() + 10
        while metric(proc.url, "otel_leakproc_queue_depth") != 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert metric(proc.url, "otel_leakproc_queue_depth") == 0
        assert slow_upload(proc.http_port, body, pause=0) == 200
        assert slow_upload(proc.http_port, body, pause=0) == 200
    finally:
        proc.kill()


def _push(service: str, raw: bytes) -> bytes:
    request = push_pb2.PushRequest()
    series = request.series.add()
    for key, value in {"__name__": "memory", "service_name": service, "instance": "i-1"}.items():
        series.labels.add(name=key, value=value)
    series.samples.add(raw_profile=raw, ID="1")
    return request.SerializeToString()


GRPC_MESSAGE = 3 * 1024 * 1024
GRPC_LIMITS = {"max_connections": 4, "max_concurrent_streams": 2, "max_message_bytes": 4 * 1024 * 1024}
# docs/serve.md: arriving gRPC messages hold at most connections x streams x message size (32 MiB here),
# plus what admission lets through to decoding; 40 x 3 MiB would be 120 MiB buffered without the limits.
GRPC_GROWTH_BOUND_KIB = 2 * 4 * 2 * 4 * 1024 + 16 * 1024


# grpc-core counts a finished stream against max_concurrent_streams until its transport has closed it, so a
# client that opens the next stream at once is now and then refused one (RST_STREAM REFUSED_STREAM, which
# the call sees as UNAVAILABLE: 1 call in 40 in 1 run in 3 here, 4 in 40 in a CI run). Clients retry
# UNAVAILABLE; over one connection this client does as docs/serve.md tells pushers of large messages to:
# a retry policy, and a retry buffer that holds the message (grpc-core's default buffer is 256 KiB).
RETRYING = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "push.v1.PusherService"}],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


def _grpc_pushes(port: int, channels: int, calls: int) -> tuple[list[str], int, int]:
    """`calls` concurrent 3 MiB pushes spread over `channels` separate connections (a single connection
    retries UNAVAILABLE, see `RETRYING`; many race for the server's connection limit without retrying)."""
    body = padded_heap_profile(GRPC_MESSAGE)
    messages = [_push(f"svc-{i}", body) for i in range(calls)]
    options: list[tuple[str, str | int]] = [
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ("grpc.use_local_subchannel_pool", 1),
    ]
    if channels == 1:
        options += [("grpc.service_config", RETRYING), ("grpc.per_rpc_retry_buffer_size", 8 * 1024 * 1024)]
    opened = [grpc.insecure_channel(f"127.0.0.1:{port}", options=options) for _ in range(channels)]

    def call(i: int) -> str:
        push = opened[i % channels].unary_unary(
            "/push.v1.PusherService/Push", request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        try:
            push(messages[i], timeout=60)
        except grpc.RpcError as exc:
            return str(exc.code().name)
        return "OK"

    try:
        with ThreadPoolExecutor(calls) as pool:
            return list(pool.map(call, range(calls))), len(body), len(messages[0])
    finally:
        for channel in opened:
            channel.close()


def test_grpc_pushes_are_bounded_by_connections_streams_and_message_size(tmp_path: Path) -> None:
    """grpc-core buffers each message before admission runs; the transport limits bound that instead:
    40 concurrent 3 MiB pushes over 40 connections and over one stay within the stated bound."""
    config = {
        "state": {"dir": ""},
        "server": {"grpc": GRPC_LIMITS},
        "ingest": {"workers": 1, "queue_size": 2, "max_queue_share_per_tenant": 1},
    }
    proc = ServeProcess(config, tmp_path)
    proc.start()
    try:
        assert proc.proc is not None
        pid = proc.proc.pid
        idle = status_kib(pid, "VmRSS")
        spread, _, size = _grpc_pushes(proc.grpc_port, channels=40, calls=40)
        one_connection, _, _ = _grpc_pushes(proc.grpc_port, channels=1, calls=40)
        peak = status_kib(pid, "VmHWM")
        accepted = metric(proc.url, "otel_leakproc_profiles_received_total", tenant="default", dialect="push")
    finally:
        proc.kill()
    growth = peak - idle
    print(f"message {size} B; growth {growth} KiB; 40 connections {sorted(spread)}; one {sorted(one_connection)}")
    assert GRPC_MESSAGE - 4096 < size < GRPC_LIMITS["max_message_bytes"]
    # Connections over the limit are closed (UNAVAILABLE, which gRPC clients retry); the queue refuses
    # with RESOURCE_EXHAUSTED; nothing else.
    assert set(spread) <= {"OK", "UNAVAILABLE", "RESOURCE_EXHAUSTED"}, spread
    # Each of the 40 calls has a connection of its own, so at most max_connections of them reach a handler.
    assert spread.count("OK") >= 1, spread
    assert spread.count("OK") + spread.count("RESOURCE_EXHAUSTED") <= GRPC_LIMITS["max_connections"], spread
    # Over one connection the calls beyond two wait on the client instead of piling up in the server, and
    # none is refused by admission.
    assert one_connection.count("OK") == len(one_connection), one_connection
    assert accepted >= spread.count("OK") + one_connection.count("OK")
    assert growth < GRPC_GROWTH_BOUND_KIB, f"grew {growth} KiB"


def test_a_grpc_message_over_max_message_bytes_is_refused_naming_the_limit(tmp_path: Path) -> None:
    config = {"state": {"dir": ""}, "server": {"grpc": {"max_message_bytes": 1024 * 1024}}}
    proc = ServeProcess(config, tmp_path)
    proc.start()
    try:
        statuses, _, size = _grpc_pushes(proc.grpc_port, channels=1, calls=1)
    finally:
        proc.kill()
    assert size > 1024 * 1024
    assert statuses == ["RESOURCE_EXHAUSTED"]
