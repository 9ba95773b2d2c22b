"""What the processor hands to exporters, and the interface every exporter implements.

Exporters never see pprof or protobuf profiles: they get `SeriesReport`s (current state of a series) and
`LeakEvent`s (transitions). Calls arrive on the service's event loop and must not block it: an exporter
that does I/O queues the work and does it on its own thread (the OpenTelemetry SDK's batch processors and
periodic readers already do).
"""

from __future__ import annotations

from typing import Protocol

from otel_leakproc.processor.listener import SeriesListener


class Exporter(SeriesListener, Protocol):
    """One destination of derived signals: subscribed to the pipeline (`on_report`, `on_event`, `forget`;
    metrics observe the latest report), shut down by the service at exit."""

    def shutdown(self, timeout_seconds: float) -> None:
        """Flush what is pending within the timeout, then release resources."""
