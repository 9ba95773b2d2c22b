"""The log formatter of `serve`: every message through `printable`, so a name a client chose cannot forge a
log line or drive the terminal."""

from __future__ import annotations

import logging

from otel_leakproc.printable import printable


class EscapingFormatter(logging.Formatter):
    """A log formatter that escapes control characters in the message (tracebacks keep their lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        saved = record.message
        record.message = printable(saved)
        try:
            return super().formatMessage(record)
        finally:
            record.message = saved
