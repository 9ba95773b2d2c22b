"""Robust trend statistics (pure, numpy): Theil-Sen slope with Sen's confidence interval, Mann-Kendall.

Both are rank based, so a GC sawtooth or a single outlier moves them far less than least squares, and
they need no assumption about the noise distribution. Windows are small (tens to a few hundred points),
so the O(n^2) pairwise forms are cheap and exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

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

    @property
    def significant_up(self) -> bool:
        return self.low > 0.0


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


def theil_sen(t: FloatArray, y: FloatArray) -> Trend:
    """Theil-Sen slope of y over t with Sen's 95% confidence interval and the Mann-Kendall z."""
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
