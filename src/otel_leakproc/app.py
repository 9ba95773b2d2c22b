"""`otel-leakproc serve`: one process, one asyncio loop, an HTTP and a gRPC server over one ingest core.

Start-up: restore the state snapshot, start the decoder workers, bind the servers, then report ready.
Shutdown (SIGTERM/SIGINT, or `Service.stop`): report not ready, stop admitting uploads, wait for those in
progress (bounded by `server.shutdown_timeout_seconds`), stop the servers, write a final snapshot, flush
the exporters. So SIGTERM loses nothing that was accepted; SIGKILL loses at most the updates since the
last periodic snapshot (`state.snapshot_interval_seconds`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from typing import Any

import grpc
from aiohttp import web

from otel_leakproc import web as web_assets
from otel_leakproc.config import Settings
from otel_leakproc.exporter import build_exporters
from otel_leakproc.exporter.base import Exporter
from otel_leakproc.exporter.self_telemetry import build_self_telemetry
from otel_leakproc.model import SeriesKey, Status
from otel_leakproc.pipeline import Pipeline
from otel_leakproc.processor.state import (
    FileStateStore,
    MemoryStateStore,
    SeriesTable,
    StateError,
    StateStore,
    StateUnusableError,
    TrackedSeries,
)
from otel_leakproc.receiver.auth import visible_tenants
from otel_leakproc.receiver.grpc_server import GrpcReceiver, bind
from otel_leakproc.receiver.http_server import HttpReceiver, start_http_server
from otel_leakproc.receiver.ingest import IngestCore, worker_count
from otel_leakproc.receiver.scrape.manager import ScrapeManager
from otel_leakproc.report import series_to_json
from otel_leakproc.store_health import StoreHealth
from otel_leakproc.telemetry import Telemetry

log = logging.getLogger("otel_leakproc")

NANOS = 1_000_000_000
SNAPSHOT_SLICE_SECONDS = 0.02
UNHEALTHY_RETRY_SECONDS = 5.0
_STATUS_ORDER = {Status.CONFIRMED: 0, Status.SUSPECTED: 1, Status.OK: 2, Status.INSUFFICIENT_DATA: 3}


def series_object(tracked: TrackedSeries, *, timeline: bool = True) -> dict[str, Any]:
    """One `/api/v1/series` object: the analyze --json series object plus id, tenant, resource, timeline."""
    key = tracked.key
    out = series_to_json(tracked.report)
    out["tenant"] = key.tenant
    out["id"] = f"{key.tenant}/{key.service}/{key.instance}/{key.kind.value}"
    out["resource"] = dict(tracked.resource)
    if timeline:
        out["timeline"] = [[t / NANOS, v] for t, v in tracked.detector.timeline()]
    return out


def _sort_key(tracked: TrackedSeries) -> tuple[int, str, str, str, str]:
    key = tracked.key
    return (_STATUS_ORDER[tracked.report.status], key.tenant, key.service, key.instance, key.kind.value)


class Service:
    """The running service. `start()` then `stop()`; ports are known after `start()` (0 binds any)."""

    def __init__(
        self,
        settings: Settings,
        *,
        exporters: Sequence[Exporter] | None = None,
        store: StateStore | None = None,
    ) -> None:
        self.settings = settings
        self.telemetry = Telemetry()
        self.table = SeriesTable(settings.processor, settings.state.max_series, settings.state.max_series_per_tenant)
        self.pipeline = Pipeline(
            self.table,
            build_exporters(settings.export, settings.state.dir) if exporters is None else exporters,
            self.telemetry,
        )
        if store is None:
            store = FileStateStore(settings.state.dir) if settings.state.dir else MemoryStateStore()
        self.store = store
        # Whether the state store can keep what is accepted: read by /readyz, the ingest core (503) and
        # otel_leakproc_state_writable; a future journal or Redis store reports to the same signal.
        self.state_health = StoreHealth("state")
        self.core = IngestCore(
            settings.server,
            settings.ingest,
            settings.decode.to_limits(),
            self.pipeline.accept,
            self.telemetry,
            settings.decode.to_caps(),
            self.state_health,
        )
        self.scrape: ScrapeManager | None = None
        if settings.scrape.enabled:
            tenant = settings.scrape.tenant or settings.server.auth.default_tenant
            self.scrape = ScrapeManager(settings.scrape, self.core, self.telemetry.registry, tenant)
            self.pipeline.exporters.append(self.scrape.hook)
        # Own health metrics over OTLP with otel-leakproc's own resource, when an endpoint is configured.
        self.self_telemetry = build_self_telemetry(settings.export, self.telemetry.registry)
        self.http_port = 0
        self.grpc_port = 0
        self._ready = False
        self._runner: web.AppRunner | None = None
        self._grpc: grpc.aio.Server | None = None
        self._grpc_receiver: GrpcReceiver | None = None
        self._snapshotter: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._saved_generation = -1
        self._final_saved = True
        self._grpc_serving = True
        self.telemetry.state_writable.set_function(lambda: 1.0 if self.state_health.ok else 0.0)
        self.telemetry.ready.set_function(lambda: 1.0 if self.is_ready() else 0.0)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        server = self.settings.server
        receiver = HttpReceiver(
            server,
            self.core,
            self._series_api,
            self.telemetry.render,
            self.is_ready,
            static_dir=str(web_assets.static_dir()),
            not_ready_reason=self.not_ready_reason,
        )
        # A state folder that cannot be used is a reason not to start at all (StateUnusableError): accepting
        # uploads that could never be kept would be worse.
        await asyncio.to_thread(self.store.check)
        # HTTP first: /livez answers while a large snapshot is restored (tens of seconds at 10,000 series),
        # /readyz says 503 and uploads are refused with Retry-After until everything below is up.
        self._runner, self.http_port = await start_http_server(
            receiver.application(), server.http.address, server.http.tls
        )
        if await asyncio.to_thread(self._restore):
            self.pipeline.restored()
        await self.core.start()
        if server.grpc.enabled:
            self._grpc_receiver = GrpcReceiver(server, self.core)
            self._grpc = self._grpc_receiver.build()
            self.grpc_port = bind(self._grpc, server.grpc)
            await self._grpc.start()
            await self._grpc_receiver.set_serving(True)
        self._snapshotter = asyncio.create_task(self._snapshot_loop(), name="state-snapshots")
        if self.scrape is not None:
            await self.scrape.start()
        self._ready = True
        scheme = "https" if server.http.tls.enabled else "http"
        host = server.http.address.rpartition(":")[0]
        log.info(
            "serving: HTTP %s://%s:%d (status page /, API /api/v1/series), gRPC %s; %d decoder workers; state: %s",
            scheme,
            host,
            self.http_port,
            f"{server.grpc.address.rpartition(':')[0]}:{self.grpc_port}" if self._grpc else "off",
            worker_count(self.settings.ingest),
            self.store.describe(),
        )

    def close_unstarted(self) -> None:
        """Release what the constructor started (exporter threads) when `start()` refused to run."""
        self.pipeline.shutdown(1.0)
        if self.self_telemetry is not None:
            self.self_telemetry.shutdown(1.0)

    def is_ready(self) -> bool:
        return self._ready and self.state_health.ok

    def not_ready_reason(self) -> str:
        if not self._ready:
            return "starting or shutting down"
        return self.state_health.describe()

    async def stop(self) -> bool:
        """Graceful shutdown within `server.shutdown_timeout_seconds` (see the module docstring).

        Returns:
            False when the final snapshot could not be written (what was accepted since the last good
            snapshot is lost; the log says so), True otherwise.
        """
        if self._stopped.is_set():
            return self._final_saved
        deadline = time.monotonic() + self.settings.server.shutdown_timeout_seconds
        self._ready = False
        if self._grpc_receiver is not None:
            await self._grpc_receiver.set_serving(False)
        if self.scrape is not None:
            await self.scrape.shutdown()
        drained = await self.core.drain(max(0.1, (deadline - time.monotonic()) * 0.6))
        if not drained:
            log.warning(
                "shutdown: %d uploads still decoding at the deadline; they are not acknowledged", self.core.in_flight
            )
        if self._snapshotter is not None:
            self._snapshotter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._snapshotter
        if self._grpc is not None:
            await self._grpc.stop(grace=max(0.0, min(2.0, deadline - time.monotonic())))
        if self._runner is not None:
            await self._runner.cleanup()
        self._final_saved = await self.save_snapshot()
        self.pipeline.shutdown(max(0.5, deadline - time.monotonic()))
        if self.self_telemetry is not None:  # last, so its final export holds the final counts
            self.self_telemetry.shutdown(max(0.5, deadline - time.monotonic()))
        self.core.close()
        self._stopped.set()
        if self._final_saved:
            log.info("stopped: %d series saved to %s", len(self.table), self.store.describe())
        else:
            log.error(
                "stopped: the final snapshot could NOT be written to %s (%s); %d series in memory were not "
                "saved, and updates since the last good snapshot are lost",
                self.store.describe(),
                self.state_health.reason,
                len(self.table),
            )
        return self._final_saved

    # -- state ----------------------------------------------------------------------------------

    def _restore(self) -> bool:
        """Load the snapshot into the table (in a thread, before uploads are admitted). True if restored."""
        try:
            snapshot = self.store.load()
            if snapshot is None:
                return False
            count = self.table.restore(snapshot)
        except StateError as exc:
            self._set_aside(exc)
            return False
        self._saved_generation = self.table.generation  # the file already holds exactly this
        log.info("restored %d series from %s", count, self.store.describe())
        return True

    def _set_aside(self, exc: StateError) -> None:
        # Starting empty beats not starting; the unreadable file is kept for a human to look at.
        log.error("state: %s; starting with no history", exc)
        if isinstance(self.store, FileStateStore) and self.store.path.exists():
            aside = self.store.path.with_name(f"{self.store.path.name}.unreadable-{int(time.time())}")
            with contextlib.suppress(OSError):
                self.store.path.rename(aside)
                log.error("state: the unreadable snapshot was moved to %s", aside)

    async def save_snapshot(self) -> bool:
        if self._saved_generation == self.table.generation and self.state_health.ok:
            return True  # nothing changed since the last snapshot (a failing store is tried again anyway)
        generation = self.table.generation
        # Serialise changed series in slices of at most SNAPSHOT_SLICE_SECONDS of loop time, so uploads
        # keep flowing while thousands of busy series are encoded (a few ms each).
        while not self.table.refresh_fragments(time.perf_counter() + SNAPSHOT_SLICE_SECONDS):
            await asyncio.sleep(0)
        snapshot = self.table.snapshot_text()
        try:
            await asyncio.to_thread(self.store.save, snapshot)
        except OSError as exc:
            self.telemetry.snapshot_failures.inc()
            self.state_health.failed(f"cannot write {self.store.describe()}: {exc.strerror or exc}")
            await self._sync_grpc_health()
            return False
        self._saved_generation = generation
        self.telemetry.snapshot_last_success.set(time.time())
        self.state_health.succeeded()
        await self._sync_grpc_health()
        return True

    async def _sync_grpc_health(self) -> None:
        """gRPC health follows readiness: NOT_SERVING while state cannot be written, SERVING again after."""
        if self._grpc_receiver is None or not self._ready:
            return
        serving = self.state_health.ok
        if serving != self._grpc_serving:
            self._grpc_serving = serving
            await self._grpc_receiver.set_serving(serving)

    async def _snapshot_loop(self) -> None:
        interval = self.settings.state.snapshot_interval_seconds
        took = 0.0
        while True:
            # Never spend more than half the time snapshotting: with many busy series, space them out.
            # A failing store is tried again soon, so uploads are accepted again as soon as it can be written.
            wait = max(interval, took) if self.state_health.ok else min(interval, UNHEALTHY_RETRY_SECONDS)
            await asyncio.sleep(wait)
            start = time.monotonic()
            await self.save_snapshot()
            took = time.monotonic() - start

    # -- API ------------------------------------------------------------------------------------

    async def _series_api(self, request: web.Request) -> dict[str, Any]:
        # AuthError becomes 401 `unauthenticated` with WWW-Authenticate in the HTTP server's error middleware.
        tenants = visible_tenants(self.settings.server.auth, request.headers.get("Authorization"))
        query = request.query
        want_timeline = query.get("timeline", "1") not in ("0", "false")
        selected = []
        for tracked in sorted(self.table, key=_sort_key):
            key = tracked.key
            if tenants is not None and key.tenant not in tenants:
                continue
            if not _matches(key, tracked.report.status, query):
                continue
            selected.append(series_object(tracked, timeline=want_timeline))
        out: dict[str, Any] = {"series": selected}
        if self.scrape is not None:
            # Per-target scrape health (docs/scrape.md), filtered like the series.
            visible = tenants is None or self.scrape.tenant in tenants
            targets = self.scrape.health() if visible else []
            out["targets"] = [
                t for t in targets if all(f not in query or query[f] == t[f] for f in ("service", "instance"))
            ]
        return out


def _matches(key: SeriesKey, status: Status, query: Any) -> bool:
    for field, value in (("tenant", key.tenant), ("service", key.service), ("instance", key.instance)):
        if field in query and query[field] != value:
            return False
    if "kind" in query and query["kind"] != key.kind.value:
        return False
    return not ("status" in query and query["status"] != status.value)


async def run(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT, then shut down gracefully. Returns the exit code."""
    service = Service(settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await service.start()
    except StateUnusableError as exc:
        log.error("cannot start: %s", exc)
        service.close_unstarted()
        return 1
    except OSError as exc:
        log.error("cannot start: %s", exc)
        await service.stop()
        return 1
    await stop.wait()
    log.info("shutting down (signal received)")
    return 0 if await service.stop() else 1
