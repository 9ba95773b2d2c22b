"""Mutex and block grids keep cumulative counters as 16-bit increases (history.py `CounterGrid`)."""

from __future__ import annotations

import numpy as np
import pytest

from otel_leakproc.processor.history import (
    FLOAT64,
    INCREMENTS,
    CounterGrid,
    Grid,
    naming_positions,
)


def _feed(steps: int = 60, window: int = 15, seed: int = 1) -> tuple[CounterGrid, Grid]:
    """A counter grid and a float64 grid fed the same counters: sites that skip points, a quiet site, an
    'other' site that goes down, the oldest points leaving the window."""
    rng = np.random.default_rng(seed)
    grid, reference = CounterGrid(20), Grid(20, scale=FLOAT64)
    counters = {f"s{i}": float(rng.integers(0, 10**12)) for i in range(10)}
    for step in range(steps):
        items = []
        for name in rng.permutation(list(counters)).tolist():
            if rng.random() < 0.8:
                counters[name] += float(rng.exponential(1e9) * (rng.random() < 0.7))
                items.append((name, counters[name]))
        items.sort(key=lambda item: -item[1])
        items.append(("other", 5e6 - step * 1e3))
        grid.append(items)
        reference.append(items)
        if grid.n > window:
            grid.popleft()
            reference.popleft()
        names = sorted(reference.index)
        got, want = grid.matrix(names), reference.matrix(names)
        assert ((got == 0) == (want == 0)).all()  # absent where the profile did not name the site
        # Every increase between two points naming the site within 0.046% of the true one.
        both = (got[:, 1:] != 0) & (got[:, :-1] != 0)
        error = np.abs(np.diff(got, axis=1) - np.diff(want, axis=1))[both]
        assert (error <= 4.6e-4 * np.abs(np.diff(want, axis=1))[both] + 0.5).all()
        assert grid.ranked(5, "") == reference.ranked(5, "")
    return grid, reference


def test_counter_grid_reads_counters_with_exact_increases() -> None:
    grid, reference = _feed()
    assert grid.values.dtype == np.int16
    names = sorted(reference.index)
    # The counters themselves drift only by the sum of the roundings: far below their size.
    got, want = grid.matrix(names), reference.matrix(names)
    assert np.abs(got - want).max() <= 4.6e-4 * np.abs(want).max()
    assert [name for name, _ in grid.first_items()] == [name for name, _ in reference.first_items()]
    rows, values, points = grid.entries()
    ref_rows, ref_values, ref_points = reference.entries()
    assert (rows == ref_rows).all()
    assert (points == ref_points).all()
    assert np.allclose(values, ref_values, rtol=4.6e-4)


def test_counter_grid_round_trip_by_id_is_exact() -> None:
    grid, _ = _feed(seed=2)
    _names, lengths, ids, codes, moves = grid.export_by_id(lambda name: 0)
    live = sorted(grid.index)
    again = CounterGrid(20)
    again.restore(live, lengths, ids, codes, naming_positions(lengths, ids, codes, moves), *grid.export_ends())
    assert (again.matrix(live) == grid.matrix(live)).all()
    # The next point is kept alike by both.
    items = [(name, value + 12345.0) for name, value in grid.first_items()]
    grid.append(items)
    again.append(items)
    assert (again.matrix(live) == grid.matrix(live)).all()
    with pytest.raises(ValueError, match="base and last"):
        CounterGrid(20).restore(live, lengths, ids, codes)


def test_increment_scale_is_signed_and_exact_below_4096() -> None:
    values = np.array([0.0, 1.0, -3.0, 4095.0, -4095.0, 1e9, -1e9, 2.0**48])
    back = INCREMENTS.decode(INCREMENTS.encode(values))
    assert (back[:5] == values[:5]).all()
    assert np.allclose(back[5:], values[5:], rtol=4.6e-4)
    assert INCREMENTS.encode([np.nan])[0] == 0


def test_counter_grid_from_counters_and_merge_match_the_float_grid() -> None:
    grid, reference = _feed(steps=20, window=30, seed=3)
    reference.merge(0, 6, quantized=False)
    grid.merge(0, 6, quantized=False)
    names = sorted(reference.index)
    assert np.allclose(grid.matrix(names), reference.matrix(names), rtol=4.6e-4)  # the drift of the counters
    assert grid.ranked(5, "") == reference.ranked(5, "")
