"""Tracked series.

`SeriesTable` holds one `SeriesDetector` per series, bounded by `state.max_series` in all and by
`state.max_series_per_tenant` per tenant, and turns status changes into `LeakEvent`s. A tenant never
loses a series to a larger one: a tenant at its quota evicts its own least recently updated series, and
a full table evicts the least recently updated series of the tenant holding the most.

The service persists the table through `state/` (journal and checkpoints). `SeriesTable.restore` reads
the snapshot written by releases before the journal (`snapshot.json.gz`, read once and migrated by
`state/legacy.py`; the writer is kept with its test fixture, tests/testdata/state/make_format2_snapshot.py).
Snapshot format (a reader refuses versions it does not know rather than guess):
    {"format": "otel-leakproc-state", "version": 1, "saved_at_unix": <float>,
     "series": [{"tenant", "service", "instance", "kind", "resource": {...}, "detector": {...}}]}
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from otel_leakproc.model import (
    FixVerdict,
    FixVerification,
    LeakEvent,
    ProfileKind,
    ProfileSummary,
    SeriesKey,
    SeriesReport,
    Status,
    event_name,
    not_fixed_event_name,
)
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.detector import SeriesDetector

SNAPSHOT_FORMAT = "otel-leakproc-state"
SNAPSHOT_VERSION = 1
SNAPSHOT_FILE = "snapshot.json.gz"


def version_of(resource: Mapping[str, str]) -> str | None:
    """The version of the process that sent a profile (`service.version` of its resource), None when unknown:
    a change is a restart with a new version (fix verification)."""
    return resource.get("service.version") or None


class StateError(Exception):
    """A snapshot cannot be read (corrupt, or a format this version does not know)."""


@dataclass(slots=True)
class TrackedSeries:
    """One series: its detector, the monitored service's resource attributes, and its latest report.

    A restored series may hold a `loader` instead of its detector (the state store restores lazily): the
    detector is built on first use of `detector`, and `report` is the saved report until then."""

    key: SeriesKey
    _detector: SeriesDetector | None
    resource: dict[str, str]
    report: SeriesReport
    loader: Callable[[], SeriesDetector] | None = None

    @property
    def detector(self) -> SeriesDetector:
        if self._detector is None:
            self.materialize()
        assert self._detector is not None
        return self._detector

    @property
    def loaded(self) -> bool:
        return self._detector is not None

    def materialize(self) -> None:
        """Build the detector now if it is still to be loaded."""
        if self._detector is None:
            assert self.loader is not None, "a series without a detector must have a loader"
            loader, self.loader = self.loader, None
            self._detector = loader()
            self.report = self._detector.report()


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """What one profile did to the table: the new report, an event if the status changed, evictions."""

    series: TrackedSeries
    event: LeakEvent | None
    evicted: tuple[SeriesKey, ...]


class SeriesTable:
    """All tracked series, bounded; the only place detectors are created, updated and evicted."""

    def __init__(self, config: ProcessorConfig, max_series: int, max_per_tenant: int | None = None) -> None:
        self._config = config
        self._max_series = max_series
        self._max_per_tenant = max_series if max_per_tenant is None else min(max_per_tenant, max_series)
        self._series: OrderedDict[SeriesKey, TrackedSeries] = OrderedDict()  # least recently updated first
        self._by_tenant: dict[str, OrderedDict[SeriesKey, None]] = {}  # the same order, per tenant
        self.evicted_total = 0
        self._deferred: set[SeriesKey] = set()  # series with points appended but not evaluated yet

    @property
    def deferred(self) -> int:
        """Series with points appended but not evaluated yet (`settle` evaluates them)."""
        return len(self._deferred)

    def __len__(self) -> int:
        return len(self._series)

    def __iter__(self) -> Iterator[TrackedSeries]:
        return iter(list(self._series.values()))

    def get(self, key: SeriesKey) -> TrackedSeries | None:
        return self._series.get(key)

    def update(
        self, key: SeriesKey, resource: Mapping[str, str], summary: ProfileSummary, *, live: bool = False
    ) -> UpdateResult:
        """Feed one profile to its series (created on first sight), evicting the stalest series if full.

        `live` (serve's uploads): the detector may append the point without evaluating it
        (`processor.evaluate_every_seconds`); `settle` evaluates such series later.
        """
        evicted: list[SeriesKey] = []
        tracked = self._series.get(key)
        if tracked is None:
            own = self._by_tenant.setdefault(key.tenant, OrderedDict())
            while len(own) >= self._max_per_tenant:
                evicted.append(self._evict(next(iter(own))))
            while len(self._series) >= self._max_series:
                evicted.append(self._evict(next(iter(self._largest_tenant()))))
            detector = SeriesDetector(key, self._config)
            tracked = TrackedSeries(key, detector, dict(resource), detector.report())
            self._series[key] = tracked
            own[key] = None
        else:
            self._series.move_to_end(key)
            self._by_tenant[key.tenant].move_to_end(key)
            if resource:
                tracked.resource.update(resource)
        previous = tracked.report.status
        previous_fix = tracked.report.fix
        detector = tracked.detector
        tracked.report = detector.update(summary, version_of(resource), may_defer=live)
        if detector.deferred:
            self._deferred.add(key)
        return UpdateResult(tracked, self._event(tracked, previous, previous_fix, summary.time_nanos), tuple(evicted))

    def settle(self, deadline: float | None = None) -> list[UpdateResult]:
        """Evaluate the series whose latest points were appended without an evaluation (see `update`): all
        of them, or until `deadline` (`time.perf_counter()`), leaving the rest for the next call."""
        results: list[UpdateResult] = []
        while self._deferred:
            if deadline is not None and results and time.perf_counter() >= deadline:
                break
            key = self._deferred.pop()
            tracked = self._series.get(key)
            if tracked is None or not tracked.loaded:
                continue
            previous, previous_fix = tracked.report.status, tracked.report.fix
            report = tracked.detector.settle()
            if report is None:
                continue
            tracked.report = report
            event = self._event(tracked, previous, previous_fix, report.last_time_nanos)
            results.append(UpdateResult(tracked, event, ()))
        return results

    @staticmethod
    def _event(
        tracked: TrackedSeries, previous: Status, previous_fix: FixVerification | None, time_nanos: int
    ) -> LeakEvent | None:
        key = tracked.key
        name = event_name(key.kind, previous, tracked.report.status)
        fix = tracked.report.fix
        newly_not_fixed = fix is not None and fix.verdict is FixVerdict.NOT_FIXED
        if previous_fix is not None and previous_fix.verdict is FixVerdict.NOT_FIXED:
            newly_not_fixed = False
        if name is None and newly_not_fixed:
            name = not_fixed_event_name(key.kind)  # the deploy did not fix it: the series stays flagged
        if name is None:
            return None
        return LeakEvent(name, time_nanos, previous, tracked.report, dict(tracked.resource))

    def adopt(self, series: Iterable[TrackedSeries]) -> int:
        """Replace the table's content with restored series (oldest first; beyond `max_series` the oldest
        are left out). Returns how many are tracked."""
        restored: OrderedDict[SeriesKey, TrackedSeries] = OrderedDict()
        for tracked in series:
            restored.pop(tracked.key, None)
            restored[tracked.key] = tracked
        while len(restored) > self._max_series:
            restored.popitem(last=False)
        return self._replace(restored)

    def _replace(self, restored: OrderedDict[SeriesKey, TrackedSeries]) -> int:
        """Make `restored` (least recently updated first) the table, with its per-tenant index; a quota
        lowered since the state was saved keeps each tenant's most recently updated series."""
        by_tenant: dict[str, OrderedDict[SeriesKey, None]] = {}
        for key in restored:
            by_tenant.setdefault(key.tenant, OrderedDict())[key] = None
        for keys in by_tenant.values():
            while len(keys) > self._max_per_tenant:
                old, _ = keys.popitem(last=False)
                del restored[old]
        self._series = restored
        self._by_tenant = by_tenant
        return len(restored)

    def discard(self, key: SeriesKey) -> bool:
        """Evict one series now (a cluster-wide tenant quota chose it: cluster/quotas.py); counted like
        any eviction. False when it is not tracked."""
        if key not in self._series:
            return False
        self._deferred.discard(key)
        self._evict(key)
        return True

    def _evict(self, key: SeriesKey) -> SeriesKey:
        del self._series[key]
        own = self._by_tenant[key.tenant]
        del own[key]
        if not own:
            del self._by_tenant[key.tenant]
        self.evicted_total += 1
        return key

    def _largest_tenant(self) -> OrderedDict[SeriesKey, None]:
        # The tenant holding the most series pays for a full table; ties go to the one whose least recently
        # updated series is oldest (the first of the ties in table order).
        most = max(len(keys) for keys in self._by_tenant.values())
        for key in self._series:
            keys = self._by_tenant[key.tenant]
            if len(keys) == most:
                return keys
        raise AssertionError("a full table has series")

    def restore(self, snapshot: Mapping[str, Any]) -> int:
        """Replace the table's content with a snapshot's (the format above). Returns the number of series
        restored.

        Raises:
            StateError: wrong format or version, or a series that cannot be rebuilt.
        """
        if snapshot.get("format") != SNAPSHOT_FORMAT:
            raise StateError(f"format: expected {SNAPSHOT_FORMAT!r}, got {snapshot.get('format')!r}")
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise StateError(f"version: this build reads version {SNAPSHOT_VERSION}, got {snapshot.get('version')!r}")
        entries = snapshot.get("series")
        if not isinstance(entries, list):
            raise StateError("series: expected a list")
        restored: OrderedDict[SeriesKey, TrackedSeries] = OrderedDict()
        for index, entry in enumerate(entries[-self._max_series :]):
            try:
                key = SeriesKey(
                    str(entry["tenant"]), str(entry["service"]), str(entry["instance"]), ProfileKind(entry["kind"])
                )
                detector = SeriesDetector.from_state(key, self._config, entry["detector"])
                resource = {str(k): str(v) for k, v in dict(entry.get("resource") or {}).items()}
            except (KeyError, TypeError, ValueError) as exc:
                raise StateError(f"series[{index}]: cannot restore: {exc}") from exc
            restored[key] = TrackedSeries(key, detector, resource, detector.report())
        return self._replace(restored)
