"""Fix verification: did the deploy that restarted a flagged series with a new version fix its leak?

When a flagged series restarts with another `service.version`, the detector keeps the flagged process's
segment (a `Segment`: ages since its start, the series total and the growth the flag rested on; bounded
by the history's `max_points`) and holds the flag. Once the new version is as old as the comparison age
(`processor.fix.compare_seconds`, or the flagged process's whole life when that was shorter), both are
compared like with like, from start-up to that same age: the Sen slope of the leaking heap sites (goroutine
kinds: the goroutine count) and the series' value at that age. The deploy fixed the leak when the new
slope is at most `fixed_ratio` of the old one and its 95% interval lies below the old rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from otel_leakproc.model import FixSide, FixVerdict, FixVerification, Status
from otel_leakproc.processor.config import FixConfig
from otel_leakproc.processor.trend import FloatArray, theil_sen

HOUR = 3600.0
MIN_POINTS = 4  # points each side needs below the comparison age for a slope


@dataclass(slots=True)
class Segment:
    """The part of a flagged process's life a fix is compared with (arrays in point order)."""

    version: str
    ages: FloatArray  # seconds since the process's first profile
    totals: FloatArray  # heap in use / goroutines
    measured: FloatArray  # what the flag rested on: the leaking sites' bytes (heap) or the totals

    @property
    def span(self) -> float:
        return float(self.ages[-1]) if len(self.ages) else 0.0


@dataclass(slots=True)
class FixCheck:
    """A fix verification in progress or done, as the detector keeps it.

    `held` is the flagged status the restart did not resolve (reported while the verdict is pending, and
    kept when the deploy did not fix the leak); `held_since` its `flagged_since`.
    """

    before: Segment
    sites: tuple[str, ...]
    after_version: str
    restart_time_nanos: int
    held: Status
    held_since: float | None
    result: FixVerification

    @property
    def verdict(self) -> FixVerdict:
        return self.result.verdict


def compare_age(before: Segment, config: FixConfig) -> float:
    """The age at which both processes are compared."""
    return min(config.compare_seconds, before.span)


def side(version: str, segment_ages: FloatArray, totals: FloatArray, measured: FloatArray, age: float) -> FixSide:
    """Growth and value of one process from its start up to `age` (inclusive)."""
    keep = segment_ages <= age + 1e-6
    th = segment_ages[keep] / HOUR
    trend = theil_sen(th, measured[keep], intercept=False)
    total = theil_sen(th, totals[keep], interval=False, z=False, intercept=False)
    return FixSide(
        version=version,
        growth_per_hour=trend.slope,
        growth_low_per_hour=trend.low,
        growth_high_per_hour=trend.high,
        total_growth_per_hour=total.slope,
        current=float(totals[keep][-1]),
    )


def pending(
    before: Segment, sites: tuple[str, ...], after_version: str, restart_time_nanos: int, config: FixConfig
) -> FixVerification:
    """The verification before the new version is old enough: the old side only."""
    age = compare_age(before, config)
    return FixVerification(
        verdict=FixVerdict.PENDING,
        restart_time_nanos=restart_time_nanos,
        age_seconds=age,
        sites=sites,
        before=side(before.version, before.ages, before.totals, before.measured, age),
        after=None,
        after_version=after_version,
    )


def judge(
    check: FixCheck, ages: FloatArray, totals: FloatArray, measured: FloatArray, config: FixConfig
) -> FixVerification | None:
    """The verdict once the new version (its segment: `ages`, `totals`, `measured`) has reached the
    comparison age with enough points; None while it has not."""
    age = compare_age(check.before, config)
    if not len(ages) or ages[-1] < age - 1e-6 or int(np.count_nonzero(ages <= age + 1e-6)) < MIN_POINTS:
        return None
    b = check.before
    before = side(b.version, b.ages, b.totals, b.measured, age)
    after = side(check.after_version, ages, totals, measured, age)
    if before.growth_per_hour > 0:
        fixed = (
            after.growth_per_hour <= config.fixed_ratio * before.growth_per_hour
            and after.growth_high_per_hour < before.growth_per_hour
        )
    else:  # nothing grew before by this age: fixed unless the new version grows
        fixed = after.growth_per_hour <= 0
    return FixVerification(
        verdict=FixVerdict.FIXED if fixed else FixVerdict.NOT_FIXED,
        restart_time_nanos=check.restart_time_nanos,
        age_seconds=age,
        sites=check.sites,
        before=before,
        after=after,
        after_version=check.after_version,
    )
