"""What the processor hands to exporters, and the interface every exporter implements.

Exporters never see pprof or protobuf profiles: they get `SeriesReport`s (current state of a series) and
`LeakEvent`s (transitions). Calls arrive on the service's event loop and must not block it: an exporter
that does I/O queues the work and does it on its own thread (the OpenTelemetry SDK's batch processors and
periodic readers already do).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from otel_leakproc.model import LeakEvent, SeriesKey, SeriesReport


class Exporter(Protocol):
    """One destination of derived signals."""

    def on_report(self, report: SeriesReport, resource: Mapping[str, str]) -> None:
        """The series' report after an update (latest wins; metrics observe the latest report)."""

    def on_event(self, event: LeakEvent) -> None:
        """A status transition; delivered at least once, never dropped silently."""

    def forget(self, key: SeriesKey) -> None:
        """The series was evicted; stop exporting it."""

    def shutdown(self, timeout_seconds: float) -> None:
        """Flush what is pending within the timeout, then release resources."""
