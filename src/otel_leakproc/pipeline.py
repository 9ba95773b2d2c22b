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

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from otel_leakproc.exporter.base import Exporter
from otel_leakproc.model import ProfileKind, SeriesKey
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
        telemetry.registry.register(SeriesGauges(table))

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


class SeriesGauges(Collector):
    """`otel_leakproc_series_tracked` and `otel_leakproc_series_flagged{kind}`, derived from the table when
    they are collected (a scrape of /metrics or an OTLP export), not recomputed on every upload."""

    def __init__(self, table: SeriesTable) -> None:
        self._table = table

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("otel_leakproc_series_tracked", "Series currently tracked.", value=len(self._table))
        flagged = Counter(t.key.kind.value for t in self._table if t.report.status.flagged)
        family = GaugeMetricFamily(
            "otel_leakproc_series_flagged", "Series currently suspected or confirmed, by kind.", labels=["kind"]
        )
        for kind in ProfileKind:
            family.add_metric([kind.value], flagged.get(kind.value, 0))
        yield family
