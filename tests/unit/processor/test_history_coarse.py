"""Coarser far history (processor/history.py): the newest `fine_points` points whole, older ones merged 6 to 1.

Checks the bound (at most `max_points` profiles in at most `history_columns` points), what a merged point
holds (mean time, total and values, the last cumulative counter, first-seen order), the 16-bit log steps
of merged levels, that a checkpoint round trip changes no report at any point, and that a history written
whole (state version 3) is merged on restore exactly as appending it would have merged it. These run with
`fine_points: 60` (the compact history); the default (240 = max_points) merges nothing.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from otel_leakproc.model import ProfileKind, ProfileSummary, SeriesKey, SiteValue
from otel_leakproc.processor import history
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.detector import SeriesDetector, _pack, _report_to_state, _unpack
from otel_leakproc.processor.history import Grid, Points, dequantize, history_columns, quantize, snap
from otel_leakproc.state.codec import read_frames
from otel_leakproc.state.records import checkpoint_frame, checkpoint_state

NANOS = 1_000_000_000
T0 = 1_790_000_000
CONFIG = ProcessorConfig(fine_points=history.COMPACT_FINE_POINTS)


def _heap(j: int, rng: random.Random, leak: bool = True) -> ProfileSummary:
    sites = [
        SiteValue(f"main.site{i}", f"s{i}.go", i, float((1 << 20) * (1 + i % 5) + rng.randrange(1 << 14)), 10.0)
        for i in range(12)
    ]
    if leak:
        sites.append(SiteValue("main.leak", "leak.go", 7, float(200_000 * j + 1024), (200_000 * j + 1024) / 1024))
    sites.sort(key=lambda s: -s.value)
    return ProfileSummary(
        kind=ProfileKind.HEAP,
        time_nanos=(T0 + 30 * j) * NANOS,
        total=sum(s.value for s in sites) + 1e6,
        total_count=1000.0,
        sites=tuple(sites),
        sample_period=512 * 1024,
    )


def _restored(detector: SeriesDetector) -> SeriesDetector:
    record = checkpoint_frame(1, detector.key, {}, detector.to_state(arrays=True))
    frames, tail = read_frames(record)
    assert tail is None
    return SeriesDetector.from_state(detector.key, detector.config, checkpoint_state(frames[0].payload))


def test_history_holds_max_points_profiles_in_few_points() -> None:
    detector = SeriesDetector(SeriesKey("t", "s", "i", ProfileKind.HEAP), CONFIG)
    rng = random.Random(1)
    columns = history_columns(CONFIG.max_points, CONFIG.fine_points)
    assert columns == 95  # 60 whole + 5 waiting to be merged + 30 merged (29 while 6 more wait)
    for j in range(600):
        detector.update(_heap(j, rng))
        points = detector.points
        assert points.profiles <= CONFIG.max_points
        assert len(points) <= columns
        assert points.capacity == columns
        assert CONFIG.fine_points <= points.fine() < CONFIG.fine_points + history.COARSE_FACTOR or j < 66
    weights = detector.points.weights()
    assert (weights[: detector.points.coarse] == 6).all()
    assert (weights[detector.points.coarse :] == 1).all()
    assert detector.points.coarse >= 29
    assert detector._sites.columns == columns
    assert (np.diff(detector.points.times()) > 0).all()
    assert detector.report().status.flagged  # the leak is still seen through the merged history


def test_a_merged_point_holds_means_and_first_seen_order() -> None:
    points = Points(8)
    grid = Grid(8)
    rows = [
        [("a", 4.0), ("b", 8.0)],
        [("c", 2.0), ("a", 8.0)],
        [("b", 4.0)],
        [("a", 4.0), ("c", 2.0)],
        [("a", 1.0)],
    ]
    for j, items in enumerate(rows):
        points.append((T0 + j) * NANOS + j, 10.0 * j, float(j))
        grid.append(items)
    points.merge(4)
    grid.merge(0, 4, quantized=False)
    assert len(points) == 2
    assert points.coarse == 1
    assert points.profiles == 5
    merged = points[0]
    assert merged.weight == 4
    assert merged.time_nanos == (T0 * 4 + 6) * NANOS // 4 + (0 + 1 + 2 + 3) // 4
    assert merged.time == merged.time_nanos / NANOS
    assert merged.total == 15.0
    assert merged.cumulative == 3.0
    assert points[1].time == T0 + 4
    assert grid.first_items() == [("a", 4.0), ("b", 3.0), ("c", 1.0)]  # a, b seen first, then c
    assert grid.matrix(["a", "b", "c"]).tolist() == [[4.0, 1.0], [3.0, 0.0], [1.0, 0.0]]
    grid.popleft()
    points.popleft()
    assert grid.live_sorted() == ["a"]
    assert points.coarse == 0
    assert points.profiles == 1


def test_log_steps_are_within_0_035_percent_and_exact_once_snapped() -> None:
    values = np.array([0.0, 2.0**-17, 0.25, 1.0, 3.0, 1e3, 123_456_789.0, 2.0**40])
    steps = quantize(values)
    back = dequantize(steps)
    assert back[0] == 0.0
    assert back[1] == 0.0
    assert np.allclose(back[2:], values[2:], rtol=3.5e-4, atol=0)
    snapped = snap(values).astype(np.float32)  # as the grid keeps them
    assert (quantize(snapped.astype(np.float64)) == steps).all()
    assert (dequantize(quantize(snapped.astype(np.float64))).astype(np.float32) == snapped).all()


@pytest.mark.parametrize("kind", [ProfileKind.HEAP, ProfileKind.MUTEX, ProfileKind.GOROUTINE])
def test_checkpoint_round_trip_changes_no_report(kind: ProfileKind) -> None:
    rng = random.Random(5)
    detector = SeriesDetector(SeriesKey("t", "s", "i", kind), CONFIG)
    summaries = [_summary(kind, j, rng) for j in range(330)]
    for j, summary in enumerate(summaries):
        if j % 23 == 0 or j > 300:
            detector = _restored(detector)
        report = detector.update(summary)
        again = _restored(detector)
        assert _report_to_state(again.report()) == _report_to_state(report)
        assert again.points.coarse == detector.points.coarse
        np.testing.assert_array_equal(again._sites.matrix(again._sites.live_sorted()), _grid(detector, "_sites"))
        np.testing.assert_array_equal(again._groups.matrix(again._groups.live_sorted()), _grid(detector, "_groups"))


def _grid(detector: SeriesDetector, name: str) -> Any:
    grid = getattr(detector, name)
    return grid.matrix(grid.live_sorted())


def _summary(kind: ProfileKind, j: int, rng: random.Random) -> ProfileSummary:
    if kind is ProfileKind.HEAP:
        return _heap(j, rng)
    sys_path_bench()
    from bench_series_memory import goroutine_summary, mutex_summary

    make = goroutine_summary if kind is ProfileKind.GOROUTINE else mutex_summary
    return make(j, (T0 + 30 * j) * NANOS, 16, rng)


def sys_path_bench() -> None:
    import sys
    from pathlib import Path

    bench = str(Path(__file__).parents[3] / "benchmarks")
    if bench not in sys.path:
        sys.path.insert(0, bench)


def test_the_default_history_merges_nothing() -> None:
    config = ProcessorConfig()
    assert config.fine_points >= config.max_points
    assert history_columns(config.max_points, config.fine_points) == config.max_points
    detector = SeriesDetector(SeriesKey("t", "s", "i", ProfileKind.HEAP), config)
    rng = random.Random(2)
    for j in range(300):
        detector.update(_heap(j, rng))
    assert detector.points.coarse == 0
    assert len(detector.points) == config.max_points
    assert (detector.points.weights() == 1).all()


def test_fine_points_below_8_is_refused() -> None:
    assert ProcessorConfig(fine_points=7).validate() == ["fine_points: must be >= 8, got 7"]


def test_a_whole_history_of_state_version_3_is_merged_on_restore_as_appending_would() -> None:
    rng = random.Random(9)
    summaries = [_heap(j, rng) for j in range(240)]
    merged = SeriesDetector(SeriesKey("t", "s", "i", ProfileKind.HEAP), CONFIG)
    for s in summaries:
        merged.update(s)
    whole_config = ProcessorConfig(fine_points=10_000)  # what version 3 kept: every point whole
    whole = SeriesDetector(SeriesKey("t", "s", "i", ProfileKind.HEAP), whole_config)
    for s in summaries:
        whole.update(s)
    state = whole.to_state()
    assert whole.points.coarse == 0
    assert len(whole.points) == 240
    state["version"] = 3
    del state["points"]["weight"]
    meta = state["meta"]  # version 8 writes a site's function as None where it is the site's name
    functions = zip(meta["name"], meta["function"], strict=True)
    meta["function"] = [state["names"][i] if f is None else f for i, f in functions]
    for grid in ("sites", "groups"):  # version 3: values in naming order, as floats (float32 for heap)
        g = state[grid]
        lengths = _unpack(g["lengths"], "<i4")
        if "present" in g:  # version 8: a bitmap (a grid of no values lists its empty ids)
            by_id = history.ids_of_presence(lengths, _unpack(g.pop("present"), "|u1"), len(g["names"]), np.int8)
        else:
            by_id = _unpack(g["ids"], "|i1")
        groups = {int(w): _unpack(v, "|u1" if int(w) <= 8 else "<u2") for w, v in g["values"].items()}
        codes = history.codes_of_widths(by_id, _unpack(g["floor"], "<u2"), _unpack(g["widths"], "|u1"), groups)
        whole_points, whole_ids = _unpack(g["whole"], "<i4"), _unpack(g["whole_ids"], "|i1")
        keys = codes.astype(np.int64)
        if "tied" in g:  # version 8: the fields of the runs of one code alone
            ties = history.ties_of_tied(lengths, by_id, keys, _unpack(g.pop("tied"), "|u1"), whole_points)
        else:
            ties = _unpack(g.pop("ties"), "|u1")
        positions = history.positions_of_ties(lengths, by_id, keys, ties, whole_points, whole_ids)
        naming = np.lexsort((positions, np.repeat(np.arange(len(lengths)), lengths)))
        ids, values = by_id[naming], codes[naming]
        g.update(ids=_pack(ids), values=_pack(history.LEVELS.decode(values).astype(np.float32)))
        for key in ("whole", "whole_ids", "floor", "widths"):
            del g[key]
    restored = SeriesDetector.from_state(whole.key, CONFIG, state)
    assert restored.points.coarse == merged.points.coarse
    assert restored.points.capacity == 95
    np.testing.assert_array_equal(restored.points.times(), merged.points.times())
    np.testing.assert_array_equal(restored.points.totals(), merged.points.totals())
    np.testing.assert_array_equal(_grid(restored, "_sites"), _grid(merged, "_sites"))
    nxt = _heap(240, rng)
    assert _report_to_state(restored.update(nxt)) == _report_to_state(merged.update(nxt))
