"""Helpers for the export tests: a real rotel collector and a recording OTLP receiver behind it.

The chain under test is `OtlpExporter -> rotel-agent (real collector) -> RecordingReceiver`, so the tests
assert on the exact protobufs the collector forwarded. Everything binds 127.0.0.1 on free ports and is
stopped by PID.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import toolchain
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric

ROTEL_AGENT = Path(toolchain.tool("rotel-agent"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def plain(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [plain(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: plain(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which) if which else None


def attrs(items: Any) -> dict[str, Any]:
    return {kv.key: plain(kv.value) for kv in items}


class RecordingReceiver(metrics_service_pb2_grpc.MetricsServiceServicer, logs_service_pb2_grpc.LogsServiceServicer):
    """An OTLP/gRPC metrics and logs receiver that keeps every request."""

    def __init__(self) -> None:
        self.metrics: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self.logs: list[logs_service_pb2.ExportLogsServiceRequest] = []
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(self, self.server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC method name)
        with self._lock:
            if isinstance(request, metrics_service_pb2.ExportMetricsServiceRequest):
                self.metrics.append(request)
                return metrics_service_pb2.ExportMetricsServiceResponse()
            self.logs.append(request)
            return logs_service_pb2.ExportLogsServiceResponse()

    def log_records(self) -> list[tuple[dict[str, Any], LogRecord]]:
        with self._lock:
            return [
                (attrs(rl.resource.attributes), record)
                for request in self.logs
                for rl in request.resource_logs
                for sl in rl.scope_logs
                for record in sl.log_records
            ]

    def metric_points(self) -> list[tuple[dict[str, Any], Metric]]:
        with self._lock:
            return [
                (attrs(rm.resource.attributes), metric)
                for request in self.metrics
                for rm in request.resource_metrics
                for sm in rm.scope_metrics
                for metric in sm.metrics
            ]

    def stop(self) -> None:
        self.server.stop(0).wait()


class Rotel:
    """A real rotel-agent forwarding OTLP to `forward_port` over gRPC."""

    def __init__(self, workdir: Path, forward_port: int) -> None:
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.workdir = workdir
        self.forward_port = forward_port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.workdir / "rotel.out"
        args = [
            str(ROTEL_AGENT), "start",
            "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
            "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}",
            "--pid-file", str(self.workdir / "rotel.pid"),
            "--log-file", str(self.workdir / "rotel.log"),
            "--exporter", "otlp",
            "--otlp-exporter-endpoint", f"http://127.0.0.1:{self.forward_port}",
            "--otlp-exporter-protocol", "grpc",
        ]  # fmt: skip
        with log.open("ab") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ})
        wait_for(self._listening, 20, "rotel to listen")

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"rotel exited: {(self.workdir / 'rotel.out').read_text()[-2000:]}")
        for port in (self.grpc_port, self.http_port):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) != 0:
                    return False
        return True

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


def rotel_chain(tmp_path: Path) -> Iterator[tuple[Rotel, RecordingReceiver]]:
    receiver = RecordingReceiver()
    rotel = Rotel(tmp_path, receiver.port)
    rotel.start()
    try:
        yield rotel, receiver
    finally:
        rotel.stop()
        receiver.stop()
