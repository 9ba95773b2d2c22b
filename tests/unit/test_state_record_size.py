"""Issue 12's bound on a checkpoint record: at most 16 KiB for a full heap series (240 points of 64 sites),
on the series `benchmarks/bench_state.py` measures (its values are noise, the worst case for the codec).
The record is 16,249-16,252 bytes, about 130 under the bound: a longer report or one more field in the
head would cross it unnoticed without this test."""

from __future__ import annotations

import sys
from pathlib import Path

from otel_leakproc.model import ProfileKind
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.state.records import checkpoint_frame

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
from bench_series_memory import fed_series

RECORD_BOUND = 16 * 1024


def test_the_benchmarks_full_heap_series_checkpoints_within_16_kib() -> None:
    config = ProcessorConfig()
    detector = fed_series(ProfileKind.HEAP, "pod-1", 2 * config.max_points, 64, config)
    assert len(detector.points) == config.max_points  # a full window
    record = checkpoint_frame(1, detector.key, {"service.name": "svc"}, detector.to_state(arrays=True))
    assert len(record) <= RECORD_BOUND, f"{len(record)} bytes"
