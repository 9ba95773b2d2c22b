"""Settings, backoff and delivery of the client against a real local HTTP server (the receiver's boundary)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from otel_leakproc.client._client import Client
from otel_leakproc.client._config import ClientConfig, config_from, parse_resource_attributes
from otel_leakproc.client._transport import backoff_seconds, parse_retry_after
from otel_leakproc.receiver.proto import push_pb2

SRC = Path(__file__).resolve().parents[3] / "src"


class Receiver(ThreadingHTTPServer):
    """Answers each POST with the next scripted (status, headers); records what it was sent."""

    def __init__(self, answers: list[tuple[int, dict[str, str]]]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answers = answers
        self.requests: list[tuple[str, dict[str, str], bytes, float]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.requests.append(
            (self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
        )
        status, headers = self.server.answers.pop(0) if self.server.answers else (200, {})
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    server = Receiver(list(getattr(request, "param", [])))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def tracing() -> Iterator[None]:
    was = tracemalloc.is_tracing()
    if not was:
        tracemalloc.start(4)
    try:
        yield
    finally:
        if not was:
            tracemalloc.stop()


def test_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("7", now=0) == 7
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10
    assert parse_retry_after("soon", now=0) is None
    assert parse_retry_after(None, now=0) is None
    assert parse_retry_after("999999", now=0) == 3600


def test_backoff_doubles_with_jitter_up_to_the_cap_and_honours_retry_after() -> None:
    rng = random.Random(1)
    delays = [backoff_seconds(n, None, 60, rng) for n in range(1, 10)]
    for n, delay in enumerate(delays, start=1):
        base = min(60, 2 ** (n - 1))
        assert base / 2 <= delay <= base
    assert backoff_seconds(1, 30.0, 60, rng) == 30.0


def test_resource_attributes_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "OTEL_LEAKPROC_URL": "http://leakproc:4040",
        "OTEL_RESOURCE_ATTRIBUTES": "service.name=billing,service.instance.id=pod-3,service.namespace=shop,"
        "k8s.pod.name=billing-7d%2C1,broken",
        "OTEL_LEAKPROC_TENANT": "team-a",
        "OTEL_LEAKPROC_INTERVAL": "15",
        "OTEL_LEAKPROC_FRAMES": "lots",
        "OTEL_LEAKPROC_THREADS": "false",
    }
    config = config_from(env)
    assert config.url == "http://leakproc:4040"
    assert config.service == "billing"
    assert config.instance == "pod-3"
    assert dict(config.attributes) == {"service.namespace": "shop", "k8s.pod.name": "billing-7d,1"}
    assert config.tenant == "team-a"
    assert config.interval_seconds == 15
    assert config.frames == 16  # not a number: logged, default kept
    assert config.threads is False
    assert config_from({**env, "OTEL_SERVICE_NAME": "orders"}, service=None).service == "orders"
    assert config_from(env, service="explicit", interval=2).service == "explicit"
    assert parse_resource_attributes("") == {}


def test_bad_environment_values_fall_back_but_bad_arguments_raise() -> None:
    assert config_from({"OTEL_LEAKPROC_INTERVAL": "0.01"}).interval_seconds == 30
    assert config_from({"OTEL_LEAKPROC_URL": "leakproc:4040"}).url == "http://127.0.0.1:4040"
    with pytest.raises(ValueError, match="interval_seconds"):
        config_from({}, interval=0.01)
    with pytest.raises(ValueError, match="url"):
        config_from({}, url="ftp://x")


@pytest.mark.parametrize(
    "receiver", [[(503, {"Retry-After": "1"}), (429, {"Retry-After": "1"}), (200, {})]], indirect=True
)
@pytest.mark.usefixtures("tracing")
def test_retryable_answers_back_off_then_deliver_everything_in_order(receiver: Receiver) -> None:
    client = Client(ClientConfig(service="orders", url=receiver.url, threads=False, tenant="t1", token="s3cret"))
    client.capture_into_buffer()
    client.flush()
    assert client.stats()["buffered"] == 1
    assert client.stats()["consecutive_failures"] == 1
    time.sleep(1.05)
    client.capture_into_buffer()
    client.flush()
    assert client.stats()["buffered"] == 2
    time.sleep(1.05)
    client.flush()
    stats = client.stats()
    assert stats["buffered"] == 0
    assert stats["profiles_delivered"] == 2
    assert stats["captures_dropped"] == 0
    assert len(receiver.requests) == 3
    path, headers, body, _ = receiver.requests[-1]
    assert path == "/push.v1.PusherService/Push"
    assert headers["content-type"] == "application/proto"
    assert headers["x-scope-orgid"] == "t1"
    assert headers["authorization"] == "Bearer s3cret"
    message = push_pb2.PushRequest.FromString(body)
    assert len(message.series) == 2  # both buffered captures in one request, oldest first


@pytest.mark.parametrize("receiver", [[(400, {}), (200, {})]], indirect=True)
@pytest.mark.usefixtures("tracing")
def test_a_refused_push_is_dropped_not_retried(receiver: Receiver) -> None:
    client = Client(ClientConfig(service="orders", url=receiver.url, threads=False))
    client.capture_into_buffer()
    client.flush()
    stats = client.stats()
    assert stats["captures_rejected"] == 1
    assert stats["buffered"] == 0
    assert "HTTP 400" in stats["last_error"]


@pytest.mark.usefixtures("tracing")
def test_an_unreachable_receiver_fills_a_bounded_buffer_and_counts_drops() -> None:
    client = Client(ClientConfig(service="orders", url="http://127.0.0.1:9", threads=False, max_buffered=3))
    for _ in range(5):
        client.capture_into_buffer()
    client.flush()
    stats = client.stats()
    assert stats["buffered"] == 3
    assert stats["captures_dropped"] == 2
    assert stats["requests_failed"] == 1
    assert "cannot reach" in stats["last_error"]


def test_the_client_imports_nothing_but_the_standard_library(tmp_path: Path) -> None:
    # -S: no site-packages at all, so numpy, aiohttp, grpc and protobuf cannot even be found.
    script = (
        "import sys, otel_leakproc.client as c\n"
        "client = c.start(service='probe', url='http://127.0.0.1:9', interval=1)\n"
        "client.capture_into_buffer()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'aiohttp', 'grpc', 'google', 'yaml'))\n"
        "c.stop(timeout=1)\n"
        "print(heavy, client.stats()['captures'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", script],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] 1"
