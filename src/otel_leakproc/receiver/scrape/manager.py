"""The scrape receiver: pulls profiles from `net/http/pprof` targets on the service's event loop.

Each target has its own task: wait a random part of the jitter, then scrape every `interval_seconds`
(times a random factor in [1 - jitter, 1 + jitter]). One scrape fetches each profile in turn with an
aiohttp client (per-request timeout, response size bounded, gzip passed on undecoded) and hands it to
`IngestCore.ingest` exactly like an upload, so admission, rate limits, the decode queue, decoding in the
worker processes and the counters are the same. The target's labels become the series identity and the
exported resource (see `targets.py`).

Health per target (last scrape, its duration and error, each profile's status) is kept for
`/api/v1/series` (`targets`) and exported as `otel_leakproc_scrape_*` metrics.

When a heap or goroutine series of a scraped target becomes flagged (`SuspectHook`, subscribed to the
pipeline like an exporter), a `goroutine?debug=2` dump is fetched (at most once per
`dump_on_suspect.min_interval_seconds` per target), ingested as a goroutine text dump (it carries wait
minutes) and summarised as evidence on the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from otel_leakproc.errors import InvalidProfileError, PayloadTooLargeError, RefusedError
from otel_leakproc.model import LeakEvent, ProfileKind, SeriesKey, SeriesReport
from otel_leakproc.receiver.decode.gzip_bound import gunzip_bounded, is_gzip
from otel_leakproc.receiver.ingest import Credentials, DecoderCrashedError, IngestCore
from otel_leakproc.receiver.scrape.config import ScrapeConfig
from otel_leakproc.receiver.scrape.evidence import cut_at_goroutine, dump_evidence
from otel_leakproc.receiver.scrape.kubernetes import Pod, PodWatcher
from otel_leakproc.receiver.scrape.metrics import ScrapeMetrics
from otel_leakproc.receiver.scrape.targets import Target, pod_target, static_target
from otel_leakproc.receiver.uploads import UploadRequest

log = logging.getLogger(__name__)

ABSENT_RETRY_SECONDS = 3600.0  # a profile answered 404 is tried again after this long
MAX_ERROR_CHARS = 1000
_DUMP_KINDS = frozenset({ProfileKind.HEAP, ProfileKind.GOROUTINE, ProfileKind.GOROUTINELEAK})
_KIND_PARAM = {"goroutineleak": "goroutineleak", "mutex": "mutex", "block": "block"}


class FetchError(Exception):
    """A profile request failed; `result` is its label on otel_leakproc_scrape_requests_total."""

    def __init__(self, message: str, result: str) -> None:
        super().__init__(message)
        self.result = result


@dataclass(slots=True)
class ProfileHealth:
    """How fetching one profile of a target goes: its status, last error and when it is tried again."""

    status: str = "pending"  # ok | absent | error | pending
    error: str = ""
    last_success_unix: float | None = None
    retry_at: float = 0.0  # monotonic time an absent profile is tried again


@dataclass(slots=True)
class TargetState:
    """A scrape target and what its scrapes have done so far."""

    target: Target
    task: asyncio.Task[None] | None = None
    scrapes: int = 0
    last_scrape_unix: float | None = None
    last_duration_seconds: float | None = None
    last_error: str = ""
    last_success_unix: float | None = None
    profiles: dict[str, ProfileHealth] = field(default_factory=dict)
    last_dump_monotonic: float | None = None
    dump: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        t = self.target
        return {
            "id": t.id,
            "source": t.source,
            "url": t.base_url,
            "service": t.service,
            "instance": t.instance,
            "labels": dict(t.labels),
            "health": "unknown" if self.last_scrape_unix is None else ("down" if self.last_error else "up"),
            "scrapes": self.scrapes,
            "last_scrape": self.last_scrape_unix,
            "last_duration_seconds": self.last_duration_seconds,
            "last_error": self.last_error,
            "last_success": self.last_success_unix,
            "profiles_available": sorted(p for p, h in self.profiles.items() if h.status == "ok"),
            "profiles": {
                p: {"status": h.status, "error": h.error, "last_success": h.last_success_unix}
                for p, h in self.profiles.items()
            },
            "dump": self.dump,
        }


class SuspectHook:
    """A `SeriesListener` the service subscribes to the pipeline: a flagged heap/goroutine series asks for
    a dump."""

    def __init__(self, on_flagged: Callable[[LeakEvent], None]) -> None:
        self._on_flagged = on_flagged

    def on_report(self, report: SeriesReport, resource: Mapping[str, str]) -> None:
        """Reports are not needed: dumps follow transitions."""

    def on_event(self, event: LeakEvent) -> None:
        if event.report.status.flagged and event.report.key.kind in _DUMP_KINDS:
            self._on_flagged(event)

    def forget(self, key: SeriesKey) -> None:
        """Nothing kept per series."""


class ScrapeManager:
    """Scrapes static and discovered targets; `start()` then `shutdown()` (safe twice, and before start)."""

    def __init__(self, config: ScrapeConfig, core: IngestCore, registry: CollectorRegistry, tenant: str) -> None:
        self.config = config
        self.tenant = tenant
        self.hook = SuspectHook(self._on_flagged)
        self._core = core
        self._metrics = ScrapeMetrics(registry)
        self._states: dict[str, TargetState] = {}
        self._static = [static_target(spec, config) for spec in config.static_targets]
        self._pods: dict[str, dict[str, Pod]] = {}  # scope -> pod key -> pod
        self._discovery_errors: dict[str, str] = {}
        self._session: aiohttp.ClientSession | None = None
        self._watcher: PodWatcher | None = None
        self._dumps: set[asyncio.Task[None]] = set()
        self._running = False
        # With shared state (state.backend: redis) a replica scrapes only the targets whose series it owns:
        # owns(service, instance); `reassign()` when ownership changed.
        self.owns: Callable[[str, str], bool] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start scraping. Discovery problems (no kubeconfig, API down) are logged and retried, never fatal."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.config.timeout_seconds)
        self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
        self._running = True
        self._reconcile()
        kube = self.config.kubernetes
        if kube.enabled:
            self._watcher = PodWatcher(kube, asyncio.get_running_loop(), self._on_pods, self._on_discovery_error)
            try:
                self._watcher.start()
            except Exception as exc:
                log.error("scrape: Kubernetes discovery cannot start: %s", exc)
                self._on_discovery_error("", f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS])
        log.info(
            "scrape: %d static targets, Kubernetes discovery %s, every %.0f s",
            len(self._static),
            "on" if kube.enabled else "off",
            self.config.interval_seconds,
        )

    async def shutdown(self) -> None:
        if not self._running:
            return
        self._running = False
        if self._watcher is not None:
            await asyncio.to_thread(self._watcher.stop)
            self._watcher = None
        tasks = [s.task for s in self._states.values() if s.task is not None] + list(self._dumps)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- targets -------------------------------------------------------------------------------

    def targets(self) -> list[Target]:
        return [s.target for s in self._states.values()]

    def _wanted(self) -> list[Target]:
        found: dict[str, Target] = {t.id: t for t in self._static}
        discovered = []
        for pods in self._pods.values():
            for pod in pods.values():
                target = pod_target(pod, self.config.kubernetes, self.config)
                if target is not None and target.id not in found:
                    discovered.append(target)
        for target in sorted(discovered, key=lambda t: t.id):
            found.setdefault(target.id, target)
        wanted = list(found.values())
        if self.owns is not None:
            owns = self.owns
            wanted = [t for t in wanted if owns(t.service, t.instance)]
        self._metrics.targets_dropped.set(max(0, len(wanted) - self.config.max_targets))
        return wanted[: self.config.max_targets]

    def _reconcile(self) -> None:
        if not self._running:
            return
        wanted = {t.id: t for t in self._wanted()}
        for target_id in list(self._states):
            state = self._states[target_id]
            if wanted.get(target_id) != state.target:
                if state.task is not None:
                    state.task.cancel()
                del self._states[target_id]
                self._metrics.forget(target_id)
        for target_id, target in wanted.items():
            if target_id not in self._states:
                state = TargetState(target)
                state.task = asyncio.create_task(self._run(state), name=f"scrape {target_id}")
                self._states[target_id] = state
        for source in ("static", "kubernetes"):
            self._metrics.targets.labels(source).set(sum(s.target.source == source for s in self._states.values()))

    def reassign(self) -> None:
        """Ownership of series moved between replicas: start and stop scraping targets accordingly."""
        self._reconcile()

    def _on_pods(self, scope: str, key: str | None, change: Any) -> None:
        """From the watcher threads (via the loop): a full list of a scope, or one pod added/changed/deleted."""
        pods = self._pods.setdefault(scope, {})
        if key is None:
            pods.clear()
            pods.update(change)
        elif change is None:
            pods.pop(key, None)
        else:
            pods[key] = change
        self._reconcile()

    def _on_discovery_error(self, scope: str, message: str) -> None:
        if message:
            self._metrics.discovery_errors.inc()
            self._discovery_errors[scope] = message
        else:
            self._discovery_errors.pop(scope, None)

    # -- scraping ------------------------------------------------------------------------------

    async def _run(self, state: TargetState) -> None:
        interval, jitter = self.config.interval_seconds, self.config.jitter
        await asyncio.sleep(random.uniform(0, jitter * interval))
        while True:
            try:
                await self.scrape(state)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scrape of %s failed unexpectedly", state.target.id)
            await asyncio.sleep(interval * random.uniform(1 - jitter, 1 + jitter))

    async def scrape(self, state: TargetState) -> None:
        """Fetch and ingest every profile of the target once; record its health."""
        target = state.target
        started, wall = time.monotonic(), time.time()
        errors: list[str] = []
        for profile in target.profiles:
            health = state.profiles.setdefault(profile, ProfileHealth())
            if health.status == "absent" and time.monotonic() < health.retry_at:
                continue
            result = await self._scrape_profile(target, profile, health)
            self._metrics.requests.labels(profile, result).inc()
            if health.status == "error":
                errors.append(f"{profile}: {health.error}")
        state.scrapes += 1
        state.last_scrape_unix = wall
        state.last_duration_seconds = round(time.monotonic() - started, 6)
        state.last_error = "; ".join(errors)[:MAX_ERROR_CHARS]
        if not errors:
            state.last_success_unix = wall
        self._metrics.duration.observe(state.last_duration_seconds)
        self._metrics.up.labels(target.id).set(0 if errors else 1)
        self._metrics.last_scrape.labels(target.id).set(wall)

    async def _scrape_profile(self, target: Target, profile: str, health: ProfileHealth) -> str:
        try:
            text = self.config.format == "text"
            url = f"{target.base_url}/{profile}" + ("?debug=1" if text else "")
            body, encoding = await self._fetch(url, self.config.max_response_bytes)
        except FetchError as exc:
            if exc.result == "not_found":
                health.status, health.error = "absent", str(exc)
                health.retry_at = time.monotonic() + ABSENT_RETRY_SECONDS
            else:
                health.status, health.error = "error", str(exc)
            return exc.result
        query = [("name", target.ingest_name()), ("format", "text" if text else "pprof")]
        if profile in _KIND_PARAM:
            query.append(("kind", _KIND_PARAM[profile]))
        outcome = await self._ingest(body, encoding, tuple(query), health)
        if outcome == "ok":
            health.status, health.error, health.last_success_unix = "ok", "", time.time()
        return outcome

    async def _ingest(
        self, body: bytes, encoding: str, query: tuple[tuple[str, str], ...], health: ProfileHealth
    ) -> str:
        request = UploadRequest(
            dialect="ingest", body=body, content_encoding=encoding, query=query, received_nanos=time.time_ns()
        )
        try:
            await self._core.ingest(Credentials(), request, tenant=self.tenant)
        except InvalidProfileError as exc:
            health.status, health.error = "error", f"rejected by the decoder: {exc}"[:MAX_ERROR_CHARS]
            return "rejected"
        except RefusedError as exc:
            health.status, health.error = "error", f"refused: {exc}"[:MAX_ERROR_CHARS]
            return "refused"
        except DecoderCrashedError as exc:
            health.status, health.error = "error", f"rejected: {exc}"[:MAX_ERROR_CHARS]
            return "rejected"
        return "ok"

    async def _fetch(self, url: str, limit: int) -> tuple[bytes, str]:
        """The body (at most `limit` bytes) and its Content-Encoding.

        Raises:
            FetchError: not 200 (404: `not_found`), a timeout, a connection error, or a body over `limit`.
        """
        session = self._session
        if session is None:
            raise FetchError("the scraper is stopped", "connection_error")
        try:
            async with asyncio.timeout(self.config.timeout_seconds):
                async with session.get(url, headers={"Accept-Encoding": "gzip"}) as response:
                    if response.status == 404:
                        raise FetchError(f"GET {url}: 404 (the target does not serve this profile)", "not_found")
                    if response.status != 200:
                        raise FetchError(
                            f"GET {url}: HTTP {response.status} {response.reason or ''}".strip(), "http_error"
                        )
                    body = await response.content.read(limit + 1)
                    while len(body) <= limit:
                        more = await response.content.read(limit + 1 - len(body))
                        if not more:
                            break
                        body += more
                    if len(body) > limit:
                        raise FetchError(f"GET {url}: response larger than {limit} bytes", "too_large")
                    return body, response.headers.get("Content-Encoding", "")
        except TimeoutError:
            raise FetchError(
                f"GET {url}: no complete answer within {self.config.timeout_seconds:g} s", "timeout"
            ) from None
        except aiohttp.ClientError as exc:
            raise FetchError(f"GET {url}: {type(exc).__name__}: {exc}", "connection_error") from None

    # -- dumps on suspicion --------------------------------------------------------------------

    def _state_for(self, service: str, instance: str) -> TargetState | None:
        for state in self._states.values():
            if state.target.service == service and state.target.instance == instance:
                return state
        return None

    def _on_flagged(self, event: LeakEvent) -> None:
        key = event.report.key
        if not self._running or not self.config.dump_on_suspect.enabled or key.tenant != self.tenant:
            return
        state = self._state_for(key.service, key.instance)
        if state is None:
            return
        now = time.monotonic()
        if state.last_dump_monotonic is not None and (
            now - state.last_dump_monotonic < self.config.dump_on_suspect.min_interval_seconds
        ):
            self._metrics.dumps.labels("rate_limited").inc()
            return
        state.last_dump_monotonic = now
        task = asyncio.create_task(self._dump(state, event), name=f"dump {state.target.id}")
        self._dumps.add(task)
        task.add_done_callback(self._dumps.discard)

    async def _dump(self, state: TargetState, event: LeakEvent) -> None:
        cfg = self.config.dump_on_suspect
        url = f"{state.target.base_url}/goroutine?debug=2"
        record: dict[str, Any] = {"time": time.time(), "trigger": event.name, "kind": event.report.key.kind.value}
        try:
            body = await self._fetch_dump(url, cfg.max_bytes)
            text = body.decode("utf-8", "replace")
            query = (("name", state.target.ingest_name()), ("format", "goroutine"), ("kind", "goroutine"))
            health = ProfileHealth()
            if await self._ingest(text.encode(), "", query, health) != "ok":
                record["ingest_error"] = health.error
            evidence = await asyncio.to_thread(dump_evidence, text, cfg.max_groups, cfg.max_frames)
        except FetchError as exc:
            record["error"] = str(exc)[:MAX_ERROR_CHARS]
            state.dump = record
            self._metrics.dumps.labels("failed").inc()
            return
        record.update(evidence)
        record["bytes"] = len(body)
        state.dump = record
        self._metrics.dumps.labels("ok").inc()

    async def _fetch_dump(self, url: str, limit: int) -> bytes:
        """A debug=2 dump cut at `limit` bytes (whole goroutines), gzip inflated within the bound."""
        try:
            body, encoding = await self._fetch(url, limit)
        except FetchError as exc:
            if exc.result != "too_large":
                raise
            body, encoding = await self._fetch_prefix(url, limit)
        if encoding.strip().lower() in ("gzip", "x-gzip") and is_gzip(body):
            try:
                body = gunzip_bounded(body, limit, "goroutine dump")
            except PayloadTooLargeError:
                raise FetchError(f"GET {url}: dump larger than {limit} bytes once inflated", "too_large") from None
            except InvalidProfileError as exc:
                raise FetchError(f"GET {url}: {exc}", "http_error") from None
        return body

    async def _fetch_prefix(self, url: str, limit: int) -> tuple[bytes, str]:
        session = self._session
        if session is None:
            raise FetchError("the scraper is stopped", "connection_error")
        try:
            async with asyncio.timeout(self.config.timeout_seconds):
                async with session.get(url) as response:
                    body = await response.content.readexactly(limit)
                    if response.headers.get("Content-Encoding"):
                        raise FetchError(f"GET {url}: compressed dump larger than {limit} bytes", "too_large")
                    return cut_at_goroutine(body.decode("utf-8", "replace")).encode(), ""
        except (TimeoutError, aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
            raise FetchError(f"GET {url}: {type(exc).__name__}: {exc}", "connection_error") from None

    # -- API -----------------------------------------------------------------------------------

    def health(self, services: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Every target's health (for `/api/v1/series`), sorted by id."""
        wanted = set(services) if services is not None else None
        return [
            state.to_json()
            for target_id, state in sorted(self._states.items())
            if wanted is None or state.target.service in wanted
        ]

    @property
    def discovery_errors(self) -> dict[str, str]:
        return dict(self._discovery_errors)
