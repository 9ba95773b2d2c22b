"""Writes snapshot-format2.json.gz: a snapshot as releases before the journal wrote it (snapshot format 1,
detector state version 2, gzipped JSON), of the first 30 steady_leak heap profiles uploaded as
`checkout{instance=pod-1}`. Kept for the test that such a snapshot restores once; rerun only to rebuild it
with the snapshot code of `processor/state.py` (`SeriesTable.to_snapshot`, `FileStateStore.save`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from otel_leakproc.analyze import load_series
from otel_leakproc.config import Settings
from otel_leakproc.model import ProfileKind, SeriesKey
from otel_leakproc.processor.state import SNAPSHOT_FILE, FileStateStore, SeriesTable

HERE = Path(__file__).parent
PROFILES = sorted((HERE.parent / "corpus" / "steady_leak" / "heap").glob("*.pb.gz"))[:30]


def main() -> None:
    settings = Settings()
    by_kind, errors = load_series(PROFILES, settings.decode.to_limits(), ProfileKind.HEAP)
    assert not errors, errors
    table = SeriesTable(settings.processor, 10)
    key = SeriesKey("default", "checkout", "pod-1", ProfileKind.HEAP)
    for summary in by_kind[ProfileKind.HEAP]:
        table.update(key, {"service.name": "checkout", "service.instance.id": "pod-1"}, summary)
    with tempfile.TemporaryDirectory() as tmp:
        FileStateStore(tmp).save(json.dumps(table.to_snapshot()))
        shutil.copy(Path(tmp) / SNAPSHOT_FILE, HERE / "snapshot-format2.json.gz")


if __name__ == "__main__":
    main()
