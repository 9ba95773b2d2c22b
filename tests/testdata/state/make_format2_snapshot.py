"""Writes snapshot-format2.json.gz: a snapshot as releases before the journal wrote it (snapshot format 1,
gzipped JSON), of the first 30 steady_leak heap profiles uploaded as `checkout{instance=pod-1}`. Kept for
the tests that such a snapshot restores once (`state/legacy.py`, `SeriesTable.restore`).

The product no longer writes snapshots (it keeps a journal and checkpoints, `state/`); the writer those
releases used lives here, so the fixture can be rebuilt. The bundled file holds detector state version 2;
rebuilt now, it would hold the state version of this release (`SeriesDetector.to_state`), which the
tests of the old format are not about: rerun only if the snapshot format itself must be shown anew.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Any

from otel_leakproc.analyze import load_series
from otel_leakproc.config import Settings
from otel_leakproc.model import ProfileKind, SeriesKey
from otel_leakproc.processor.state import SNAPSHOT_FORMAT, SNAPSHOT_VERSION, SeriesTable

HERE = Path(__file__).parent
PROFILES = sorted((HERE.parent / "corpus" / "steady_leak" / "heap").glob("*.pb.gz"))[:30]


def snapshot(table: SeriesTable) -> dict[str, Any]:
    """The whole table as a format-1 snapshot, least recently updated series first (so a restore keeps the
    table's eviction order)."""
    return {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "saved_at_unix": time.time(),
        "series": [
            {
                "tenant": t.key.tenant,
                "service": t.key.service,
                "instance": t.key.instance,
                "kind": t.key.kind.value,
                "resource": t.resource,
                "detector": t.detector.to_state(),
            }
            for t in table
        ],
    }


def write_snapshot(data: dict[str, Any], path: Path) -> None:
    """Gzipped compact JSON, as the old file store saved it."""
    path.write_bytes(gzip.compress(json.dumps(data, separators=(",", ":")).encode(), compresslevel=3))


def main() -> None:
    settings = Settings()
    by_kind, errors = load_series(PROFILES, settings.decode.to_limits(), ProfileKind.HEAP)
    assert not errors, errors
    table = SeriesTable(settings.processor, 10)
    key = SeriesKey("default", "checkout", "pod-1", ProfileKind.HEAP)
    for summary in by_kind[ProfileKind.HEAP]:
        table.update(key, {"service.name": "checkout", "service.instance.id": "pod-1"}, summary)
    write_snapshot(snapshot(table), HERE / "snapshot-format2.json.gz")


if __name__ == "__main__":
    main()
