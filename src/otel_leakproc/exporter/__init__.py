"""Exporters: turn series reports and events into signals for the outside world.

`build_exporters` picks them from the `export` section: OTLP when an endpoint is configured in the YAML or
by `OTEL_EXPORTER_OTLP_ENDPOINT` (or the per-signal variables), the console when asked for and always
when no OTLP endpoint is configured anywhere, and the Prometheus exposition when enabled.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from otel_leakproc.exporter.base import Exporter
from otel_leakproc.exporter.config import ExportConfig
from otel_leakproc.exporter.console import ConsoleExporter

if TYPE_CHECKING:
    from otel_leakproc.telemetry import ExportInstruments

__all__ = ["Exporter", "build_exporters", "spool_directory"]

NO_ENDPOINT_HINT = (
    "no OTLP endpoint configured (export.otlp.endpoint or OTEL_EXPORTER_OTLP_ENDPOINT): "
    "printing new series and leak events here"
)


def spool_directory(config: ExportConfig, state_dir: str = "") -> Path | None:
    """Where undelivered events are kept: `export.events.spool_dir`, else `<state.dir>/spool`, else memory."""
    if config.events.spool_dir:
        return Path(config.events.spool_dir)
    if state_dir:
        return Path(state_dir) / "spool"
    return None


def build_exporters(
    config: ExportConfig,
    state_dir: str = "",
    environ: Mapping[str, str] | None = None,
    instruments: ExportInstruments | None = None,
) -> list[Exporter]:
    """The exporters the config asks for, in the order they are called.

    Args:
        config: the `export` section.
        state_dir: `state.dir`, used for the default event spool (`<state.dir>/spool`); "" = none.
        environ: the environment for the `OTEL_EXPORTER_OTLP_*` variables (default `os.environ`).
        instruments: the service's delivery metrics (`Telemetry.export`); the OTLP exporter counts there.

    Returns:
        Started exporters; the caller calls `shutdown` on each at exit.
    """
    # Imported here: the config loader imports this package, and must not pay for the SDK and grpc.
    from otel_leakproc.exporter.otlp import OtlpExporter  # noqa: PLC0415
    from otel_leakproc.exporter.otlp_target import otlp_enabled  # noqa: PLC0415
    from otel_leakproc.exporter.prometheus import PrometheusExporter  # noqa: PLC0415

    env = os.environ if environ is None else environ
    exporters: list[Exporter] = []
    use_otlp = otlp_enabled(config.otlp, env)
    if config.console or not use_otlp:
        hint = "" if use_otlp else NO_ENDPOINT_HINT
        exporters.append(ConsoleExporter(hint=hint))
    try:
        if use_otlp:
            exporters.append(
                OtlpExporter(config, spool_directory(config, state_dir), environ=env, instruments=instruments)
            )
        if config.prometheus.enabled:
            exporters.append(PrometheusExporter(config.prometheus))
    except BaseException:
        for exporter in exporters:  # a partial start rolls back
            exporter.shutdown(1.0)
        raise
    return exporters
