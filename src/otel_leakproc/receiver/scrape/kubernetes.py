"""Pod discovery: list + watch pods through the Kubernetes API with the official client.

The `kubernetes` package (the `kubernetes` extra) is imported only when discovery is enabled. It brings the
configuration (in-cluster service account or kubeconfig, TLS, tokens) and the request building; the pod
objects are kept as the API's JSON (only a few fields are read, see `targets.pod_target`).

One thread per watched scope (a namespace, or the whole cluster) runs the Kubernetes list/watch protocol:
list (remember `resourceVersion`), watch from there (ADDED / MODIFIED / DELETED / BOOKMARK), re-open the
watch when the server ends it, list again when the version is too old (410 Gone) or after an error (with
a backoff). Every change is handed to the event loop with `loop.call_soon_threadsafe`; `stop()` interrupts
a blocked read by shutting the response down.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from otel_leakproc.receiver.scrape.config import KubernetesDiscoveryConfig

log = logging.getLogger(__name__)

Pod = Mapping[str, Any]
# (scope, None, {key: pod}) replaces the scope's pods (after a list); (scope, key, pod | None) changes one.
ChangeCallback = Callable[[str, "str | None", "Pod | dict[str, Pod] | None"], None]
ErrorCallback = Callable[[str, str], None]

MAX_LINE_BYTES = 8 * 1024 * 1024  # one watch event (a pod object is a few KB)
_BACKOFF_START = 0.5
_BACKOFF_MAX = 30.0


class DiscoveryError(Exception):
    """The API answered something the watcher cannot use."""


def pod_key(pod: Pod) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _kubernetes(module: str) -> Any:
    """A module of the optional `kubernetes` package, imported on first use (typed loosely on purpose:
    releases differ in whether they ship type information)."""
    return importlib.import_module(f"kubernetes.{module}")


def _api_client(config: KubernetesDiscoveryConfig) -> Any:
    client, kube_config = _kubernetes("client"), _kubernetes("config")
    if not config.kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        kube_config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    return kube_config.new_client_from_config(
        config_file=config.kubeconfig or None, context=config.context or None, persist_config=False
    )


def _lines(response: Any) -> Iterator[bytes]:
    """Newline-separated watch events from a streamed response, each bounded."""
    buffer = bytearray()
    for chunk in response.stream(amt=None, decode_content=True):
        buffer.extend(chunk)
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if line.strip():
                yield line
        if len(buffer) > MAX_LINE_BYTES:
            raise DiscoveryError(f"a watch event is larger than {MAX_LINE_BYTES} bytes")
    if buffer.strip():
        yield bytes(buffer)


class PodWatcher:
    """List and watch the pods of the configured namespaces; see the module docstring."""

    def __init__(
        self,
        config: KubernetesDiscoveryConfig,
        loop: asyncio.AbstractEventLoop,
        on_change: ChangeCallback,
        on_error: ErrorCallback,
    ) -> None:
        self._config = config
        self._loop = loop
        self._on_change = on_change
        self._on_error = on_error
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._responses: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._core: Any = None

    def start(self) -> None:
        """Build the API client (reads the kubeconfig or service account) and start one thread per scope.

        Raises:
            Exception: whatever the client raises for an unusable configuration (the caller logs it).
        """
        self._core = _kubernetes("client").CoreV1Api(_api_client(self._config))
        for scope in self._config.namespaces or ("",):
            thread = threading.Thread(target=self._run, args=(scope,), name=f"pod-watch-{scope or 'all'}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the threads; safe to call twice and before `start`."""
        self._stop.set()
        with self._lock:
            responses = list(self._responses.values())
        for response in responses:
            with contextlib.suppress(Exception):
                response.shutdown()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        if self._core is not None:
            with contextlib.suppress(Exception):
                self._core.api_client.close()
            self._core = None

    # -- the list/watch loop (runs in the scope's thread) --------------------------------------------

    def _post(self, *args: Any) -> None:
        if self._stop.is_set():
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            self._loop.call_soon_threadsafe(*args)

    def _call(self, scope: str, **kwargs: Any) -> Any:
        selector = {"label_selector": self._config.label_selector} if self._config.label_selector else {}
        if scope:
            return self._core.list_namespaced_pod(scope, _preload_content=False, **selector, **kwargs)
        return self._core.list_pod_for_all_namespaces(_preload_content=False, **selector, **kwargs)

    def _run(self, scope: str) -> None:
        backoff = _BACKOFF_START
        while not self._stop.is_set():
            try:
                version: str | None = self._list(scope)
                backoff = _BACKOFF_START
                while version is not None and not self._stop.is_set():
                    version = self._watch(scope, version)  # None after 410 Gone: list again
            except Exception as exc:
                if self._stop.is_set():
                    return
                message = f"{type(exc).__name__}: {exc}"[:500]
                log.warning("pod discovery (%s): %s; retrying in %.1f s", scope or "all namespaces", message, backoff)
                self._post(self._on_error, scope, message)
                self._stop.wait(backoff)
                backoff = min(_BACKOFF_MAX, backoff * 2)

    def _list(self, scope: str) -> str:
        response = self._call(scope, _request_timeout=(10, 60))
        try:
            data = json.loads(response.data)
        finally:
            response.release_conn()
        if not isinstance(data, dict) or not isinstance(data.get("items"), list):
            raise DiscoveryError("the pod list has no items")
        pods = {pod_key(p): p for p in data["items"] if isinstance(p, dict)}
        self._post(self._on_change, scope, None, pods)
        self._post(self._on_error, scope, "")
        return str((data.get("metadata") or {}).get("resourceVersion", ""))

    def _watch(self, scope: str, version: str) -> str | None:
        """Follow one watch request; the version to resume from, or None when a new list is needed."""
        timeout = self._config.watch_timeout_seconds
        response = self._call(
            scope,
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
            _request_timeout=(10, timeout + 30),
        )
        with self._lock:
            self._responses[scope] = response
        try:
            if self._stop.is_set():
                return version
            for line in _lines(response):
                event = json.loads(line)
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        return None
                    raise DiscoveryError(f"watch error {obj.get('code')}: {obj.get('message', '')}")
                version = str((obj.get("metadata") or {}).get("resourceVersion", version))
                if kind in ("ADDED", "MODIFIED"):
                    self._post(self._on_change, scope, pod_key(obj), obj)
                elif kind == "DELETED":
                    self._post(self._on_change, scope, pod_key(obj), None)
                if self._stop.is_set():
                    break
            return version
        finally:
            with self._lock:
                self._responses.pop(scope, None)
            with contextlib.suppress(Exception):
                response.release_conn()
