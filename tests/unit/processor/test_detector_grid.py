"""The detector's incremental site-by-point grid: same verdicts as reading the points, bounded rows.

The grid replaces rebuilding matrices from the points' dicts after every profile. These tests feed real
corpus series with the grid in use and with it forced into its fallback (a row bound too small for the
series), and require identical reports; and they check that rows of names that left the history are
freed, so the grid tracks only live names.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest

from otel_leakproc.model import ProfileKind, ProfileSummary, SeriesKey, SiteValue
from otel_leakproc.processor import history as history_module
from otel_leakproc.processor.config import HeapConfig, ProcessorConfig
from otel_leakproc.processor.detector import SeriesDetector
from otel_leakproc.receiver.decode import DecodeLimits, decode_profile

CORPUS = Path(__file__).parents[2] / "testdata" / "corpus"
NANOS = 1_000_000_000
T0 = 1_790_000_000

SERIES = [
    ("steady_leak/heap", ProfileKind.HEAP),
    ("warmup_plateau/heap", ProfileKind.HEAP),
    ("restart/heap", ProfileKind.HEAP),
    ("goroutine_leak/goroutine", ProfileKind.GOROUTINE),
    ("lock_contention/mutex", ProfileKind.MUTEX),
    ("lock_contention/block", ProfileKind.BLOCK),
]
SHORT = ProcessorConfig(max_points=16, heap=HeapConfig(warmup_seconds=300, min_window_seconds=300))


@cache
def corpus_series(folder: str, kind: ProfileKind) -> tuple[ProfileSummary, ...]:
    files = sorted((CORPUS / folder).glob("*.pb.gz"))
    summaries = [decode_profile(f.read_bytes(), DecodeLimits(), kind_hint=kind) for f in files]
    return tuple(sorted(summaries, key=lambda s: s.time_nanos))


@pytest.mark.parametrize("fine", [None, 8], ids=["whole", "merged-after-8"])
@pytest.mark.parametrize("config", [ProcessorConfig(), SHORT], ids=["default", "short-window"])
@pytest.mark.parametrize(("folder", "kind"), SERIES)
def test_grid_and_point_fallback_give_identical_reports(
    monkeypatch: pytest.MonkeyPatch, folder: str, kind: ProfileKind, config: ProcessorConfig, fine: int | None
) -> None:
    if fine is not None:  # older points merged past the newest 8: both forms merge alike
        config = replace(config, fine_points=fine)
    series = corpus_series(folder, kind)
    with_grid = SeriesDetector(SeriesKey("t", "s", "i", kind), config)
    monkeypatch.setattr(history_module, "MAX_GRID_ROWS", 1)
    fallback = SeriesDetector(SeriesKey("t", "s", "i", kind), config)
    flagged = False
    for summary in series:
        report = with_grid.update(summary)
        assert fallback.update(summary) == report
        flagged = flagged or report.status.flagged
    grid = "_groups" if kind is ProfileKind.GOROUTINE else "_sites"  # goroutine series keep no site grid
    assert not getattr(with_grid, grid).overflow
    assert getattr(fallback, grid).overflow
    if fine is not None and config.max_points >= 2 * (fine + history_module.COARSE_FACTOR):
        assert with_grid.points.coarse > 0
    assert flagged or folder == "warmup_plateau/heap" or fine is not None


def _churning(minute: int) -> ProfileSummary:
    """Every profile names 4 sites of its own and one that persists."""
    sites = [SiteValue(f"main.gen{minute}_{i}", "gen.go", i, 1000.0 + i) for i in range(4)]
    sites.append(SiteValue("main.persistent", "p.go", 1, 5000.0 + minute))
    return ProfileSummary(
        kind=ProfileKind.HEAP,
        time_nanos=(T0 + 60 * minute) * NANOS,
        total=sum(s.value for s in sites),
        sites=tuple(sorted(sites, key=lambda s: -s.value)),
    )


def test_rows_of_names_that_left_the_history_are_freed() -> None:
    config = ProcessorConfig(max_points=10)
    detector = SeriesDetector(SeriesKey("t", "s", "i", ProfileKind.HEAP), config)
    for minute in range(100):
        detector.update(_churning(minute))
        # The history holds the last 10 profiles: exactly their names are live.
        live = {s.function for m in range(max(0, minute - 9), minute + 1) for s in _churning(m).sites}
        assert set(detector._sites.index) == live
    assert len(detector.points) == 10
    assert detector._sites.rows == 10 * 4 + 1
    assert len(detector._sites.count) <= 64  # storage reused, not grown per new name


def test_a_series_that_churns_past_the_row_bound_falls_back_then_recovers_after_a_restart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(history_module, "MAX_GRID_ROWS", 20)
    reference_config = ProcessorConfig(max_points=10)
    detector = SeriesDetector(SeriesKey("t", "s", "i", ProfileKind.HEAP), reference_config)
    for minute in range(30):
        detector.update(_churning(minute))
    assert detector._sites.overflow
    names = detector._site_names()
    assert names[0] == "main.persistent"
    # A restart (cumulative totals going down) cuts the history: the grid starts over, maintained again.
    detector.update(ProfileSummary(ProfileKind.HEAP, (T0 + 60 * 30) * NANOS, 1.0, cumulative=5.0))
    detector.update(ProfileSummary(ProfileKind.HEAP, (T0 + 60 * 31) * NANOS, 1.0, cumulative=1.0))
    assert detector.restarts == 1
    assert not detector._sites.overflow


def test_points_share_one_copy_of_each_name() -> None:
    """Each decoded profile brings its own name strings; the history keeps one (interned) copy per name."""
    detector = SeriesDetector(SeriesKey("t", "s", "i", ProfileKind.HEAP), ProcessorConfig())
    for minute in range(3):
        name = "".join(["main.", "persistent"])  # a new, equal str object per profile
        site = SiteValue(name, "p.go", 1, 100.0)
        detector.update(ProfileSummary(ProfileKind.HEAP, (T0 + 60 * minute) * NANOS, 100.0, sites=(site,)))
    assert len(detector.points) == 3
    assert detector._sites.rows == 1
    assert detector._sites.names[0] is sys.intern("main.persistent")
    assert detector._sites.matrix(["main.persistent"]).tolist() == [[100.0, 100.0, 100.0]]
