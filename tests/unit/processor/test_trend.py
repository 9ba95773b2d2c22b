"""Tests for the robust trend statistics in `processor.trend`.

Reference values come from SciPy (`scipy.stats.theilslopes`, `scipy.stats.kendalltau`) and NumPy
(`numpy.polyfit`), or from plain-Python re-computations in the tests. Random data is seeded.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from otel_leakproc.processor.trend import (
    FLAT,
    FloatArray,
    Trend,
    _theil_sen_one,
    bucket_minima,
    mann_kendall_z,
    median_finite,
    ols_slopes,
    theil_sen,
    theil_sen_rows,
)

MIB = 1024.0 * 1024.0


def _array(values: list[float]) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def _mk_variance(n: int) -> float:
    return n * (n - 1) * (2 * n + 5) / 18.0


# --- theil_sen: slope ---------------------------------------------------------------------------


def test_theil_sen_recovers_a_known_slope_despite_outliers() -> None:
    rng = np.random.default_rng(42)
    t = np.arange(60.0) / 60.0  # hours, one profile a minute
    y = 5e6 + 3e6 * t + rng.normal(0.0, 2e5, 60)
    y[[5, 17, 33, 48, 57, 59]] += 5e7  # a few huge spikes (a snapshot built while profiling)
    trend = theil_sen(t, y)
    assert trend.slope == pytest.approx(3e6, rel=0.03)
    assert trend.low <= 3e6 <= trend.high
    assert trend.low > 0  # growth, at 95%
    assert trend.n == 60
    # Least squares is dragged far off by the same outliers: the data really is hostile.
    assert np.polyfit(t, y, 1)[0] > 2 * 3e6
    reference = stats.theilslopes(y, t)
    assert trend.slope == pytest.approx(reference.slope, rel=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_theil_sen_slope_equals_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 90))
    irregular = np.sort(rng.uniform(0.0, 3.0, n))  # irregular push intervals
    repeated = np.sort(rng.integers(0, n // 2 + 1, n)).astype(np.float64)  # repeated timestamps
    t = irregular if seed % 2 else repeated
    y = rng.normal(0.0, 1.0, n) + rng.normal(0.0, 2.0) * t
    if seed % 3 == 0:
        y = np.round(y)  # ties in y
    trend = theil_sen(t, y)
    reference = stats.theilslopes(y, t)
    assert trend.slope == pytest.approx(reference.slope, rel=1e-12, abs=1e-12)
    assert trend.low <= trend.slope <= trend.high
    assert trend.z == mann_kendall_z(y)
    assert trend.n == n


def test_theil_sen_on_an_exact_line() -> None:
    t = np.arange(12.0) * 0.25
    trend = theil_sen(t, 2.0 * t + 5.0)
    assert (trend.slope, trend.low, trend.high) == (2.0, 2.0, 2.0)
    assert trend.intercept == pytest.approx(5.0)
    assert trend.z == pytest.approx((66 - 1) / math.sqrt(_mk_variance(12)))


def test_theil_sen_intercept_is_the_median_residual() -> None:
    t = _array([0.0, 1.0, 2.0, 3.0, 4.0])
    y = _array([1.0, 3.0, 5.0, 7.0, 100.0])
    trend = theil_sen(t, y)
    assert trend.slope == 2.0
    assert trend.intercept == float(np.median(y - 2.0 * t)) == 1.0


@pytest.mark.parametrize(
    ("t", "y"),
    [
        pytest.param([], [], id="empty"),
        pytest.param([0.0], [1.0], id="one-point"),
        pytest.param([0.0, 1.0], [1.0, 5.0], id="two-points"),
        pytest.param([3.0, 3.0, 3.0, 3.0], [1.0, 2.0, 3.0, 4.0], id="no-time-span"),
    ],
)
def test_theil_sen_without_enough_data_is_flat(t: list[float], y: list[float]) -> None:
    assert theil_sen(_array(t), _array(y)) == FLAT == Trend(0.0, 0.0, 0.0, 0.0, 0.0, 0)


def test_theil_sen_constant_series_is_flat_and_not_significant() -> None:
    trend = theil_sen(np.arange(20.0), np.full(20, 7.0))
    assert (trend.slope, trend.low, trend.high, trend.z) == (0.0, 0.0, 0.0, 0.0)
    assert trend.intercept == 7.0
    assert trend.low <= 0  # the interval does not exclude no growth


# --- theil_sen: confidence interval -------------------------------------------------------------


def test_theil_sen_interval_contains_the_true_slope_for_noisy_data() -> None:
    rng = np.random.default_rng(7)
    t = np.arange(40.0) / 60.0
    y = 1e8 + 2 * MIB * t + rng.normal(0.0, 0.3 * MIB, 40)
    trend = theil_sen(t, y)
    assert trend.low < 2 * MIB < trend.high
    assert trend.low > 0  # growth, at 95%
    # A useful interval, not an unbounded one.
    assert trend.high - trend.low < 2 * MIB


@pytest.mark.parametrize("n", [10, 30, 60])
def test_theil_sen_interval_has_about_95_percent_coverage(n: int) -> None:
    rng = np.random.default_rng(n)
    trials = 600
    t = np.arange(float(n))
    covered = 0
    for _ in range(trials):
        trend = theil_sen(t, 2.0 * t + rng.normal(0.0, 5.0, n))
        covered += trend.low <= 2.0 <= trend.high
    assert 0.92 <= covered / trials <= 0.985


def test_theil_sen_flat_noise_is_not_significant() -> None:
    rng = np.random.default_rng(3)
    significant = sum(theil_sen(np.arange(30.0), rng.normal(0.0, 1.0, 30)).low > 0 for _ in range(400))
    # One-sided 2.5% by construction; allow sampling noise, catch a broken interval.
    assert significant <= 25


def test_theil_sen_lower_bound_is_sens_rank() -> None:
    t = np.arange(6.0)
    y = _array([0.0, 3.0, 1.0, 4.0, 2.0, 5.0])
    # Sorted pairwise slopes: -2, -2, -1/3, 0.5 x6, 1, 4/3, 4/3, 3, 3, 3; M1 = (15 - 1.96 * 5.32) / 2 = 2.28.
    reference = stats.theilslopes(y, t)
    assert reference.low_slope == -2.0
    assert theil_sen(t, y).low == reference.low_slope


# --- mann_kendall_z -----------------------------------------------------------------------------


def test_mann_kendall_strictly_increasing_30_points() -> None:
    y = np.arange(30.0) * 3.0 + 1.0
    expected = (435 - 1) / math.sqrt(_mk_variance(30))  # S = 30 * 29 / 2 concordant pairs
    assert mann_kendall_z(y) == pytest.approx(expected)
    assert mann_kendall_z(y) > 5
    assert mann_kendall_z(y[::-1].copy()) == pytest.approx(-expected)


@pytest.mark.parametrize(
    "y",
    [
        pytest.param([], id="empty"),
        pytest.param([1.0, 2.0], id="two-points"),
        pytest.param([5.0] * 30, id="constant"),
        pytest.param([1.0, 0.0, 0.0, 1.0], id="no-trend-s0"),
        pytest.param([0.0, 2.0, 1.0], id="s1-continuity"),
        pytest.param([2.0, 0.0, 1.0], id="s-1-continuity"),
    ],
)
def test_mann_kendall_flat_series_give_zero(y: list[float]) -> None:
    assert mann_kendall_z(_array(y)) == 0.0


@pytest.mark.parametrize("seed", range(10))
def test_mann_kendall_agrees_with_kendalltau(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(10, 60))
    t = np.arange(float(n))
    y = rng.normal(0.0, 1.0, n) + rng.normal(0.0, 0.04) * t
    if seed % 2:
        y = np.round(y * 2) / 2  # many ties: exercises the tie correction
    z = mann_kendall_z(y)
    reference = stats.kendalltau(t, y, method="asymptotic")
    # With no ties in t, kendalltau's asymptotic z is S / sqrt(var) with the same tie-corrected variance;
    # Mann-Kendall's has the continuity correction (|S| - 1). Recover S from tau-b and z from the p-value.
    pairs = n * (n - 1) / 2
    _, counts = np.unique(y, return_counts=True)
    tied_pairs = float((counts * (counts - 1) / 2).sum())
    s = reference.statistic * math.sqrt(pairs * (pairs - tied_pairs))
    if round(abs(s)) <= 1:
        assert z == 0.0  # continuity correction: S = +-1 is no evidence at all
    else:
        assert np.sign(z) == np.sign(reference.statistic)
        z_reference = math.copysign(stats.norm.isf(reference.pvalue / 2), s)
        assert z == pytest.approx(z_reference * (abs(s) - 1) / abs(s), rel=1e-6)


def test_mann_kendall_is_rank_based() -> None:
    rng = np.random.default_rng(11)
    y = rng.normal(0.0, 1.0, 25) + 0.1 * np.arange(25.0)
    z = mann_kendall_z(y)
    assert z != 0
    assert mann_kendall_z(1000.0 * y + 5.0) == pytest.approx(z)
    assert mann_kendall_z(np.exp(y)) == pytest.approx(z)  # any increasing transform
    assert mann_kendall_z(-y) == pytest.approx(-z)
    spiked = y.copy()
    spiked[12] = 1e12  # one outlier moves z by at most one rank's worth
    assert abs(mann_kendall_z(spiked) - z) < 0.6


# --- bucket_minima ------------------------------------------------------------------------------


def _bucket_reference(t: FloatArray, y: FloatArray, bucket: float) -> tuple[list[float], list[float]]:
    groups: dict[int, list[tuple[float, float]]] = {}
    for ti, yi in zip(t.tolist(), y.tolist(), strict=True):
        groups.setdefault(math.floor((ti - t[0]) / bucket), []).append((ti, yi))
    times = [max(ti for ti, _ in members) for _, members in sorted(groups.items())]
    minima = [min(yi for _, yi in members) for _, members in sorted(groups.items())]
    return times, minima


def test_bucket_minima_takes_the_minimum_per_bucket() -> None:
    t = _array([0.0, 15.0, 30.0, 45.0, 60.0, 75.0, 90.0, 150.0, 160.0])
    y = _array([5.0, 3.0, 9.0, 4.0, 8.0, 2.0, 7.0, 6.0, 1.0])
    times, minima = bucket_minima(t, y, 60.0)
    # Buckets [0, 60), [60, 120), [120, 180): each is stamped with its last profile's time.
    assert minima.tolist() == [3.0, 2.0, 1.0]
    assert times.tolist() == [45.0, 90.0, 160.0]


@pytest.mark.parametrize("seed", range(5))
def test_bucket_minima_matches_a_plain_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.uniform(5.0, 40.0, 80)) + 1.79e9
    y = rng.normal(100.0, 10.0, 80)
    times, minima = bucket_minima(t, y, 60.0)
    expected_times, expected_minima = _bucket_reference(t, y, 60.0)
    assert times.tolist() == expected_times
    assert minima.tolist() == expected_minima
    assert len(minima) < len(y)


def test_bucket_minima_leaves_sparse_or_unbucketed_series_alone() -> None:
    t = np.arange(10.0) * 60.0
    y = np.arange(10.0)
    for bucket in (0.0, -1.0):
        assert bucket_minima(t, y, bucket) == (t, y)
    # Every profile already in its own bucket.
    times, minima = bucket_minima(t, y, 60.0)
    assert times.tolist() == t.tolist()
    assert minima.tolist() == y.tolist()
    empty = np.array([], dtype=np.float64)
    times, minima = bucket_minima(empty, empty, 60.0)
    assert len(times) == len(minima) == 0


def test_bucket_minima_recovers_the_floor_under_a_gc_sawtooth() -> None:
    # Profiles every 15 s; the heap saws up by 40 MiB between collections while the floor leaks 6 MiB/hour.
    t = np.arange(240.0) * 15.0
    floor = 200 * MIB + 6 * MIB * t / 3600.0
    y = floor + 40 * MIB * ((np.arange(240) % 4) / 3.0)
    times, minima = bucket_minima(t, y, 60.0)
    assert len(minima) == 60
    np.testing.assert_allclose(minima, floor[::4])
    trend = theil_sen(times / 3600.0, minima)
    assert trend.slope == pytest.approx(6 * MIB, rel=1e-9)


# --- ols_slopes ---------------------------------------------------------------------------------


def test_ols_slopes_match_polyfit_per_row() -> None:
    rng = np.random.default_rng(5)
    t = np.sort(rng.uniform(0.0, 2.0, 40))
    true_slopes = np.array([-3.0, 0.0, 0.5, 10.0, 1e6])
    ys = true_slopes[:, None] * t + rng.normal(0.0, 1.0, (5, 40)) + rng.normal(0.0, 100.0, (5, 1))
    slopes = ols_slopes(t, ys)
    assert slopes.shape == (5,)
    expected = [np.polyfit(t, row, 1)[0] for row in ys]
    np.testing.assert_allclose(slopes, expected, rtol=1e-9, atol=1e-9)


def test_ols_slopes_single_row_and_constant_time() -> None:
    t = np.arange(6.0)
    assert ols_slopes(t, (4.0 * t - 1.0)[None, :]).tolist() == pytest.approx([4.0])
    zeros = ols_slopes(np.full(6, 2.0), np.ones((3, 6)))
    assert zeros.shape == (3,)
    assert zeros.tolist() == [0.0, 0.0, 0.0]


# -- the batched fast path against the reference form, bit for bit -------------------------------------


def _rows_for(rng: np.random.Generator, mode: int, rows: int, n: int) -> FloatArray:
    if mode == 0:
        return rng.integers(0, 5, size=(rows, n)).astype(np.float64)  # many ties
    if mode == 1:
        return rng.normal(size=(rows, n)) * 10.0 ** float(rng.integers(0, 9))
    if mode == 2:
        return rng.choice([0.0, -0.0, 1.0, -1.0], size=(rows, n))  # zero medians of both signs
    if mode == 3:
        return rng.choice([0.0, -0.0], size=(rows, n))
    # Distinct values but for zeros of both signs: few tie groups (partition path), zero slopes of both signs
    ys = rng.normal(size=(rows, n))
    zeros = rng.random(size=(rows, n)) < 0.75
    ys[zeros] = rng.choice([0.0, -0.0], size=int(zeros.sum()))
    return ys


@pytest.mark.parametrize("seed", range(4))
def test_theil_sen_rows_equal_the_reference_bit_for_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for trial in range(300):
        n = int(rng.integers(0, 130 if trial % 10 == 0 else 40))
        t = np.sort(rng.random(n) * 3)
        if trial % 5 == 0 and n > 3:
            t[1], t[3] = t[0], t[2]  # pairs with dt == 0 are left out of the slopes
        if trial % 7 == 0:
            t = np.round(t, 1) - 1.0  # many equal times, negative times
        ys = _rows_for(rng, trial % 5, int(rng.integers(1, 6)), n)
        if trial % 11 == 0 and n:
            ys[0, rng.integers(0, n)] = np.nan
        if trial % 13 == 0 and n:
            ys[-1, rng.integers(0, n)] = np.inf
        if trial % 17 == 0 and n > 1:
            ys[0, :2] = (1e308, -1e308)  # differences overflow
        with np.errstate(all="ignore"):  # inf - inf, overflow: as in the reference form
            got = theil_sen_rows(t, ys)
            expected = [_theil_sen_one(t, row) for row in ys]
            single = [theil_sen(t, row) for row in ys]
        assert repr(got) == repr(expected) == repr(single)  # repr: -0.0 and 0.0 differ


@pytest.mark.parametrize("value", [0.0, -0.0, 3.5, -2.0])
@pytest.mark.parametrize("n", [3, 4, 25])
def test_theil_sen_rows_constant_rows_equal_the_reference(value: float, n: int) -> None:
    for t in (np.arange(n, dtype=np.float64), np.arange(n, dtype=np.float64) - 10.0):
        ys = np.full((2, n), value)
        ys[1, ::2] = -value  # for zeros: mixed signs, not constant bit for bit
        for row, trend in zip(ys, theil_sen_rows(t, ys), strict=True):
            assert repr(trend) == repr(_theil_sen_one(t, row))


def test_theil_sen_rows_without_rows_or_points() -> None:
    assert theil_sen_rows(np.arange(5.0), np.zeros((0, 5))) == []
    assert theil_sen_rows(np.arange(2.0), np.zeros((3, 2))) == [FLAT] * 3


@pytest.mark.parametrize("seed", range(3))
def test_median_finite_equals_numpy_median(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for trial in range(500):
        n = int(rng.integers(1, 60))
        a = _rows_for(rng, trial % 5, 1, n)[0]
        assert repr(median_finite(a)) == repr(float(np.median(a)))


@pytest.mark.parametrize("seed", range(2))
def test_theil_sen_rows_skipped_parts_leave_the_rest_bit_for_bit(seed: int) -> None:
    rng = np.random.default_rng(50 + seed)
    flags = ("slope", "interval", "z", "intercept")
    for trial in range(150):
        n = int(rng.integers(0, 130 if trial % 10 == 0 else 40))
        t = np.sort(rng.random(n) * 3)
        if trial % 5 == 0 and n > 3:
            t[1], t[3] = t[0], t[2]
        ys = _rows_for(rng, trial % 5, int(rng.integers(1, 4)), n)
        if trial % 11 == 0 and n:
            ys[0, rng.integers(0, n)] = np.nan
        skip = {flag: bool(rng.integers(0, 2)) for flag in flags}
        with np.errstate(all="ignore"):
            expected = [_theil_sen_one(t, row) for row in ys]
            got = theil_sen_rows(t, ys, **{flag: not off for flag, off in skip.items()})
        for trend, reference in zip(got, expected, strict=True):
            if reference == FLAT:
                assert trend == FLAT
                continue
            slope = not skip["slope"]
            shown = {
                "slope": slope,
                "low": slope and not skip["interval"],
                "high": slope and not skip["interval"],
                "intercept": slope and not skip["intercept"],
                "z": not skip["z"],
            }
            for field, kept in shown.items():
                value = getattr(trend, field)
                assert repr(value) == repr(getattr(reference, field)) if kept else math.isnan(value)
            assert trend.n == reference.n


def test_theil_sen_rows_times_of_another_dtype_are_not_confused() -> None:
    # The pairs are remembered per array of times: the same bytes as int64 and as float64 differ.
    as_float = np.arange(1.0, 7.0)
    as_int = as_float.view(np.int64)  # increasing integers near 4.6e18
    y = _array([0.0, 3.0, 1.0, 4.0, 2.0, 5.0])
    for t in (as_int, as_float, as_int):
        assert repr(theil_sen(t, y)) == repr(_theil_sen_one(t, y))
