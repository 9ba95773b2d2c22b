"""What a reader of the series asks for (`Selection`), what answers it (`SeriesReader`), and the one
`/api/v1/series` object a tracked series becomes (`series_object`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from otel_leakproc.model import Status
from otel_leakproc.processor.state import SeriesTable, TrackedSeries
from otel_leakproc.report import series_to_json
from otel_leakproc.state.persist import SLICE_SECONDS

NANOS = 1_000_000_000
FILTERS = ("tenant", "service", "instance", "kind", "status")
# The API's order: the worst status first, then by identity.
STATUS_ORDER = {
    Status.CONFIRMED.value: 0,
    Status.SUSPECTED.value: 1,
    Status.OK.value: 2,
    Status.INSUFFICIENT_DATA.value: 3,
}


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


@dataclass(frozen=True)
class Selection:
    """Which series a request asks for.

    Attributes:
        tenants: the tenants the reader may see; None for all (auth off, or a "*" credential).
        filters: exact matches on `tenant`, `service`, `instance`, `kind`, `status` (other names ignored).
        timeline: whether each object carries its timeline (`?timeline=0` leaves it out).
    """

    tenants: frozenset[str] | None
    filters: Mapping[str, str]
    timeline: bool = True

    @classmethod
    def from_query(cls, tenants: frozenset[str] | None, query: Mapping[str, str]) -> Selection:
        filters = {f: query[f] for f in FILTERS if f in query}
        return cls(tenants, filters, query.get("timeline", "1") not in ("0", "false"))

    def admits(self, fields: Mapping[str, str]) -> bool:
        """True if a series with these identity fields and status is visible and matches every filter."""
        if self.tenants is not None and fields.get("tenant", "") not in self.tenants:
            return False
        return all(fields.get(f, "") == value for f, value in self.filters.items())


def order(obj: Mapping[str, Any]) -> tuple[int, str, str, str, str]:
    """The API's sort key of one series object."""
    return (STATUS_ORDER.get(obj["status"], 9), obj.get("tenant", ""), obj["service"], obj["instance"], obj["kind"])


class SeriesReader(Protocol):
    """The one thing the read side needs: the selected series as `/api/v1/series` objects, in the API's
    order (`order`)."""

    async def series(self, selection: Selection) -> list[dict[str, Any]]: ...


class TableReader:
    """A `SeriesReader` over this process's series table (state in memory or in files)."""

    def __init__(self, table: SeriesTable) -> None:
        self.table = table

    async def series(self, selection: Selection) -> list[dict[str, Any]]:
        chosen = [t for t in self.table if selection.admits(_fields(t))]
        if selection.timeline:
            # Timelines need the detectors: build those still being restored, in slices, so that a listing
            # right after start-up does not hold the event loop for seconds.
            deadline = time.perf_counter() + SLICE_SECONDS
            for tracked in chosen:
                if not tracked.loaded:
                    tracked.materialize()
                    if time.perf_counter() > deadline:
                        await asyncio.sleep(0)
                        deadline = time.perf_counter() + SLICE_SECONDS
        return sorted((series_object(t, timeline=selection.timeline) for t in chosen), key=order)


def _fields(tracked: TrackedSeries) -> dict[str, str]:
    key = tracked.key
    return {
        "tenant": key.tenant,
        "service": key.service,
        "instance": key.instance,
        "kind": key.kind.value,
        "status": tracked.report.status.value,
    }
