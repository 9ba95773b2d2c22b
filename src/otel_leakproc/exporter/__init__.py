"""Exporters: turn series reports and events into signals for the outside world."""

from __future__ import annotations

from otel_leakproc.exporter.base import Exporter
from otel_leakproc.exporter.config import ExportConfig
from otel_leakproc.exporter.console import ConsoleExporter

__all__ = ["Exporter", "build_exporters"]


def build_exporters(config: ExportConfig) -> list[Exporter]:
    """The exporters the config asks for, in the order they are called."""
    exporters: list[Exporter] = []
    if config.console:
        exporters.append(ConsoleExporter())
    return exporters
