"""The processor stage of `serve`: decoded profiles in, series updates, events and exports out.

Runs on the event loop (detector updates are milliseconds; a series that is ok is evaluated at most every
`processor.evaluate_every_seconds`, its other profiles only appended, and `settle` catches up). The
points of an upload are journaled (the state store, `state/persist.py`) before any is applied: if the
store cannot take them the upload is refused with `StoreUnavailableError` and nothing changes. An
exporter that fails is logged and counted, never allowed to stop ingestion or another exporter.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from otel_leakproc.exporter.base import Exporter
from otel_leakproc.model import LeakEvent, ProfileKind, SeriesKey
from otel_leakproc.processor.state import SeriesTable, TrackedSeries, UpdateResult
from otel_leakproc.receiver.uploads import UploadRequest, UploadResult
from otel_leakproc.state.persist import StatePersistence
from otel_leakproc.telemetry import Telemetry

log = logging.getLogger(__name__)


class Pipeline:
    """Feeds decoded profiles to the series table and fans the results out to the exporters."""

    def __init__(
        self,
        table: SeriesTable,
        exporters: Sequence[Exporter],
        telemetry: Telemetry,
        persistence: StatePersistence | None = None,
    ) -> None:
        self.table = table
        self.persistence = persistence
        self.exporters = list(exporters)
        self.telemetry = telemetry
        self.gauges = SeriesGauges(table)
        telemetry.registry.register(self.gauges)

    def accept(self, tenant: str, request: UploadRequest, result: UploadResult) -> None:
        """The ingest core's sink: one decoded upload. Raises StoreUnavailableError (nothing applied)."""
        keys = [SeriesKey(tenant, p.service, p.instance, p.summary.kind) for p in result.profiles]
        if self.persistence is not None:
            self.persistence.append([(k, p.resource, p.summary) for k, p in zip(keys, result.profiles, strict=True)])
        for key, profile in zip(keys, result.profiles, strict=True):
            self._publish(self.table.update(key, profile.resource, profile.summary, live=True))

    def settle(self, deadline: float | None = None) -> bool:
        """Evaluate the series whose latest profiles were only appended (`processor.evaluate_every_seconds`),
        all of them or until `deadline` (`time.perf_counter()`), and let the exporters see their reports and
        events. True when none is left."""
        for update in self.table.settle(deadline):
            self._publish(update)
        return not self.table.deferred

    def _publish(self, update: UpdateResult) -> None:
        for evicted in update.evicted:
            if self.persistence is not None:
                self.persistence.forget(evicted)
            self._each("forget", lambda e, k=evicted: e.forget(k))
            self.telemetry.tenant_series_evicted.labels(self.telemetry.tenant_label(evicted.tenant)).inc()
        if update.evicted:
            self.telemetry.series_evicted.inc(len(update.evicted))
        self._each("on_report", lambda e, s=update.series: e.on_report(s.report, s.resource))
        if update.event is not None:
            self._each("on_event", lambda e, ev=update.event: e.on_event(ev))

    def restored(self, later: Collection[SeriesKey] = ()) -> None:
        """After a state restore: let the exporters observe every restored series again, except those in
        `later` (their saved report is older than their journal; `report` them once rebuilt)."""
        for tracked in self.table:
            if tracked.key not in later:
                self.report(tracked)

    def report(self, tracked: TrackedSeries) -> None:
        """Let the exporters observe one series' current report."""
        self._each("on_report", lambda e, s=tracked: e.on_report(s.report, s.resource))

    def event(self, event: LeakEvent) -> None:
        """Let the exporters send one event (the cluster owner's path: `cluster/node.py`)."""
        self._each("on_event", lambda e: e.on_event(event))

    def forget(self, key: SeriesKey) -> None:
        """The exporters stop exporting a series (evicted, or its partition moved to another replica)."""
        self._each("forget", lambda e: e.forget(key))

    def _each(self, what: str, call: object) -> None:
        assert callable(call)
        for exporter in self.exporters:
            try:
                call(exporter)
            except Exception:
                log.exception("exporter %s failed in %s", type(exporter).__name__, what)

    def shutdown(self, timeout_seconds: float) -> None:
        for exporter in self.exporters:
            try:
                exporter.shutdown(timeout_seconds)
            except Exception:
                log.exception("exporter %s failed to shut down", type(exporter).__name__)


class SeriesSource(Protocol):
    """What the series gauges count: a `SeriesTable`, or the partitions a cluster replica owns."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[TrackedSeries]: ...


class SeriesGauges(Collector):
    """`otel_leakproc_series_tracked` and `otel_leakproc_series_flagged{kind}`, derived from the table when
    they are collected (a scrape of /metrics or an OTLP export), not recomputed on every upload."""

    def __init__(self, table: SeriesSource) -> None:
        self.source = table  # the series this replica tracks (with shared state: those of its partitions)

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("otel_leakproc_series_tracked", "Series currently tracked.", value=len(self.source))
        flagged = Counter(t.key.kind.value for t in self.source if t.report.status.flagged)
        family = GaugeMetricFamily(
            "otel_leakproc_series_flagged", "Series currently suspected or confirmed, by kind.", labels=["kind"]
        )
        for kind in ProfileKind:
            family.add_metric([kind.value], flagged.get(kind.value, 0))
        yield family
