"""Fix verification: did the deploy that restarted a flagged series with a new version fix its leak?

When a flagged series restarts with another `service.version`, the detector keeps the flagged process's
segment (a `Segment`: ages since its start, the series total and the growth the flag rested on; bounded
by the history's `max_points`) and holds the flag. Once the new version is as old as the comparison age
(`processor.fix.compare_seconds`, or the flagged process's whole life when that was shorter), both are
compared like with like, from start-up to that same age: the Sen slope of the leaking heap sites (goroutine
kinds: the goroutine count) and the series' value at that age. The deploy fixed the leak when the new
slope is at most `fixed_ratio` of the old one and its 95% interval lies below the old rate.

Mutex and block series (cumulative delay since process start) compare the lock delay rate instead: seconds
of waiting per second from start-up to the same age (block profiles: lock waits only), with a 95% interval
from the spread of the rates between consecutive profiles, and each process's most contended site with its
share of that delay. The deploy fixed the contention when the new rate is at most `fixed_ratio` of the old
one and its 95% interval lies below the old rate, or when its whole interval lies below the contention
detector's own floor (`contention.min_delay_rate`): a rate nothing would be flagged at. Contention that was
flagged late in the old process is compared up to `min_compare_seconds` past the age of its flag.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from otel_leakproc.model import FixSide, FixVerdict, FixVerification, Status
from otel_leakproc.processor.config import FixConfig
from otel_leakproc.processor.trend import FloatArray, theil_sen

HOUR = 3600.0
MIN_POINTS = 4  # points each side needs below the comparison age for a slope
# Two-sided 95% Student t quantiles by degrees of freedom (1..30); beyond, the normal 1.96. A delay rate's
# interval rests on few intervals between profiles, so the normal quantile would be too narrow.
# fmt: off
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)
# fmt: on


@dataclass(slots=True)
class Segment:
    """The part of a flagged process's life a fix is compared with (arrays in point order)."""

    version: str
    ages: FloatArray  # seconds since the process's first profile
    totals: FloatArray  # heap in use / goroutines / the profile's total delay
    # What the flag rested on: the leaking sites' bytes (heap), the totals (goroutines), the cumulative
    # delay of the lock sites (mutex, block; see `contention.lock_sites`).
    measured: FloatArray
    # Contention only: the lock site with the most delay from start-up to the comparison age, and its
    # cumulative delay (None for heap and goroutine segments).
    top_site: str = ""
    top_measured: FloatArray | None = None
    # Contention only: the age the flag was raised at plus `min_compare_seconds`. Contention comes with load,
    # not with age: when it began late, the comparison reaches this age (within the flagged process's life),
    # so that both processes are compared over ages the old one was contended at, not over a quiet start-up.
    min_age: float = 0.0

    @property
    def span(self) -> float:
        return float(self.ages[-1]) if len(self.ages) else 0.0

    @property
    def contention(self) -> bool:
        return self.top_measured is not None

    def upto(self, age: float) -> Segment:
        """The points at most `age` old."""
        keep = self.ages <= age + 1e-6
        top = None if self.top_measured is None else self.top_measured[keep]
        return Segment(
            self.version, self.ages[keep], self.totals[keep], self.measured[keep], self.top_site, top, self.min_age
        )


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
    return min(max(config.compare_seconds, before.min_age), before.span)


def side(segment: Segment, age: float) -> FixSide:
    """What one process shows from its start up to `age` (inclusive)."""
    if segment.contention:
        return delay_side(segment, age)
    return growth_side(segment.version, segment.ages, segment.totals, segment.measured, age)


def growth_side(
    version: str, segment_ages: FloatArray, totals: FloatArray, measured: FloatArray, age: float
) -> FixSide:
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


def delay_side(segment: Segment, age: float) -> FixSide:
    """The lock delay rate of one process from its start up to `age` (inclusive), in ns per second.

    The rate is the delay accumulated between the first profile and the last one at or below `age`, over
    the time between them. Its 95% interval comes from the spread of the rates between consecutive
    profiles (the standard error of that ratio, with Student's t for their number): sampled profiles record
    delay in lumps, and a process that waited in a few lumps gets a wide interval. `growth_per_hour` is
    the Sen slope of those interval rates over age (how the rate changed), `current` the rate itself.
    """
    keep = segment.ages <= age + 1e-6
    ages, cumulative = segment.ages[keep], segment.measured[keep]
    span = float(ages[-1] - ages[0])
    delays = np.diff(cumulative)
    rate = float(cumulative[-1] - cumulative[0]) / span if span > 0 else 0.0
    steps = np.diff(ages)
    m = len(steps)
    if m >= 2 and span > 0:
        rates = delays / steps
        spread = float(np.sqrt(np.sum(steps**2 * (rates - rate) ** 2) * m / (m - 1))) / span
        margin = (_T95[m - 2] if m - 1 <= len(_T95) else 1.96) * spread
        trend = theil_sen(ages[1:] / HOUR, rates, z=False, intercept=False)
        total = theil_sen(ages / HOUR, segment.totals[keep], interval=False, z=False, intercept=False)
        growth, low, high, total_growth = trend.slope, trend.low, trend.high, total.slope
    else:
        margin, growth, low, high, total_growth = 0.0, 0.0, 0.0, 0.0, 0.0
    top_delay = 0.0
    if segment.top_measured is not None and segment.top_site:
        top = segment.top_measured[keep]
        top_delay = float(top[-1] - top[0])
    delay = float(cumulative[-1] - cumulative[0])
    return FixSide(
        version=segment.version,
        growth_per_hour=growth,
        growth_low_per_hour=low,
        growth_high_per_hour=high,
        total_growth_per_hour=total_growth,
        current=rate,
        delay_rate=rate,
        delay_rate_low=max(0.0, rate - margin),
        delay_rate_high=rate + margin,
        top_site=segment.top_site if top_delay > 0 else "",
        top_site_share=min(1.0, top_delay / delay) if delay > 0 and top_delay > 0 else 0.0,
    )


def top_lock(names: list[str], ages: FloatArray, cumulative: FloatArray, age: float) -> tuple[str, FloatArray]:
    """The site (row of `cumulative`, per site and point) with the most delay from start-up to `age`."""
    keep = ages <= age + 1e-6
    if not len(names) or not keep.any():
        return "", np.zeros(len(ages))
    first, last = 0, int(np.flatnonzero(keep)[-1])
    delays = cumulative[:, last] - cumulative[:, first]
    best = int(np.argmax(delays))
    return (names[best], cumulative[best]) if delays[best] > 0 else ("", np.zeros(len(ages)))


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
        before=side(before, age),
        after=None,
        after_version=after_version,
    )


def judge(check: FixCheck, new: Segment, config: FixConfig, floor: float = 0.0) -> FixVerification | None:
    """The verdict once the new version (its segment `new`) has reached the comparison age with enough
    points; None while it has not. `floor`: contention's `min_delay_rate` in ns per second."""
    age = compare_age(check.before, config)
    ages = new.ages
    if not len(ages) or ages[-1] < age - 1e-6 or int(np.count_nonzero(ages <= age + 1e-6)) < MIN_POINTS:
        return None
    before = side(check.before, age)
    after = side(new, age)
    if check.before.contention:
        assert before.delay_rate is not None
        assert after.delay_rate is not None
        assert after.delay_rate_high is not None
        fixed = (
            after.delay_rate <= config.fixed_ratio * before.delay_rate and after.delay_rate_high < before.delay_rate
        ) or after.delay_rate_high < floor
    elif before.growth_per_hour > 0:
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
