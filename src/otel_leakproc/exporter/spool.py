"""A bounded FIFO of log events waiting for delivery: on disk (survives restarts) or in memory.

One JSON file per event, named by a sequence number, written to a temporary name and renamed, so a crash
never leaves a half-written event. Events leave the spool only after the collector accepted them.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from pathlib import Path

from otel_leakproc.exporter.signals import dumps

_log = logging.getLogger(__name__)
SUFFIX = ".event.json"


class Spool:
    """Events in arrival order, at most `max_events` (the oldest are dropped beyond it).

    Args:
        directory: where events are kept; None = memory only (lost at exit).
        max_events: bound on the number of events kept.
    """

    def __init__(self, directory: Path | None, max_events: int) -> None:
        self._dir = directory
        self._max = max_events
        self._items: OrderedDict[int, dict[str, object]] = OrderedDict()
        self._next = 0
        self.dropped = 0
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            self._load(directory)

    def _load(self, directory: Path) -> None:
        for path in sorted(directory.glob("*" + SUFFIX)):
            try:
                seq = int(path.name.removesuffix(SUFFIX))
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                _log.warning("spool: skipping unreadable event file %s: %s", path, exc)
                continue
            self._items[seq] = record
            self._next = max(self._next, seq + 1)
        for leftover in directory.glob("*.tmp"):
            leftover.unlink(missing_ok=True)
        self._trim()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, record: dict[str, object]) -> None:
        seq = self._next
        self._next += 1
        if self._dir is not None:
            path = self._dir / f"{seq:020d}{SUFFIX}"
            tmp = path.with_suffix(".tmp")
            try:
                tmp.write_text(dumps(record), encoding="utf-8")
                os.replace(tmp, path)
            except OSError as exc:
                _log.warning("spool: cannot write %s (%s); event kept in memory only", path, exc)
        self._items[seq] = record
        self._trim()

    def peek(self, limit: int) -> list[tuple[int, dict[str, object]]]:
        """The oldest `limit` events with their sequence numbers."""
        out: list[tuple[int, dict[str, object]]] = []
        for seq, record in self._items.items():
            if len(out) >= limit:
                break
            out.append((seq, record))
        return out

    def remove(self, seqs: list[int]) -> None:
        for seq in seqs:
            self._items.pop(seq, None)
            if self._dir is not None:
                (self._dir / f"{seq:020d}{SUFFIX}").unlink(missing_ok=True)

    def _trim(self) -> None:
        excess = len(self._items) - self._max
        if excess > 0:
            oldest = list(self._items)[:excess]
            self.remove(oldest)
            self.dropped += excess
