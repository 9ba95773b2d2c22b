"""Robust trend statistics (pure, numpy): Theil-Sen slope with Sen's confidence interval, Mann-Kendall.

Both are rank based, so a GC sawtooth or a single outlier moves them far less than least squares, and
they need no assumption about the noise distribution. Windows are small (tens to a few hundred points),
so the O(n^2) pairwise forms are cheap and exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple, cast

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

Z_95 = 1.959963984540054  # two-sided 95% normal quantile, for Sen's interval


@dataclass(frozen=True, slots=True)
class Trend:
    """Slope (units per time unit of `t`) with its 95% interval and the Mann-Kendall z statistic."""

    slope: float
    low: float
    high: float
    intercept: float
    z: float
    n: int


FLAT = Trend(0.0, 0.0, 0.0, 0.0, 0.0, 0)


@lru_cache(maxsize=64)
def _pairs(n: int) -> tuple[npt.NDArray[np.integer[Any]], npt.NDArray[np.integer[Any]]]:
    """Index pairs i < j for n points, cached per n (process-wide, so kept in the narrowest int type:
    int16 for windows below 32768 points, a quarter of intp's memory for the same indices)."""
    i, j = np.triu_indices(n, 1)
    narrow = np.int16 if n <= np.iinfo(np.int16).max else np.intp
    return i.astype(narrow), j.astype(narrow)


def mann_kendall_z(y: FloatArray) -> float:
    """Mann-Kendall trend statistic as a z score (positive = increasing), with the tie correction."""
    n = len(y)
    if n < 3:
        return 0.0
    i, j = _pairs(n)
    s = float(np.sign(y[j] - y[i]).sum())
    _, counts = np.unique(y, return_counts=True)
    ties = counts[counts > 1].astype(np.float64)
    var = (n * (n - 1) * (2 * n + 5) - float((ties * (ties - 1) * (2 * ties + 5)).sum())) / 18.0
    if var <= 0:
        return 0.0
    if s > 0:
        return (s - 1) / math.sqrt(var)
    if s < 0:
        return (s + 1) / math.sqrt(var)
    return 0.0


def theil_sen(
    t: FloatArray,
    y: FloatArray,
    *,
    slope: bool = True,
    interval: bool = True,
    z: bool = True,
    intercept: bool = True,
) -> Trend:
    """Theil-Sen slope of y over t with Sen's 95% confidence interval and the Mann-Kendall z.

    `slope`, `interval`, `z`, `intercept`: False skips that part (NaN in the result, see `theil_sen_rows`).
    """
    return theil_sen_rows(t, y[np.newaxis, :], slope=slope, interval=interval, z=z, intercept=intercept)[0]


class _Layout(NamedTuple):
    """What the fits over one array of times share: the pairs, their time differences, Sen's ranks."""

    i: npt.NDArray[np.intp]
    j: npt.NDArray[np.intp]
    dt: FloatArray  # time differences of the kept pairs (dt > 0)
    keep: npt.NDArray[np.bool_] | None  # which pairs are kept; None: every one
    lo_rank: int
    hi_rank: int


@lru_cache(maxsize=4)
def _pairs_intp(n: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """`_pairs(n)` as intp (indexes faster), for the few window lengths in use."""
    i, j = _pairs(n)
    return i.astype(np.intp), j.astype(np.intp)


# Process-wide and small: an evaluation fits over two or three arrays of times (the whole window, its
# recent part), and a dt array holds one float per pair (230 KiB for 240 points).
_LAYOUTS: dict[tuple[str, bytes], _Layout | None] = {}
_MAX_LAYOUTS = 4


def _layout(t: FloatArray) -> _Layout | None:
    """The pairs of `t` (None when no pair has dt > 0), remembered for the last few arrays of times."""
    key = (t.dtype.str, t.tobytes())
    if key in _LAYOUTS:
        return _LAYOUTS[key]
    n = len(t)
    i, j = _pairs_intp(n)
    dt = t[j] - t[i]
    positive = dt > 0
    m = int(np.count_nonzero(positive))
    layout = None
    if m:
        keep = None if m == len(dt) else positive
        if keep is not None:
            dt = dt[keep]
        var_s = n * (n - 1) * (2 * n + 5) / 18.0
        c = Z_95 * math.sqrt(var_s)
        # Sen's interval: the round((m - c)/2)-th and round((m + c)/2 + 1)-th smallest slopes (1-based).
        layout = _Layout(i, j, dt, keep, max(0, round((m - c) / 2) - 1), min(m - 1, round((m + c) / 2)))
    if len(_LAYOUTS) >= _MAX_LAYOUTS:
        _LAYOUTS.clear()
    _LAYOUTS[key] = layout
    return layout


def _rises(t: FloatArray) -> bool:
    """Whether some pair i < j has t[j] - t[i] > 0, i.e. t[j] > t[i] (NaNs take part in no pair)."""
    return bool((t[1:] > np.fmin.accumulate(t[:-1])).any())


def theil_sen_rows(
    t: FloatArray,
    ys: FloatArray,
    *,
    slope: bool = True,
    interval: bool = True,
    z: bool = True,
    intercept: bool = True,
) -> list[Trend]:
    """`theil_sen(t, row)` for every row of `ys` (one row per series over the same times).

    Each row's result is exactly `_theil_sen_one`'s, the reference form, bit for bit: the same pairwise
    differences and quotients in the same sort, medians read from order statistics as `np.median` forms
    them (`_median_sorted`, `median_finite`), and the Mann-Kendall sign sum and tie term counted as integers
    from the same differences. The times' pairs are computed once for all rows (and kept for the last few
    arrays of times). Rows holding a non-finite value take the reference form (numpy's NaN handling).

    Parts the caller does not use can be skipped, left NaN in the results (the fields computed are the
    same bit for bit): `interval=False` the interval (`low`, `high`; the slope then comes from a partition,
    not a sort), `z=False` the Mann-Kendall z, `intercept=False` the intercept, `slope=False` the slope
    (and with it the interval and the intercept: no pairwise quotients at all).
    """
    rows, n = ys.shape
    if n < 3 or rows == 0:
        return [FLAT] * rows
    if not slope:  # no quotients: the pairs only, and whether any has dt > 0 (else FLAT, as the fit is)
        if not _rises(t):
            return [FLAT] * rows
        i, j = _pairs_intp(n)
        dt, keep, lo_rank, hi_rank = t, None, 0, 0  # unused
    else:
        layout = _layout(t)
        if layout is None:
            return [FLAT] * rows
        i, j, dt, keep, lo_rank, hi_rank = layout
    interval = interval and slope
    intercept = intercept and slope
    sort = interval or not _zero_median_positive()  # a partition's zero medians are np.median's only then
    nan = math.nan
    var_n = n * (n - 1) * (2 * n + 5)
    out = []
    finite = cast(list[bool], np.isfinite(ys).all(axis=1).tolist())
    for y, ok in zip(ys, finite, strict=True):
        if not ok:
            ref = _theil_sen_one(t, y)
            out.append(
                Trend(
                    ref.slope if slope else nan,
                    ref.low if interval else nan,
                    ref.high if interval else nan,
                    ref.intercept if intercept else nan,
                    ref.z if z else nan,
                    n,
                )
            )
            continue
        if _zero_median_positive() and _constant(y):
            # Every difference is +0.0: slopes, interval and z are zeros, the intercept as usual.
            zero = 0.0 if interval else nan
            b = median_finite(y - 0.0 * t) if intercept else nan
            out.append(Trend(0.0 if slope else nan, zero, zero, b, 0.0 if z else nan, n))
            continue
        dy = y[j] - y[i]
        fit = low = high = b = mk = nan
        if slope:
            quotients = dy / dt if keep is None else dy[keep] / dt
            if sort:
                slopes = np.sort(quotients)
                fit = _median_sorted(slopes)
                if interval:
                    low, high = float(slopes[lo_rank]), float(slopes[hi_rank])
            else:
                fit = median_finite(quotients)
            if intercept:
                b = median_finite(y - fit * t)
        if z:
            s = int(np.count_nonzero(dy > 0)) - int(np.count_nonzero(dy < 0))
            ordered = np.sort(y)
            same = ordered[1:] == ordered[:-1]
            if same.any():
                runs = np.diff(np.flatnonzero(np.concatenate(([True], ~same, [True]))))
                ties = runs[runs > 1].astype(np.float64)
                var = (var_n - float((ties * (ties - 1) * (2 * ties + 5)).sum())) / 18.0
            else:
                var = (var_n - 0.0) / 18.0  # as with an empty tie sum
            mk = 0.0 if var <= 0 or s == 0 else (s - 1 if s > 0 else s + 1) / math.sqrt(var)
        out.append(Trend(fit, low, high, b, mk, n))
    return out


def _constant(y: FloatArray) -> bool:
    """All values the same, bit for bit as far as differences go (a zero of one sign only), so that
    every pairwise difference `y[j] - y[i]` is +0.0."""
    first = float(y[0])
    if not (y == first).all():
        return False
    if first != 0.0:
        return True
    negative = np.signbit(y)
    return bool(negative.all() or not negative.any())


def _median_sorted(a: FloatArray) -> float:
    """`float(np.median(a))` of a sorted, finite, non-empty array."""
    h = len(a) // 2
    if len(a) % 2:
        v = float(a[h])
        if v != 0.0:
            return v
    else:
        lo, hi = float(a[h - 1]), float(a[h])
        if lo != 0.0 or hi != 0.0:  # x + 0.0 and x + -0.0 are both x
            return (lo + hi) / 2.0
    return _zero_median(a)


def median_finite(a: FloatArray) -> float:
    """`float(np.median(a))` of a finite, non-empty array, by a partition at the middle."""
    h = len(a) // 2
    if len(a) % 2:
        v = float(np.partition(a, h)[h])
        if v != 0.0:
            return v
    else:
        part = np.partition(a, (h - 1, h))
        lo, hi = float(part[h - 1]), float(part[h])
        if lo != 0.0 or hi != 0.0:
            return (lo + hi) / 2.0
    return _zero_median(a)


def _zero_median(a: FloatArray) -> float:
    """`float(np.median(a))` when its middle values are zeros: `np.median` averages them with `np.mean`,
    whose sum starts at +0.0 in the numpy versions probed below, so the result is +0.0 whatever the
    signs of the zeros; elsewhere `np.median` itself (the sign may depend on its partition)."""
    return 0.0 if _zero_median_positive() else float(np.median(a))


@lru_cache(maxsize=1)
def _zero_median_positive() -> bool:
    """Probed on first use, not at import: `np.median` loads `numpy.ma`, which `analyze` on a pair of
    profiles (no fit needed) would otherwise pay for at start-up."""
    return not any(np.signbit(f(np.full(k, -0.0))) for f in (np.mean, np.median) for k in (1, 2, 3))


def _theil_sen_one(t: FloatArray, y: FloatArray) -> Trend:
    """The reference one-row form (numpy's median and unique): for rows with non-finite values."""
    n = len(y)
    if n < 3:
        return FLAT
    i, j = _pairs(n)
    dt = t[j] - t[i]
    keep = dt > 0
    slopes = np.sort((y[j] - y[i])[keep] / dt[keep])
    m = len(slopes)
    if m == 0:
        return FLAT
    slope = float(np.median(slopes))
    z = mann_kendall_z(y)
    var_s = n * (n - 1) * (2 * n + 5) / 18.0
    c = Z_95 * math.sqrt(var_s)
    # Sen's interval: the round((m - c)/2)-th and round((m + c)/2 + 1)-th smallest slopes (1-based).
    lo_rank = max(0, round((m - c) / 2) - 1)
    hi_rank = min(m - 1, round((m + c) / 2))
    intercept = float(np.median(y - slope * t))
    return Trend(slope, float(slopes[lo_rank]), float(slopes[hi_rank]), intercept, z, n)


def ols_slopes(t: FloatArray, ys: FloatArray) -> FloatArray:
    """Least-squares slopes of every row of `ys` over t at once: a cheap screen before the robust fit."""
    tc = t - t.mean()
    denom = float((tc * tc).sum())
    if denom == 0:
        return np.zeros(ys.shape[0])
    result: FloatArray = (ys - ys.mean(axis=1, keepdims=True)) @ tc / denom
    return result


def bucket_minima(t: FloatArray, y: FloatArray, bucket: float) -> tuple[FloatArray, FloatArray]:
    """Minimum of y per time bucket (GC sawtooth: the minima track what survives collection)."""
    if bucket <= 0 or len(t) == 0:
        return t, y
    keys = np.floor((t - t[0]) / bucket)
    uniq, start = np.unique(keys, return_index=True)
    if len(uniq) == len(t):
        return t, y
    mins = np.minimum.reduceat(y, start)
    ends = np.append(start[1:], len(t)) - 1
    return t[ends], mins


# -- has a sampled series stopped growing? ------------------------------------------------------------


def poisson_cdf(k: int, lam: float) -> float:
    """P(X <= k) for X ~ Poisson(lam) (summed in log space, so large lam does not underflow early)."""
    if k < 0:
        return 0.0
    if lam <= 0:
        return 1.0
    log_term = -lam  # log of P(X = 0)
    total = math.exp(log_term)
    for i in range(1, k + 1):
        log_term += math.log(lam / i)
        total += math.exp(log_term)
        if total >= 1.0:
            return 1.0
    return min(1.0, total)


def sample_quantum(object_size: float, period: float) -> float:
    """Bytes a site's sampled in-use value moves by per recorded sample.

    Go records an allocation of `s` bytes with probability 1 - exp(-s / period) and scales the sample by
    the inverse, so each recorded sample adds s / (1 - exp(-s / period)) bytes: about `period` for small
    objects, `s` itself for objects much larger than the period. Unsampled data (period 0) moves by whole
    objects. 0 when neither is known.
    """
    if period <= 0:
        return max(object_size, 0.0)
    if object_size <= 0:
        return period
    return object_size / -math.expm1(-object_size / period)


def median3(y: FloatArray) -> FloatArray:
    """Running median of 3 (ends kept): a single-profile spike (a slice's old backing array not yet
    freed, say) sets no new peak, while a step that stays does from its second profile on."""
    if len(y) < 3:
        return y
    padded = np.concatenate(([y[0]], y, [y[-1]]))
    before, here, after = padded[:-2], padded[1:-1], padded[2:]
    # The middle of three values (exactly one of them), without np.median's sort of a stacked copy: it
    # runs on every evaluation of a growing heap series.
    result: FloatArray = np.maximum(np.minimum(before, here), np.minimum(np.maximum(before, here), after))
    return result


def new_high_quanta(y: FloatArray, since: int, quantum: float) -> float:
    """Growth past the series' earlier maximum from point `since` on, in quanta (bytes when quantum is 0):
    how many new samples a sampled site gained there, churn below its old peak not counted."""
    if since >= len(y):
        return 0.0
    y = median3(y)
    before = float(y[:since].max()) if since > 0 else 0.0
    gained = max(0.0, float(y[since:].max()) - before)
    return gained / quantum if quantum > 0 else gained


def _last_new_high(peak: FloatArray, step: float) -> int:
    """Index of the last point where the running maximum `peak` passed the level of the previous such
    point by more than `step` (half a sample: smooth growth counts as it accumulates, churn does not)."""
    rises = np.flatnonzero(np.diff(peak) > 0) + 1
    if step <= 0 or not len(rises):
        return int(rises[-1]) if len(rises) else 0
    level = float(peak[0])
    last = 0
    for i in rises.tolist():
        value = float(peak[i])
        if value > level + step:
            level, last = value, i
    return last


@dataclass(frozen=True, slots=True)
class StopTest:
    """Whether growth stopped, judged as a count of samples (see `growth_stopped`).

    Attributes:
        stopped: growth is significantly below `rate` (p < alpha).
        p: the smaller of the two tests' p-values.
        expected: samples the rate should have produced in the recent stretch.
        observed: samples seen in it (new highs, in quanta).
        quiet_hours: time since the last new high.
    """

    stopped: bool
    p: float
    expected: float
    observed: float
    quiet_hours: float


def growth_stopped(
    t: FloatArray,
    y: FloatArray,
    rate: float,
    quantum: float,
    recent_n: int,
    alpha: float,
    ratio: float = 0.25,
    exact: bool = False,
) -> StopTest:
    """Has a growing, sampled series (`y` over times `t`, `rate` its long-run growth per unit of `t`) stopped?

    A sampled site grows in steps of one `quantum` (`sample_quantum`); at `rate` those steps arrive as a
    Poisson process with intensity rate / quantum, so a stretch without a step is expected now and then
    and means nothing until it is longer than chance explains. Two one-sided tests, each at alpha / 2:
    no new high for the time since the last one (P = exp(-expected)), and fewer new-high quanta in the last
    `recent_n` points than the rate predicts there (Poisson CDF: a decelerating series). A "new high" is
    the series passing its previous maximum, so churn that frees and reallocates below it counts for nothing.

    The rate used is the larger of `rate` and the growth from the first point to the last new high.
    Without a quantum (nothing known about sampling) the recent growth is compared with `ratio` x the
    expected growth instead, with no significance attached (p is 0 or 1). So is it for `exact` data (every
    allocation recorded, `recorded_exactly`): there is no counting noise then, and a Poisson test over
    thousands of whole objects calls any dip of the program's own rate (a loop starved of CPU) "stopped".
    """
    n = len(y)
    if n < 3 or rate <= 0:
        return StopTest(False, 1.0, 0.0, 0.0, 0.0)
    peak = np.maximum.accumulate(median3(y))
    last_high = _last_new_high(peak, quantum / 2 if quantum > 0 else 0.0)
    quiet = float(t[-1] - t[last_high])
    if last_high > 0 and t[last_high] > t[0]:
        # The rate while it grew: a series that grew and then stopped long ago has a whole-window Sen
        # slope near 0 (most pairs are ties), which would excuse any silence.
        rate = max(rate, float(peak[last_high] - peak[0]) / float(t[last_high] - t[0]))
    start = max(1, n - recent_n)
    span = float(t[-1] - t[start - 1])
    gained = max(0.0, float(peak[-1] - peak[start - 1]))
    if quantum <= 0 or exact:
        expected = rate * span
        stopped = gained < ratio * expected
        return StopTest(stopped, 0.0 if stopped else 1.0, expected, gained, quiet)
    lam_quiet = rate * quiet / quantum
    lam_recent = rate * span / quantum
    observed = gained / quantum
    p = min(math.exp(-lam_quiet), poisson_cdf(math.floor(observed + 0.5), lam_recent))
    return StopTest(p < alpha / 2, p, lam_recent, observed, quiet)


# A site is called slowing only when the intensity of its new highs, fitted log-linear over the window, is
# at the window's end no more than this share of what it was at the start (see `deceleration`).
SLOWING_RATIO = 1.0 / 3.0


def laplace_mean(beta: float) -> float:
    """Mean time, as a fraction of the window, of events whose intensity is proportional to exp(beta u)
    over u in [0, 1] (beta = log of the intensity's end-to-start ratio): 1 / (1 - exp(-beta)) - 1 / beta."""
    if abs(beta) < 1e-6:
        return 0.5 + beta / 12.0
    return 1.0 / -math.expm1(-beta) - 1.0 / beta


def intensity_ratio(mean_fraction: float) -> float:
    """The end-to-start intensity ratio exp(beta) of the log-linear fit whose mean time is `mean_fraction`
    of the window (the inverse of `laplace_mean`, by bisection; 0 and inf at the ends)."""
    if mean_fraction <= 0.0:
        return 0.0
    if mean_fraction >= 1.0:
        return math.inf
    lo, hi = -700.0, 700.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if laplace_mean(mid) < mean_fraction:
            lo = mid
        else:
            hi = mid
    return math.exp((lo + hi) / 2)


# The mean time below which the fitted ratio is at most SLOWING_RATIO (0.410 of the window).
SLOWING_MEAN = laplace_mean(math.log(SLOWING_RATIO))


@dataclass(frozen=True, slots=True)
class Deceleration:
    """The Laplace trend test of a site's new highs over the window (see `deceleration`).

    Attributes:
        z: the test's z (negative: slowing), 0 when not judged.
        mean_fraction: the new highs' mean time as a fraction of the window (0.5 when not judged).
        quanta: new-high quanta gained over the window.
        n: the count of independent events the z rests on (the quanta, or fewer for exact data).
    """

    z: float
    mean_fraction: float
    quanta: float
    n: float

    @property
    def ratio(self) -> float:
        """End-to-start ratio of the fitted log-linear intensity (1: steady; 1/3: a third at the end)."""
        return intensity_ratio(self.mean_fraction)

    def slowing(self, z_bar: float) -> bool:
        """Significantly slowing (z <= -z_bar) and by a fill's margin: the fitted intensity at the end at
        most SLOWING_RATIO of the start's (a leak whose rate merely wanes with the load is not slowing)."""
        return self.z <= -z_bar and self.mean_fraction <= SLOWING_MEAN


NOT_JUDGED = Deceleration(0.0, 0.5, 0.0, 0.0)


def deceleration(t: FloatArray, y: FloatArray, quantum: float, exact: bool = False) -> Deceleration:
    """Laplace trend test of a sampled series' growth over the whole window (`Deceleration`).

    A site growing at a constant rate gains its samples as a Poisson process of constant intensity, so
    the times of its new highs (in quanta, the series passing its earlier maximum, as `growth_stopped`
    counts them) are uniform over the window: their mean time is the window's midpoint, with a standard
    deviation of span / sqrt(12 N) for N quanta. A cache that fills (the share still missing decays) or
    a buffer that is flushed and refilled to the same level gains its new highs early, so their mean
    time falls before the midpoint; a leak that started inside the window gains them late. The Laplace
    test is the most powerful test of a log-linear intensity against a constant one. Not judged without
    a quantum or with fewer than 3 quanta gained (too little to judge).

    The z grows with sqrt(N) for the same shift of the mean, so with many quanta a leak whose rate merely
    wanes (a diurnal load) becomes a significant "slowing": `Deceleration.slowing` also asks for an
    effect size, the mean time itself. `exact`: the profile records every allocation (no sampling, or
    objects far larger than the period), so there is no counting noise and the quanta are not independent
    events: the program's own rate is what varies, observed once per profile interval, and N is capped at
    the number of intervals in which the series set a new high.
    """
    n = len(y)
    if n < 3 or quantum <= 0:
        return NOT_JUDGED
    peak = np.maximum.accumulate(median3(y))
    steps = np.diff(peak) / quantum
    quanta = float(steps.sum())
    span = float(t[-1] - t[0])
    if quanta < 3 or span <= 0:
        return NOT_JUDGED
    # Each step happened somewhere between its two profiles: charged to the middle of that interval.
    times = (t[1:] + t[:-1]) / 2 - t[0]
    mean = float((steps * times).sum()) / quanta
    events = min(quanta, float(np.count_nonzero(steps > 0))) if exact else quanta
    z = (mean - span / 2) / (span / math.sqrt(12.0 * events))
    return Deceleration(z, mean / span, quanta, events)


def deceleration_z(t: FloatArray, y: FloatArray, quantum: float, exact: bool = False) -> float:
    """`deceleration(...).z`: the Laplace z alone (negative: slowing)."""
    return deceleration(t, y, quantum, exact).z


# No allocation is smaller than this (Go's smallest size class; a CPython object is at least 16 bytes).
MIN_OBJECT_BYTES = 8.0


def recorded_exactly(object_size: float, period: float) -> bool:
    """Does a profile with this sampling `period` record (nearly) every allocation of this size? No
    period (exact byte counts), or objects at least 4 periods large (recorded with probability >= 98%:
    the Python client's period of 1 byte). An unknown size (0) counts as the smallest object."""
    return period <= 0 or max(object_size, MIN_OBJECT_BYTES) >= 4 * period


def recent_slope(th: FloatArray, y: FloatArray, recent_n: int) -> float:
    """Theil-Sen slope of the last `recent_n` points (the plateau checks use nothing else of that fit)."""
    return theil_sen(th[-recent_n:], y[-recent_n:], interval=False, z=False, intercept=False).slope
