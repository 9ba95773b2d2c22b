"""What a subscriber of the processor stage hears: "a series changed" (its report), "a series changed
status" (an event), "a series is gone" (evicted, or its partition moved to another replica).

The exporters subscribe (`exporter/base.py`: an `Exporter` is a listener that can also be shut down), and
so does the scrape receiver, which asks a flagged series' target for a dump. `Pipeline.subscribe`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from otel_leakproc.model import LeakEvent, SeriesKey, SeriesReport


class SeriesListener(Protocol):
    """Called on the service's event loop; must not block it (queue slow work, see `exporter/base.py`)."""

    def on_report(self, report: SeriesReport, resource: Mapping[str, str]) -> None:
        """The series' report after an update (latest wins)."""

    def on_event(self, event: LeakEvent) -> None:
        """A status transition; delivered at least once, never dropped silently."""

    def forget(self, key: SeriesKey) -> None:
        """The series was evicted or is no longer this replica's; stop acting on it."""
