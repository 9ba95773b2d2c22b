"""Helpers for the scrape tests: build and run the Go test programs, and a fake Kubernetes API server.

The fake is the only fake in these tests, at the Kubernetes API boundary: a loopback HTTP server that
answers the pod list and watch requests of the official `kubernetes` client (`GET /api/v1/pods`,
`GET /api/v1/namespaces/{ns}/pods`, `labelSelector`, `watch=true&resourceVersion=...` streamed as JSON
lines with chunked encoding) from the recorded objects in tests/testdata/k8s/. It keeps the current pod
set and a resourceVersion like the API server: a list returns the current pods, a watch streams the events
after the requested version and then waits for more (`push`) until `timeoutSeconds`.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import toolchain
from serve_support import TESTDATA

K8S = TESTDATA / "k8s"
GO = TESTDATA / "go"


def build_go(name: str, work: Path) -> Path:
    return toolchain.go_build(GO / name, work / name)


@contextmanager
def go_program(binary: Path, **env: str) -> Iterator[str]:
    """Run a built test program; yields its `HOST:PORT`."""
    proc = subprocess.Popen([str(binary)], stdout=subprocess.PIPE, env={**os.environ, **env}, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on "), line
        yield line.split()[-1]
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def recorded_pods() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((K8S / "pods-list.json").read_text())
    return data


def recorded_events() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (K8S / "pods-watch.jsonl").read_text().splitlines() if line.strip()]


def pointed_at(obj: dict[str, Any], address: str) -> dict[str, Any]:
    """A copy of a recorded pod whose pod IP and port annotation reach `address` (a program on loopback)."""
    pod = copy.deepcopy(obj)
    host, _, port = address.rpartition(":")
    if pod.get("status", {}).get("podIP"):
        pod["status"]["podIP"] = host
        pod["status"]["podIPs"] = [{"ip": host}]
    pod["metadata"].setdefault("annotations", {})["otel-leakproc.io/port"] = port
    return pod


class FakeKubernetesApi:
    """See the module docstring. `requests` records every request's path and query."""

    def __init__(self, pods: list[dict[str, Any]], resource_version: int) -> None:
        self.pods = {self._key(p): p for p in pods}
        self.version = resource_version
        self.events: list[tuple[int, dict[str, Any]]] = []
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.gone_before = 0  # watches from an older version get 410 Gone
        self._cond = threading.Condition()
        self._closing = False
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                api.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def _key(pod: dict[str, Any]) -> str:
        return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": "scraper", "user": {"token": "test-token"}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "scraper"}}],
                    "current-context": "fake",
                }
            )
        )
        return path

    def push(self, event: dict[str, Any]) -> None:
        """Apply one watch event (its object's resourceVersion is the new version) and stream it."""
        with self._cond:
            obj = event["object"]
            version = int(obj["metadata"]["resourceVersion"])
            self.version = max(self.version, version)
            if event["type"] in ("ADDED", "MODIFIED"):
                self.pods[self._key(obj)] = obj
            elif event["type"] == "DELETED":
                self.pods.pop(self._key(obj), None)
            self.events.append((version, event))
            self._cond.notify_all()

    def expire(self) -> None:
        """Make every open and future watch from the current version fail with 410 Gone (etcd compaction)."""
        with self._cond:
            self.gone_before = self.version + 1
            self._cond.notify_all()

    def start(self) -> FakeKubernetesApi:
        self.thread.start()
        return self

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def watch_count(self) -> int:
        return sum(1 for _, q in self.requests if q.get("watch") == ["true"])

    # -- request handling (server threads) -----------------------------------------------------------

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = parse_qs(parts.query)
        self.requests.append((parts.path, query))
        segments = parts.path.strip("/").split("/")
        if segments == ["api", "v1", "pods"]:
            namespace = ""
        elif len(segments) == 5 and segments[:3] == ["api", "v1", "namespaces"] and segments[4] == "pods":
            namespace = segments[3]
        else:
            self._send(handler, 404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404})
            return
        selector = query.get("labelSelector", [""])[0]
        if query.get("watch") == ["true"]:
            self._watch(handler, namespace, selector, int(query.get("resourceVersion", ["0"])[0] or 0), query)
            return
        with self._cond:
            items = [p for p in self.pods.values() if self._selected(p, namespace, selector)]
            body = {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": str(self.version)}}
            body["items"] = items
        self._send(handler, 200, body)

    @staticmethod
    def _selected(pod: dict[str, Any], namespace: str, selector: str) -> bool:
        meta = pod["metadata"]
        if namespace and meta["namespace"] != namespace:
            return False
        labels = meta.get("labels", {})
        for term in filter(None, (t.strip() for t in selector.split(","))):
            key, _, value = term.partition("=")
            if labels.get(key) != value:
                return False
        return True

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _watch(
        self, handler: BaseHTTPRequestHandler, namespace: str, selector: str, since: int, query: dict[str, list[str]]
    ) -> None:
        timeout = float(query.get("timeoutSeconds", ["300"])[0])
        deadline = time.monotonic() + timeout
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

        def chunk(obj: dict[str, Any]) -> None:
            data = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
            handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            handler.wfile.flush()

        sent = since
        try:
            while True:
                with self._cond:
                    if since < self.gone_before:
                        pending: list[dict[str, Any]] | None = None
                    else:
                        pending = [e for v, e in self.events if v > sent]
                        sent = max([sent] + [v for v, _ in self.events])
                    if pending == [] and not self._closing:
                        self._cond.wait(min(0.5, max(0.0, deadline - time.monotonic())))
                if pending is None:
                    chunk(
                        {
                            "type": "ERROR",
                            "object": {
                                "kind": "Status",
                                "apiVersion": "v1",
                                "status": "Failure",
                                "message": f"too old resource version: {since} ({self.gone_before})",
                                "reason": "Expired",
                                "code": 410,
                            },
                        }
                    )
                    break
                for event in pending:
                    obj = event["object"]
                    if event["type"] == "BOOKMARK" or self._selected(obj, namespace, selector):
                        chunk(event)
                if self._closing or time.monotonic() >= deadline:
                    break
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        handler.close_connection = True


@contextmanager
def fake_kubernetes(pods: list[dict[str, Any]], resource_version: int) -> Iterator[FakeKubernetesApi]:
    api = FakeKubernetesApi(pods, resource_version).start()
    try:
        yield api
    finally:
        api.close()
