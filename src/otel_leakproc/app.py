"""`otel-leakproc serve`: one process, one asyncio loop, an HTTP and a gRPC server over one ingest core.

Start-up: restore the series state (checkpoints and journal, `state/`), start the decoder workers, bind the
servers, then report ready. Every accepted profile is journaled before its upload is answered, so neither
SIGTERM nor SIGKILL loses an answered upload (a machine crash: see `state.fsync`). Shutdown (SIGTERM/SIGINT,
or `Service.stop`): report not ready, stop admitting uploads, wait for those in progress (bounded by
`server.shutdown_timeout_seconds`), stop the servers, close the journal, flush the exporters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from prometheus_client import Counter

from otel_leakproc.cluster.peers import LocalProcess, PeerGroup
from otel_leakproc.config import Settings
from otel_leakproc.exporter import build_exporters
from otel_leakproc.exporter.base import Exporter
from otel_leakproc.exporter.self_telemetry import build_self_telemetry
from otel_leakproc.processor.pipeline import Pipeline
from otel_leakproc.processor.state import SeriesTable, StateError
from otel_leakproc.query import web as web_assets
from otel_leakproc.query.routes import QueryRoutes
from otel_leakproc.query.series import SeriesReader, TableReader, series_object
from otel_leakproc.receiver.grpc_server import GrpcReceiver, bind
from otel_leakproc.receiver.http_server import HttpReceiver, start_http_server
from otel_leakproc.receiver.ingest import IngestCore, Sink, worker_count
from otel_leakproc.receiver.scrape.manager import ScrapeManager
from otel_leakproc.state.codec import CodecError
from otel_leakproc.state.health import StateUnusableError
from otel_leakproc.state.journal import CHECKPOINT_FILE, FileStore, check_usable
from otel_leakproc.state.legacy import legacy_snapshot, restore_legacy, retire
from otel_leakproc.state.persist import SLICE_SECONDS, StatePersistence
from otel_leakproc.state.store import MemoryStore, SeriesStore
from otel_leakproc.telemetry import Telemetry

log = logging.getLogger("otel_leakproc")


class Service:
    """The running service. `start()` then `stop()`; ports are known after `start()` (0 binds any)."""

    def __init__(
        self,
        settings: Settings,
        *,
        exporters: Sequence[Exporter] | None = None,
        store: SeriesStore | None = None,
        process: LocalProcess | None = None,
    ) -> None:
        """`process`: this one's place among several `serve` processes (`server.processes`), else None."""
        self.settings = settings
        self.telemetry = Telemetry()
        self.table = SeriesTable(settings.processor, settings.state.max_series, settings.state.max_series_per_tenant)
        cluster_store = None
        if store is None:
            state = settings.state
            if state.backend == "redis":
                cluster_store = store = _cluster_store(settings)
            else:
                store = FileStore(state.dir, state.fsync) if state.dir else MemoryStore()
        self.store = store
        self.persistence = StatePersistence(self.table, store, settings.processor)
        self.pipeline = Pipeline(self.table, self.telemetry, self.persistence)
        self.exporters = (
            build_exporters(settings.export, settings.state.dir, instruments=self.telemetry.export)
            if exporters is None
            else list(exporters)
        )
        for exporter in self.exporters:
            self.pipeline.subscribe(exporter)
        # backend: redis: any replica accepts any upload into Redis; partition owners apply it (cluster/).
        self.cluster = None if cluster_store is None else _cluster_node(settings, cluster_store, self.pipeline)
        # server.processes > 1: the other processes hand this one the points of its series, and ask it for
        # its series and metrics (cluster/peers.py).
        self.peers = (
            None
            if process is None or process.count == 1
            else PeerGroup(
                process,
                self.pipeline.apply,
                TableReader(self.table),
                self.telemetry.render,
                settings.decode.to_caps(),
            )
        )
        # The read side: this process's table, every local process's tables, or with the Redis backend every
        # replica's published series.
        self.reader: SeriesReader = TableReader(self.table)
        sink: Sink = self.pipeline.accept
        if self.cluster is not None:
            self.reader, sink = self.cluster, self.cluster.accept
        elif self.peers is not None:
            self.reader, sink = self.peers, self.peers.accept
        self.core = IngestCore(
            settings.server,
            settings.ingest,
            settings.decode.to_limits(),
            sink,
            self.telemetry,
            settings.decode.to_caps(),
            # Uploads are refused (503) before they are decoded while the store cannot keep them.
            self.store.health,
            # With shared state a tenant's upload rate is counted in Redis, once for the whole cluster.
            None if self.cluster is None else self.cluster.rate_limiter(),
            # Several local processes: an /ingest upload goes to its series' owner before it is decoded.
            self.peers if self.peers is not None and self.cluster is None else None,
        )
        if self.peers is not None:
            self.peers.uploads = self.core.decode_forwarded
            self.peers.decoded = self.core.keep_decoded
        self.scrape: ScrapeManager | None = None
        if settings.scrape.enabled:
            tenant = settings.scrape.tenant or settings.server.auth.default_tenant
            self.scrape = ScrapeManager(settings.scrape, self.core, self.telemetry.registry, tenant)
            self.pipeline.subscribe(self.scrape.hook)  # a flagged series' target is asked for a dump
        # Own health metrics over OTLP with otel-leakproc's own resource, when an endpoint is configured.
        self.self_telemetry = build_self_telemetry(settings.export, self.telemetry.registry)
        self.http_port = 0
        self.grpc_port = 0
        self._ready = False
        self._runner: web.AppRunner | None = None
        self._grpc: grpc.aio.Server | None = None
        self._grpc_receiver: GrpcReceiver | None = None
        self._state_tasks: list[asyncio.Task[None]] = []
        self._migrated: Path | None = None
        self.persistence_dropped = Counter(
            "otel_leakproc_state_dropped_records",
            "Unreadable journal or checkpoint records dropped at start-up (a torn or corrupt tail).",
            registry=self.telemetry.registry,
        )
        self._stopped = asyncio.Event()
        self._final_saved = True
        self._grpc_serving = True
        self.telemetry.state_writable.set_function(lambda: 1.0 if self.store.health.ok else 0.0)
        self.telemetry.ready.set_function(lambda: 1.0 if self.is_ready() else 0.0)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        server = self.settings.server
        metrics = self.telemetry.render if self.peers is None else self.peers.metrics
        receiver = HttpReceiver(server, self.core, metrics, self.is_ready, self.not_ready_reason)
        application = receiver.application()
        QueryRoutes(server.auth, self.reader, targets=self.scrape, static_dir=web_assets.static_dir()).add_to(
            application
        )
        # A state folder that cannot be used is a reason not to start at all (StateUnusableError): accepting
        # uploads that could never be kept would be worse.
        if isinstance(self.store, FileStore):
            await asyncio.to_thread(check_usable, self.store.directory)
        # HTTP first: /livez answers while a large snapshot is restored (tens of seconds at 10,000 series),
        # /readyz says 503 and uploads are refused with Retry-After until everything below is up.
        self._runner, self.http_port = await start_http_server(
            application, server.http.address, server.http.tls, reuse_port=self.peers is not None
        )
        if await asyncio.to_thread(self._restore):
            self.pipeline.restored(later=self.persistence.stale)
        if self._migrated is not None:
            await self._finish_migration(self._migrated)
        await self.core.start()
        if self.peers is not None:
            await self.peers.start()
            if self.scrape is not None and self.cluster is None:  # each target is scraped by its series' owner
                peers, scrape = self.peers, self.scrape
                scrape.owns = lambda service, instance: peers.owns(scrape.tenant, service, instance)
        if server.grpc.enabled:
            self._grpc_receiver = GrpcReceiver(server, self.core)
            self._grpc = self._grpc_receiver.build()
            self.grpc_port = bind(self._grpc, server.grpc)
            await self._grpc.start()
            await self._grpc_receiver.set_serving(True)
        self._state_tasks = [
            asyncio.create_task(self._checkpoint_loop(), name="state-checkpoints"),
            asyncio.create_task(self._sync_loop(), name="state-fsync"),
            asyncio.create_task(self._materialize_loop(), name="state-materialize"),
        ]
        if self.cluster is None and self.settings.processor.evaluate_every_seconds > 0:
            self._state_tasks.append(asyncio.create_task(self._settle_loop(), name="series-settle"))
        if self.cluster is not None:
            await self.cluster.start()
            if self.scrape is not None:  # each target is scraped by the owner of its series only
                cluster, scrape, tenant = self.cluster, self.scrape, self.scrape.tenant
                scrape.owns = lambda service, instance: bool(cluster.owns(tenant, service, instance))
                cluster.on_change = scrape.reassign
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
        self._shutdown_exporters(1.0)
        if self.self_telemetry is not None:
            self.self_telemetry.shutdown(1.0)

    def is_ready(self) -> bool:
        return self._ready and self.store.health.ok and (self.peers is None or self.peers.all_up())

    def not_ready_reason(self) -> str:
        if not self._ready:
            return "starting or shutting down"
        if self.peers is not None and not self.peers.all_up():
            return "waiting for the other serve processes (server.processes)"
        return self.store.health.reason

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
        for task in self._state_tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.pipeline.settle()  # the exporters' last reports and events cover every accepted profile
        if self._grpc is not None:
            await self._grpc.stop(grace=max(0.0, min(2.0, deadline - time.monotonic())))
        if self._runner is not None:
            await self._runner.cleanup()
        if self.cluster is not None:
            await self.cluster.stop()  # hands its partitions over at once
        if self.peers is not None:  # the others' uploads are refused (503) from now on
            await self.peers.stop()
        self.store.close()  # everything accepted is in the journal already; this makes it durable
        self._final_saved = self.store.health.ok
        self._shutdown_exporters(max(0.5, deadline - time.monotonic()))
        if self.self_telemetry is not None:  # last, so its final export holds the final counts
            self.self_telemetry.shutdown(max(0.5, deadline - time.monotonic()))
        self.core.close()
        self._stopped.set()
        if self._final_saved:
            log.info("stopped: %d series kept in %s", len(self.table), self.store.describe())
        else:
            log.error(
                "stopped: the state could NOT be made durable in %s (%s); what was accepted since the last "
                "successful write may be lost (%d series in memory)",
                self.store.describe(),
                self.store.health.reason,
                len(self.table),
            )
        return self._final_saved

    def _shutdown_exporters(self, timeout_seconds: float) -> None:
        """Flush and stop every exporter; one that fails is logged and does not keep the others running."""
        for exporter in self.exporters:
            try:
                exporter.shutdown(timeout_seconds)
            except Exception:
                log.exception("exporter %s failed to shut down", type(exporter).__name__)

    # -- state ----------------------------------------------------------------------------------

    def _restore(self) -> bool:
        """Load the state into the table (in a thread, before uploads are admitted). True if restored."""
        self._migrated = legacy_snapshot(self.settings.state.dir) if self.settings.state.dir else None
        try:
            if self._migrated is not None and not (Path(self.settings.state.dir) / CHECKPOINT_FILE).exists():
                count = restore_legacy(self._migrated, self.table)
                # The journal is empty unless a migration was interrupted after uploads were accepted.
                points = self.persistence.apply_loaded_points(self.store.load())
                log.info(
                    "restored %d series from the old snapshot %s (+%d journal points)", count, self._migrated, points
                )
                return True
            self._migrated = None
            result = self.persistence.restore()
        except StateError as exc:  # the old snapshot is unreadable: keep it aside, start empty
            assert self._migrated is not None
            log.error(
                "state: %s; starting with no history (the file is kept as %s)",
                exc,
                retire(self._migrated, ".unreadable"),
            )
            self._migrated = None
            self.store.load()
            return False
        except (CodecError, OSError) as exc:
            self.store.health.fail(f"cannot read the state in {self.settings.state.dir}: {exc}")
            log.error("state: cannot restore from %s: %s", self.store.describe(), exc)
            return False
        if result.dropped_records:
            self.persistence_dropped.inc(result.dropped_records)
        log.info(
            "restored %d series from %s (%d checkpoints, %d journal points, %d unreadable records dropped)"
            " in %.2f s; detectors are rebuilt in the background",
            result.series,
            self.store.describe(),
            result.checkpoints,
            result.points,
            result.dropped_records,
            result.seconds,
        )
        return result.series > 0

    async def _finish_migration(self, path: Path) -> None:
        self.persistence.dirty.update(t.key for t in self.table)
        if await self.persistence.compact():
            log.info("state: the old snapshot is migrated; it was renamed %s", retire(path))

    async def _sync_grpc_health(self) -> None:
        """gRPC health follows readiness: NOT_SERVING while state cannot be written, SERVING again after."""
        if self._grpc_receiver is None or not self._ready:
            return
        serving = self.store.health.ok
        if serving != self._grpc_serving:
            self._grpc_serving = serving
            await self._grpc_receiver.set_serving(serving)

    async def _checkpoint_loop(self) -> None:
        state = self.settings.state
        took = 0.0
        last = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            await self._sync_grpc_health()
            due = time.monotonic() - last >= max(state.snapshot_interval_seconds, took)
            if not due and self.persistence.journal_bytes_since_compaction < state.journal_max_bytes:
                continue
            if not self.persistence.dirty:
                last = time.monotonic()
                continue
            start = time.monotonic()
            self.pipeline.settle()  # the checkpoint keeps each series' report of its latest point
            if await self.persistence.compact():
                self.telemetry.snapshot_last_success.set(time.time())
            else:
                self.telemetry.snapshot_failures.inc()
            last = time.monotonic()
            took = last - start  # never spend more than half the time checkpointing

    async def _sync_loop(self) -> None:
        period = self.settings.state.fsync_interval_ms / 1000 if self.settings.state.fsync == "interval" else 1.0
        while True:
            await asyncio.sleep(period)
            if self.settings.state.fsync == "interval":
                await asyncio.to_thread(self.store.sync)
            self.store.probe()  # a failing store is retried here, so /readyz can turn true again

    async def _settle_loop(self) -> None:
        """Evaluate the series whose latest profiles were appended without an evaluation (cheap appends)."""
        period = self.settings.processor.evaluate_every_seconds
        while True:
            await asyncio.sleep(period)
            while not self.pipeline.settle(time.perf_counter() + SLICE_SECONDS):
                await asyncio.sleep(0)  # in slices: uploads are served between them

    async def _materialize_loop(self) -> None:
        while True:
            done = self.persistence.materialize_some(time.perf_counter() + SLICE_SECONDS)
            for tracked in self.persistence.rebuilt_stale():
                self.pipeline.report(tracked)  # now with its journal points applied
            if done:
                return
            await asyncio.sleep(SLICE_SECONDS)


def _cluster_store(settings: Settings) -> Any:
    from otel_leakproc.cluster.connection import connect  # noqa: PLC0415 (redis only when configured)
    from otel_leakproc.cluster.node import ClusterStore  # noqa: PLC0415

    return ClusterStore(connect(settings.state.redis), settings.state.redis.url)


def _cluster_node(settings: Settings, store: Any, pipeline: Pipeline) -> Any:
    from otel_leakproc.cluster.node import ClusterNode  # noqa: PLC0415

    return ClusterNode(settings, store, pipeline, series_object)


async def run(settings: Settings, process: LocalProcess | None = None) -> int:
    """Run until SIGTERM or SIGINT, then shut down gracefully. Returns the exit code."""
    service = Service(settings, process=process)
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
