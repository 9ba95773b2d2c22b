"""The snapshot writer of releases before the journal, for the tests of the reader that migrates such snapshots.

The product only reads that format now (`SeriesTable.restore`, `state/legacy.py`); the writer lives with the
fixture it made, tests/testdata/state/make_format2_snapshot.py, and is loaded from there.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

STATE_DATA = Path(__file__).resolve().parents[2] / "testdata" / "state"
BUNDLED = STATE_DATA / "snapshot-format2.json.gz"

_spec = importlib.util.spec_from_file_location("make_format2_snapshot", STATE_DATA / "make_format2_snapshot.py")
assert _spec is not None
assert _spec.loader is not None
_writer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_writer)

snapshot = _writer.snapshot
write_snapshot = _writer.write_snapshot
