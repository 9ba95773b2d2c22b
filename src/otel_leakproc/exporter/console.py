"""A readable console output for local runs: one line per transition, naming the top grower."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TextIO

from otel_leakproc.model import LeakEvent, SeriesKey, SeriesReport
from otel_leakproc.report import duration, human, rfc3339


class ConsoleExporter:
    """Prints events (and the first sight of a series) to a text stream."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._seen: set[SeriesKey] = set()

    def on_report(self, report: SeriesReport, resource: Mapping[str, str]) -> None:
        if report.key in self._seen:
            return
        self._seen.add(report.key)
        key = report.key
        self._write(f"series  {key.tenant}/{key.service}/{key.instance or '-'} {key.kind}: tracking")

    def on_event(self, event: LeakEvent) -> None:
        report = event.report
        key = report.key
        kind = key.kind
        parts = [
            f"{rfc3339(event.time_nanos)}  {event.name:<26} {key.tenant}/{key.service}/{key.instance or '-'} {kind}",
            f"status={report.status} score={report.score:.2f} current={human(report.current, kind)}",
            f"growth={human(report.growth_per_hour, kind)}/h",
        ]
        if report.time_to_limit_seconds is not None:
            parts.append(f"limit in {duration(report.time_to_limit_seconds)}")
        if report.top_growers and event.name.split(".")[-1] != "resolved":
            top = report.top_growers[0]
            parts.append(f"top={top.function} ({top.file}:{top.line}) {top.share:.0%} of growth")
        self._write("  ".join(parts))

    def forget(self, key: SeriesKey) -> None:
        self._seen.discard(key)

    def shutdown(self, timeout_seconds: float) -> None:
        self._stream.flush()

    def _write(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()
