"""The processor stage of `serve`: decoded profiles in, series updates, events and exports out.

Runs on the event loop (detector updates are milliseconds). An exporter that fails is logged and
counted, never allowed to stop ingestion or another exporter.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

from otel_leakproc.exporter.base import Exporter
from otel_leakproc.model import LeakEvent, SeriesKey
from otel_leakproc.processor.state import SeriesTable, TrackedSeries
from otel_leakproc.receiver.uploads import UploadRequest, UploadResult
from otel_leakproc.telemetry import Telemetry

log = logging.getLogger(__name__)


class Pipeline:
    """Feeds decoded profiles to the series table and fans the results out to the exporters."""

    def __init__(self, table: SeriesTable, exporters: Sequence[Exporter], telemetry: Telemetry) -> None:
        self.table = table
        self.exporters = list(exporters)
        self.telemetry = telemetry
        self.events: list[LeakEvent] = []  # the most recent events, newest last (bounded), for the API
        self._max_events = 200

    def accept(self, tenant: str, request: UploadRequest, result: UploadResult) -> None:
        """The ingest core's sink: one decoded upload."""
        for profile in result.profiles:
            key = SeriesKey(tenant, profile.service, profile.instance, profile.summary.kind)
            update = self.table.update(key, profile.resource, profile.summary)
            for evicted in update.evicted:
                self._each("forget", lambda e, k=evicted: e.forget(k))
            self.telemetry.series_evicted.inc(len(update.evicted))
            self._each("on_report", lambda e, s=update.series: e.on_report(s.report, s.resource))
            if update.event is not None:
                self._remember(update.event)
                self._each("on_event", lambda e, ev=update.event: e.on_event(ev))
        self.refresh_gauges()

    def restored(self) -> None:
        """After a state restore: let the exporters observe every restored series again."""
        for tracked in self.table:
            self._each("on_report", lambda e, s=tracked: e.on_report(s.report, s.resource))
        self.refresh_gauges()

    def refresh_gauges(self) -> None:
        self.telemetry.series_tracked.set(len(self.table))
        flagged = Counter(t.key.kind.value for t in self.table if t.report.status.flagged)
        for kind in ("heap", "goroutine", "goroutineleak", "mutex", "block"):
            self.telemetry.series_flagged.labels(kind).set(flagged.get(kind, 0))

    def series(self) -> list[TrackedSeries]:
        return list(self.table)

    def _remember(self, event: LeakEvent) -> None:
        self.events.append(event)
        del self.events[: -self._max_events]

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
