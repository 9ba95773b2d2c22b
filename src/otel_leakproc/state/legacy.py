"""Reading a snapshot of the previous state format once: `snapshot.json.gz` (gzipped JSON, snapshot format
1 holding detector state version 2). At the first start of this release the snapshot is restored into the
table, written as a checkpoint, and renamed `snapshot.json.gz.migrated` so it is never read again.
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from typing import Any

from otel_leakproc.processor.state import SNAPSHOT_FILE, SeriesTable, StateError

log = logging.getLogger(__name__)

MIGRATED_SUFFIX = ".migrated"


def legacy_snapshot(directory: str | Path) -> Path | None:
    """The old snapshot file in `directory` if there is one still to migrate."""
    path = Path(directory) / SNAPSHOT_FILE
    return path if path.exists() else None


def restore_legacy(path: Path, table: SeriesTable) -> int:
    """Restore the old snapshot at `path` into `table`. Returns the number of series.

    Raises:
        StateError: the file is unreadable or of a version this release does not read.
    """
    snapshot = read_snapshot(path)
    if snapshot is None:
        return 0
    return table.restore(snapshot)


def read_snapshot(path: Path) -> dict[str, Any] | None:
    """The old snapshot at `path` as plain data (gzipped JSON), None when there is no file.

    Raises:
        StateError: the file cannot be read or is not a gzipped JSON object.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = json.loads(gzip.decompress(raw))
    except (OSError, EOFError, ValueError) as exc:
        raise StateError(f"{path}: not a valid snapshot: {exc}") from exc
    if not isinstance(data, dict):
        raise StateError(f"{path}: not a valid snapshot: top level is not an object")
    return data


def retire(path: Path, suffix: str = MIGRATED_SUFFIX) -> Path:
    """Rename a migrated (or unreadable) snapshot so it is not read again."""
    done = path.with_name(path.name + suffix)
    path.rename(done)
    return done


__all__ = ["StateError", "legacy_snapshot", "read_snapshot", "restore_legacy", "retire"]
