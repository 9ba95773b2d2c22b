"""Writes checkpoint_state<N>_heap.bin and checkpoint_state<N>_mutex.bin, N the detector state version of
the sources it runs on: checkpoint records of the first 41 profiles of corpus/steady_leak/heap and
corpus/lock_contention/mutex. Kept for the tests that an old checkpoint still restores
(tests/unit/test_state_codec.py), so run it with the sources of the release before a state version changes:

- `checkpoint_state6_*`: the release before state version 7 (which dropped the grids' per-value positions
  and changed how checkpoints order each point's values);
- `checkpoint_state7_*`: the release before state version 8 (which stores each grid's values as each name's
  floor and the differences from it), checkpoint payload layout CB3 (before CB4).
"""

from __future__ import annotations

from pathlib import Path

from otel_leakproc.analyze import load_series
from otel_leakproc.model import ProfileKind, SeriesKey
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.detector import STATE_VERSION, SeriesDetector
from otel_leakproc.receiver.decode import DecodeLimits
from otel_leakproc.state.records import checkpoint_frame

HERE = Path(__file__).parent
SERIES = {
    "heap": ("steady_leak", ProfileKind.HEAP),
    "mutex": ("lock_contention", ProfileKind.MUTEX),
}


def main() -> None:
    for name, (scenario, kind) in SERIES.items():
        folder = HERE.parent / "corpus" / scenario / name
        by_kind, errors = load_series(sorted(p for p in folder.iterdir() if p.is_file()), DecodeLimits(), None)
        assert not errors, errors
        ((_, summaries),) = by_kind.items()
        key = SeriesKey("t", scenario, "pod-1", kind)
        detector = SeriesDetector(key, ProcessorConfig())
        for summary in summaries[:41]:
            detector.update(summary)
        record = checkpoint_frame(1, key, {}, detector.to_state(arrays=True))
        (HERE / f"checkpoint_state{STATE_VERSION}_{name}.bin").write_bytes(record)


if __name__ == "__main__":
    main()
