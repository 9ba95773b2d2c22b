"""The client: a daemon thread that captures heap and thread profiles and pushes them.

Nothing here may disturb the host: every error is caught, logged at most once a minute per kind, and
counted; a capture that costs too much CPU stretches the interval; while the receiver is unreachable,
captures wait in a bounded buffer (the oldest dropped and counted) and retries back off exponentially.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import dataclasses
import gzip
import logging
import platform
import random
import threading
import time
import tracemalloc
import uuid
from dataclasses import dataclass
from typing import Any

from otel_leakproc import __version__
from otel_leakproc.client._capture import HeapCapture, raw_traces, thread_profile
from otel_leakproc.client._config import ClientConfig
from otel_leakproc.client._pprof import push_request
from otel_leakproc.client._resolve import FunctionResolver
from otel_leakproc.client._transport import Outcome, PushTransport, backoff_seconds

LOG = logging.getLogger("otel_leakproc.client")
SCOPE_NAME = "otel_leakproc.client"
LOG_EVERY_SECONDS = 60.0
# Captures per request when draining the buffer (each capture is one or two profiles; the service
# accepts 64 profiles per request by default).
MAX_CAPTURES_PER_REQUEST = 8
MAX_REQUEST_BYTES = 8 * 1024 * 1024


@dataclass(slots=True)
class Capture:
    """One capture, ready to send: (labels, gzipped pprof, sample id) per profile."""

    time_nanos: int
    profiles: list[tuple[tuple[tuple[str, str], ...], bytes, str]]

    @property
    def size(self) -> int:
        return sum(len(p[1]) for p in self.profiles)


@dataclass(slots=True)
class ClientStats:
    """Counters of one client (a copy is returned by `Client.stats()`)."""

    captures: int = 0
    capture_errors: int = 0
    last_capture_cpu_seconds: float = 0.0
    capture_cpu_seconds_total: float = 0.0
    last_heap_bytes: int = 0
    last_heap_objects: int = 0
    last_threads: int = 0
    last_profile_bytes: int = 0
    requests_sent: int = 0
    requests_failed: int = 0
    profiles_delivered: int = 0
    captures_dropped: int = 0
    captures_rejected: int = 0
    buffered: int = 0
    consecutive_failures: int = 0
    last_error: str = ""


class _LogLimiter:
    """At most one log line per key per `every` seconds; the next one says how many were suppressed."""

    def __init__(self, every: float = LOG_EVERY_SECONDS) -> None:
        self._every = every
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, key: str, level: int, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._every:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message += " (%d similar messages suppressed)"
            args = (*args, suppressed)
        with contextlib.suppress(Exception):  # a broken log handler must not break the client
            LOG.log(level, message, *args)


class Client:
    """Captures and pushes profiles of this process; see `otel_leakproc.client.start`."""

    def __init__(self, config: ClientConfig) -> None:
        config.validate()
        self.config = config
        self.session_id = uuid.uuid4().hex[:16]
        self._labels = self._base_labels()
        self._resolver = FunctionResolver()
        self._heap = HeapCapture(self._resolver, config.max_tracebacks)
        self._transport = PushTransport(
            config.url,
            timeout=config.timeout_seconds,
            tenant=config.tenant,
            token=config.token,
            basic_auth=config.basic_auth,
            user_agent=f"otel-leakproc-client/{__version__} python/{platform.python_version()}",
        )
        self._buffer: collections.deque[Capture] = collections.deque()
        self._stats = ClientStats()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_tracemalloc = False
        self._log = _LogLimiter()
        self._rng = random.Random()
        self._retry_at = 0.0
        self._last_capture_nanos = 0
        self._atexit_registered = False

    # -- lifecycle ------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start tracemalloc (unless already tracing) and the sampler thread. Safe to call twice."""
        if self._thread is not None:
            return
        if not tracemalloc.is_tracing():
            tracemalloc.start(self.config.frames)
            self._started_tracemalloc = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="otel-leakproc-client", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)
        self._atexit_registered = True
        LOG.info(
            "otel-leakproc client: service=%s instance=%s every %.0f s to %s",
            self.config.service,
            self.config.instance,
            self.config.interval_seconds,
            self._transport.endpoint,
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, try once to deliver what is buffered (within `timeout`), stop tracemalloc if
        this client started it. Safe to call twice and before `start`."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        if thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None
        if self._atexit_registered:
            atexit.unregister(self._at_exit)
            self._atexit_registered = False
        if self._started_tracemalloc and tracemalloc.is_tracing():
            tracemalloc.stop()
        self._started_tracemalloc = False

    def _at_exit(self) -> None:
        with contextlib.suppress(Exception):  # never raise at interpreter exit
            self.stop(timeout=min(2.0, self.config.timeout_seconds))

    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters (captures, delivered, dropped, failures, last capture cost...)."""
        with self._lock:
            self._stats.buffered = len(self._buffer)
            return {f.name: getattr(self._stats, f.name) for f in dataclasses.fields(ClientStats)}

    # -- the thread -----------------------------------------------------------------------------------

    def _run(self) -> None:
        interval = self.config.interval_seconds
        next_capture = time.monotonic() + interval
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if now >= next_capture:
                    cpu = self.capture_into_buffer()
                    # A capture may use at most max_cpu_fraction of a CPU: slow ones stretch the interval.
                    # The first one is exempt: it fills the function-name caches once.
                    budget = cpu / self.config.max_cpu_fraction if self._stats.captures > 1 else 0.0
                    next_capture = max(next_capture + interval, time.monotonic() + budget)
                    if next_capture < time.monotonic():
                        next_capture = time.monotonic() + interval
                if self._buffer and time.monotonic() >= self._retry_at:
                    self.flush()
                wake = next_capture
                if self._buffer:
                    wake = min(wake, max(self._retry_at, time.monotonic() + 0.05))
                self._stop.wait(max(0.05, wake - time.monotonic()))
            except Exception as exc:  # the host must never see our errors
                self._note_error("loop", exc)
                self._stop.wait(min(interval, 5.0))
        try:
            if self._buffer:
                self.flush(final=True)
        except Exception as exc:
            self._note_error("final flush", exc)

    def _note_error(self, where: str, exc: BaseException) -> None:
        with self._lock:
            self._stats.last_error = f"{where}: {type(exc).__name__}: {exc}"
        self._log.log(where, logging.WARNING, "otel-leakproc client: %s failed: %s: %s", where, type(exc).__name__, exc)

    # -- capture --------------------------------------------------------------------------------------

    def _base_labels(self) -> tuple[tuple[str, str], ...]:
        config = self.config
        labels = [("service_name", config.service)]
        if config.instance:
            labels.append(("service.instance.id", config.instance))
        labels.append(("__session_id__", self.session_id))
        reserved = {"__name__", "service_name", "service.name", "service.instance.id", "__session_id__"}
        labels.extend((k, str(v)) for k, v in config.attributes.items() if k and k not in reserved)
        labels.extend(
            [
                ("process.runtime.name", platform.python_implementation().lower()),
                ("process.runtime.version", platform.python_version()),
                ("otel.scope.name", SCOPE_NAME),
                ("otel.scope.version", __version__),
            ]
        )
        return tuple(labels)

    def capture(self) -> Capture:
        """Take one heap profile (and thread profile) now. Raises on failure (the thread catches it)."""
        now_nanos = time.time_ns()
        duration = now_nanos - self._last_capture_nanos if self._last_capture_nanos else 0
        self._last_capture_nanos = now_nanos
        profiles: list[tuple[tuple[tuple[str, str], ...], bytes, str]] = []
        heap_objects = heap_bytes = threads = 0
        if tracemalloc.is_tracing():
            raw, heap_objects, heap_bytes = self._heap.profile(raw_traces(), now_nanos, duration)
            profiles.append(((("__name__", "memory"), *self._labels), _gzip(raw), uuid.uuid4().hex))
        else:
            self._log.log("not tracing", logging.WARNING, "otel-leakproc client: tracemalloc is off; no heap profile")
        if self.config.threads:
            raw, threads = thread_profile(self.config.max_thread_frames, now_nanos, threading.get_ident())
            profiles.append(((("__name__", "goroutine"), *self._labels), _gzip(raw), uuid.uuid4().hex))
        with self._lock:
            self._stats.last_heap_bytes = heap_bytes
            self._stats.last_heap_objects = heap_objects
            self._stats.last_threads = threads
        return Capture(now_nanos, profiles)

    def capture_into_buffer(self) -> float:
        """Capture and queue for sending; returns the CPU seconds the capture took."""
        started = time.thread_time()
        try:
            item = self.capture()
        except Exception as exc:
            with self._lock:
                self._stats.capture_errors += 1
            self._note_error("capture", exc)
            return time.thread_time() - started
        cpu = time.thread_time() - started
        with self._lock:
            self._stats.captures += 1
            self._stats.last_capture_cpu_seconds = cpu
            self._stats.capture_cpu_seconds_total += cpu
            self._stats.last_profile_bytes = item.size
            if not item.profiles:
                return cpu
            if len(self._buffer) >= self.config.max_buffered:
                self._buffer.popleft()
                self._stats.captures_dropped += 1
            self._buffer.append(item)
        return cpu

    # -- delivery -------------------------------------------------------------------------------------

    def flush(self, final: bool = False) -> None:
        """Send buffered captures, oldest first, until the buffer is empty or the receiver fails."""
        while self._buffer and (final or not self._stop.is_set()):
            with self._lock:
                batch: list[Capture] = []
                size = 0
                for item in self._buffer:
                    if batch and (len(batch) >= MAX_CAPTURES_PER_REQUEST or size + item.size > MAX_REQUEST_BYTES):
                        break
                    batch.append(item)
                    size += item.size
            body = push_request([(labels, [(raw, sid)]) for item in batch for labels, raw, sid in item.profiles])
            result = self._transport.send(body)
            delay = 0.0
            with self._lock:
                self._stats.requests_sent += 1
                if result.outcome is Outcome.RETRY:
                    self._stats.requests_failed += 1
                    self._stats.consecutive_failures += 1
                    self._stats.last_error = result.detail
                    delay = backoff_seconds(
                        self._stats.consecutive_failures, result.retry_after, self.config.max_backoff_seconds, self._rng
                    )
                    self._retry_at = time.monotonic() + delay
                else:
                    sent = {id(item) for item in batch}
                    while self._buffer and id(self._buffer[0]) in sent:
                        self._buffer.popleft()
                    n_profiles = sum(len(item.profiles) for item in batch)
                    if result.outcome is Outcome.DELIVERED:
                        self._stats.profiles_delivered += n_profiles
                        self._stats.consecutive_failures = 0
                    else:
                        self._stats.requests_failed += 1
                        self._stats.captures_rejected += len(batch)
                        self._stats.last_error = result.detail
            if result.outcome is Outcome.RETRY:
                self._log.log(
                    "send",
                    logging.WARNING,
                    "otel-leakproc client: %s; retrying in %.1f s (%d captures buffered)",
                    result.detail,
                    delay,
                    len(self._buffer),
                )
                return
            if result.outcome is Outcome.DROPPED:
                self._log.log("rejected", logging.ERROR, "otel-leakproc client: push refused: %s", result.detail)


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)
