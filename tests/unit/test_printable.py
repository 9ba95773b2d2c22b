"""Control characters from clients never reach a terminal or log raw (issue 16)."""

from __future__ import annotations

import io
import logging

from otel_leakproc.exporter.console import ConsoleExporter
from otel_leakproc.log_format import EscapingFormatter
from otel_leakproc.model import ProfileKind, SeriesKey, SeriesReport, Status
from otel_leakproc.printable import printable

FORGED = "checkout\n2026-01-01T00:00:00Z  leak.confirmed  \x1b[31mpayments\x1b[0m\u202e"


def test_printable_escapes_controls_and_keeps_the_rest() -> None:
    assert printable("main.(*T).f ü 日本 \\n") == "main.(*T).f ü 日本 \\n"
    assert printable(FORGED) == ("checkout\\x0a2026-01-01T00:00:00Z  leak.confirmed  \\x1b[31mpayments\\x1b[0m\\u202e")
    assert printable("\x00\t\r\x7f\x85\u2028") == "\\x00\\x09\\x0d\\x7f\\x85\\u2028"


def test_console_prints_a_forged_service_name_on_one_escaped_line() -> None:
    stream = io.StringIO()
    console = ConsoleExporter(stream)
    report = SeriesReport(
        SeriesKey("t", FORGED, "", ProfileKind.HEAP), 1, 0, 0, Status.INSUFFICIENT_DATA, None, 0, 0, 0, None, 0, ()
    )
    console.on_report(report, {"k8s.pod.name": "pod\n-1"})
    out = stream.getvalue()
    assert out.count("\n") == 1
    assert "\x1b" not in out
    assert "checkout\\x0a2026" in out
    assert "pod\\x0a-1" in out


def test_log_messages_are_escaped_but_tracebacks_keep_their_lines() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapingFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test_printable")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("series %s evicted", FORGED)
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed for %s", "a\nb")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "ERROR series " + printable(FORGED) + " evicted"
    assert lines[1] == "ERROR failed for a\\x0ab"
    assert lines[2] == "Traceback (most recent call last):"
