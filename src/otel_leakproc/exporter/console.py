"""A readable console output for local runs: new series, then one line per transition naming the top grower."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TextIO

from otel_leakproc.model import LeakEvent, SeriesKey, SeriesReport
from otel_leakproc.printable import printable
from otel_leakproc.report import duration, fix_text, human, rfc3339

# Resource attributes worth showing next to a new series (the rest stays in OTLP).
_SHOWN = ("service.namespace", "k8s.namespace.name", "k8s.pod.name", "deployment.environment")


class ConsoleExporter:
    """Prints events (and the first sight of a series) to a text stream.

    Args:
        stream: where to write (default stdout).
        hint: one line printed once at start (e.g. why the console is the output).
    """

    def __init__(self, stream: TextIO | None = None, hint: str = "") -> None:
        self._stream = stream or sys.stdout
        self._seen: set[SeriesKey] = set()
        if hint:
            self._write(f"otel-leakproc: {hint}")

    def on_report(self, report: SeriesReport, resource: Mapping[str, str]) -> None:
        if report.key in self._seen:
            return
        self._seen.add(report.key)
        extra = " ".join(f"{name}={resource[name]}" for name in _SHOWN if resource.get(name))
        line = f"{rfc3339(report.last_time_nanos)}  {'tracking':<26} {_who(report)}"
        self._write(f"{line}  {extra}" if extra else line)

    def on_event(self, event: LeakEvent) -> None:
        report = event.report
        kind = report.key.kind
        parts = [
            f"{rfc3339(event.time_nanos)}  {event.name:<26} {_who(report)}",
            f"status={report.status} score={report.score:.2f} current={human(report.current, kind)}",
            f"growth={human(report.growth_per_hour, kind)}/h",
        ]
        if report.time_to_limit_seconds is not None:
            parts.append(f"limit in {duration(report.time_to_limit_seconds)}")
        if report.top_growers and event.name.split(".")[-1] != "resolved":
            top = report.top_growers[0]
            state = f" [{top.state}]" if top.state else ""
            parts.append(f"top={top.function} ({top.file}:{top.line}){state} {top.share:.0%} of growth")
        if report.fix is not None and report.fix.after is not None:
            parts.append(fix_text(report.fix, kind))
        self._write("  ".join(parts))

    def forget(self, key: SeriesKey) -> None:
        self._seen.discard(key)

    def shutdown(self, timeout_seconds: float) -> None:
        self._stream.flush()

    def _write(self, line: str) -> None:
        # Names come from clients: a newline or an ANSI escape in them must not forge or recolour a line.
        self._stream.write(printable(line) + "\n")
        self._stream.flush()


def _who(report: SeriesReport) -> str:
    key = report.key
    return f"{key.tenant}/{key.service}/{key.instance or '-'} {key.kind}"
