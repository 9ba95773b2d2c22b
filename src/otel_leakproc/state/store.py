"""The interface of a series-state backend, the same for the embedded file journal and a shared stream.

A backend stores opaque frames (`records`), in two places:
- the journal: `append(frame)` adds one point record, durable (per the backend's policy) when it returns;
  the service calls it before answering an upload, so an answered upload is never lost;
- checkpoints: one frame per series holding its whole state. A compaction `rotate()`s the journal (new
  appends go to a fresh segment), writes a new checkpoint of every series with `begin_checkpoint`, and on
  `commit()` the journal segments older than the rotation are dropped.
`load()` gives back the checkpoints and the journal points after them, oldest first; replaying a point
whose sequence number the series' checkpoint already covers is skipped by the caller, so a crash at any
step of a compaction loses nothing and applies nothing twice.

File backend (`journal.FileStore`): journal segment files and one checkpoint file in `state.dir`.
A Redis backend maps the same calls onto a stream (append = XADD, rotate = remember the last id,
commit = XTRIM MINID) and a hash of checkpoints (HSET per series).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from otel_leakproc.state.health import StoreHealth
from otel_leakproc.state.records import NameBook


@dataclass(slots=True)
class Loaded:
    """What `load()` found: checkpoint payloads (with their series id), journal point payloads in order
    (each with the names of its journal segment, for points written by name id), the next sequence number
    to use, and what was dropped as unreadable."""

    checkpoints: list[tuple[str, memoryview]] = field(default_factory=list)
    points: list[tuple[bytes | memoryview, NameBook | None]] = field(default_factory=list)
    next_seq: int = 1
    dropped_records: int = 0
    dropped_bytes: int = 0
    problems: list[str] = field(default_factory=list)


class CheckpointWriter(Protocol):
    def put(self, series_id: str, frame: bytes) -> None:
        """Write one series' new checkpoint frame."""

    def keep(self, series_id: str) -> bool:
        """Carry the series' checkpoint over from the previous checkpoint unchanged; False if it has none."""

    def commit(self) -> None:
        """Make the new checkpoint the current one and drop the journal before the rotation."""

    def abort(self) -> None:
        """Give the new checkpoint up (the previous one and the whole journal stay)."""


class SeriesStore(Protocol):
    health: StoreHealth

    def load(self) -> Loaded: ...

    def append(self, frame: bytes) -> None:
        """Journal one record. Raises StoreUnavailableError (and marks health failing) when it cannot."""

    def append_many(self, frames: Sequence[bytes]) -> None: ...

    def rotate(self) -> int:
        """Start a new journal segment; returns its number (the checkpoint being written covers the rest)."""

    def begin_checkpoint(self, segment: int, next_seq: int) -> CheckpointWriter: ...

    def sync(self) -> None:
        """Make what was appended durable (the periodic fsync of the `interval` policy)."""

    def probe(self) -> None:
        """When failing: try a write, and recover health if it works."""

    def close(self) -> None: ...

    def describe(self) -> str: ...


class MemoryStore:
    """Keeps nothing (`state.dir: ""`): history is lost on restart. Always healthy."""

    def __init__(self) -> None:
        self.health = StoreHealth()

    def load(self) -> Loaded:
        return Loaded()

    def append(self, frame: bytes) -> None:
        pass

    def append_many(self, frames: Sequence[bytes]) -> None:
        pass

    def rotate(self) -> int:
        return 0

    def begin_checkpoint(self, segment: int, next_seq: int) -> CheckpointWriter:
        return _NoCheckpoint()

    def sync(self) -> None:
        pass

    def probe(self) -> None:
        pass

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "memory only (history is lost on restart)"


class _NoCheckpoint:
    def put(self, series_id: str, frame: bytes) -> None:
        pass

    def keep(self, series_id: str) -> bool:
        return True

    def commit(self) -> None:
        pass

    def abort(self) -> None:
        pass
