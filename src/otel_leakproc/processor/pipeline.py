"""The processor stage of `serve`: decoded profiles in, series updates, events and exports out.

Runs on the event loop (detector updates are milliseconds; a series that is ok is evaluated at most every
`processor.evaluate_every_seconds`, its other profiles only appended, and `settle` catches up). The
points of an upload are journaled (the state store, `state/persist.py`) before any is applied: if the
store cannot take them the upload is refused with `StoreUnavailableError` and nothing changes. Whoever
wants to hear that a series changed subscribes (`subscribe`, a `SeriesListener`: the exporters, the scrape
receiver). A listener that fails is logged, never allowed to stop ingestion or another listener.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from otel_leakproc.model import LeakEvent, ProfileKind, ProfileSummary, SeriesKey
from otel_leakproc.processor.listener import SeriesListener
from otel_leakproc.processor.state import SeriesTable, TrackedSeries, UpdateResult
from otel_leakproc.receiver.uploads import UploadRequest, UploadResult
from otel_leakproc.state.persist import StatePersistence
from otel_leakproc.telemetry import Telemetry

log = logging.getLogger(__name__)


class Pipeline:
    """Feeds decoded profiles to the series table and tells its listeners what changed."""

    def __init__(
        self,
        table: SeriesTable,
        telemetry: Telemetry,
        persistence: StatePersistence | None = None,
    ) -> None:
        self.table = table
        self.persistence = persistence
        self._listeners: list[SeriesListener] = []
        self.telemetry = telemetry
        self.gauges = SeriesGauges(table)
        telemetry.registry.register(self.gauges)

    def subscribe(self, listener: SeriesListener) -> None:
        """From now on `listener` hears every report, event and forgotten series, after those before it."""
        self._listeners.append(listener)

    def accept(self, tenant: str, request: UploadRequest, result: UploadResult) -> None:
        """The ingest core's sink: one decoded upload. Raises StoreUnavailableError (nothing applied)."""
        self.apply(
            [(SeriesKey(tenant, p.service, p.instance, p.summary.kind), p.resource, p.summary) for p in result.profiles]
        )

    def apply(
        self,
        points: Sequence[tuple[SeriesKey, dict[str, str], ProfileSummary]],
        records: Sequence[bytes | memoryview] | None = None,
    ) -> None:
        """Journal the points of one upload (all or none), then update their series. Also what the owner
        of series runs for points another `serve` process received (`cluster/peers.py`), with their
        point records (`records`, journaled as they came). Raises StoreUnavailableError (nothing applied)."""
        if self.persistence is not None:
            self.persistence.append(points, records)
        for key, resource, summary in points:
            self._publish(self.table.update(key, resource, summary, live=True))

    def settle(self, deadline: float | None = None) -> bool:
        """Evaluate the series whose latest profiles were only appended (`processor.evaluate_every_seconds`),
        all of them or until `deadline` (`time.perf_counter()`), and let the listeners hear their reports and
        events. True when none is left."""
        for update in self.table.settle(deadline):
            self._publish(update)
        return not self.table.deferred

    def _publish(self, update: UpdateResult) -> None:
        for evicted in update.evicted:
            if self.persistence is not None:
                self.persistence.forget(evicted)
            self.forget(evicted)
            self.telemetry.tenant_series_evicted.labels(self.telemetry.tenant_label(evicted.tenant)).inc()
        if update.evicted:
            self.telemetry.series_evicted.inc(len(update.evicted))
        self.report(update.series)
        if update.event is not None:
            self.event(update.event)

    def restored(self, later: Collection[SeriesKey] = ()) -> None:
        """After a state restore: let the listeners observe every restored series again, except those in
        `later` (their saved report is older than their journal; `report` them once rebuilt)."""
        for tracked in self.table:
            if tracked.key not in later:
                self.report(tracked)

    def report(self, tracked: TrackedSeries) -> None:
        """Let the listeners observe one series' current report."""
        self._each("on_report", lambda e: e.on_report(tracked.report, tracked.resource))

    def event(self, event: LeakEvent) -> None:
        """Let the listeners hear one event (the cluster owner's path: `cluster/node.py`)."""
        self._each("on_event", lambda e: e.on_event(event))

    def forget(self, key: SeriesKey) -> None:
        """The listeners forget a series (evicted, or its partition moved to another replica)."""
        self._each("forget", lambda e: e.forget(key))

    def _each(self, what: str, call: Callable[[SeriesListener], None]) -> None:
        for listener in self._listeners:
            try:
                call(listener)
            except Exception:
                log.exception("listener %s failed in %s", type(listener).__name__, what)


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
