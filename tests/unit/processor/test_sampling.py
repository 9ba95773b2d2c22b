"""Judging "stopped" with the sampling model: the statistics, and a real Go series that used to flap."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np

from otel_leakproc.analyze import AnalyzeOptions, analyze_paths
from otel_leakproc.evaluation import corpus_time
from otel_leakproc.model import Status
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.trend import (
    SLOWING_MEAN,
    SLOWING_RATIO,
    FloatArray,
    deceleration,
    deceleration_z,
    growth_stopped,
    intensity_ratio,
    laplace_mean,
    new_high_quanta,
    poisson_cdf,
    recorded_exactly,
    sample_quantum,
)
from otel_leakproc.receiver.decode import DecodeLimits

KIB = 1024
VERSIONS = Path(__file__).parents[2] / "testdata" / "versions"


def test_poisson_cdf_matches_the_sum_of_terms() -> None:
    lam = 4.4
    direct = sum(math.exp(-lam) * lam**i / math.factorial(i) for i in range(4))
    assert math.isclose(poisson_cdf(3, lam), direct, rel_tol=1e-12)
    assert poisson_cdf(0, lam) == math.exp(-lam)
    assert poisson_cdf(-1, lam) == 0.0
    assert poisson_cdf(5, 0.0) == 1.0


def test_quantum_is_the_period_for_small_objects_and_the_object_for_large_ones() -> None:
    period = 512 * KIB
    assert math.isclose(sample_quantum(512, period), period, rel_tol=0.001)
    assert math.isclose(sample_quantum(8 * 1024 * KIB, period), 8 * 1024 * KIB, rel_tol=0.001)
    assert sample_quantum(64, 0) == 64  # unsampled: whole objects


def test_a_quiet_stretch_that_sampling_explains_is_not_stopped() -> None:
    # 150 KiB/min, one 512 KiB sample every ~3.4 minutes: 15 minutes without one happens (p ~ 0.012).
    t = np.arange(60) / 60.0  # hours
    y = np.minimum(np.floor(np.arange(60) * 150 / 512), 13) * 512 * KIB  # steps until minute 45, then flat
    rate = 150 * KIB * 60.0
    quiet = growth_stopped(t, y, rate, 512 * KIB, 18, 0.001)
    assert not quiet.stopped, quiet
    # The same silence at 1.5 MiB/min (three samples a minute expected) is no chance: stopped.
    fast = growth_stopped(t, y * 10, rate * 10, 512 * KIB, 18, 0.001)
    assert fast.stopped, fast


def test_an_exact_leak_slowed_by_a_starved_cpu_is_not_stopped_but_one_that_stopped_is() -> None:
    # 16 one-second profiles of 8 KiB orders recorded one by one (the Python client): 60 orders a second,
    # then 35 a second for the last 5 (the loop starved of CPU). Counted as Poisson samples, 175 orders
    # where 300 were expected is "stopped" (p ~ 1e-14); with exact data the shortfall must be a plateau's.
    t = np.arange(16, dtype=float) / 3600
    per_second = np.where(np.arange(1, 16) > 10, 35.0, 60.0) * 8 * KIB
    y = np.concatenate(([0.0], np.cumsum(per_second)))
    rate = 60 * 8 * KIB * 3600.0
    counted = growth_stopped(t, y, rate, 8 * KIB, 5, 0.001)
    assert counted.stopped, counted
    exact = growth_stopped(t, y, rate, 8 * KIB, 5, 0.001, exact=True)
    assert not exact.stopped, exact
    flat = np.concatenate((y[:11], np.full(5, y[10])))  # no new order in the last 5 seconds
    assert growth_stopped(t, flat, rate, 8 * KIB, 5, 0.001, exact=True).stopped


def _sampled(expected_quanta: FloatArray, seed: int) -> FloatArray:
    """A site's sampled in-use bytes when `expected_quanta` (cumulative, per minute) are its mean samples."""
    counts = np.random.default_rng(seed).poisson(np.diff(expected_quanta, prepend=0.0))
    result: FloatArray = np.cumsum(counts) * 512.0 * KIB
    return result


MINUTES = np.arange(60, dtype=float)


def test_steady_sampled_growth_is_rarely_taken_for_slowing() -> None:
    # 240 KiB/min (a sample every ~2 minutes) from start-up: the Laplace z is about standard normal, so
    # it is below -2.33 in about 1% of series.
    zs = [deceleration_z(MINUTES / 60, _sampled(MINUTES * 240 / 512, seed), 512 * KIB) for seed in range(400)]
    assert abs(float(np.mean(zs))) < 0.2
    assert 0.8 < float(np.std(zs)) < 1.2
    assert sum(z <= -2.33 for z in zs) <= 12  # 1% of 400 is 4


def test_a_cache_filling_and_a_flushed_buffer_slow_down_a_leak_starting_late_speeds_up() -> None:
    hours = MINUTES / 60
    cache = 32 * (1 - np.exp(-MINUTES / 20))  # 16 MiB in 512 KiB samples, 1 - exp(-t / 20 min)
    assert deceleration_z(hours, cache * 512 * KIB, 512 * KIB) < -3
    buffer = (MINUTES % 12) * 700 / 512  # 700 KiB/min, emptied every 12 minutes
    assert deceleration_z(hours, buffer * 512 * KIB, 512 * KIB) < -4
    late = np.maximum(MINUTES - 20, 0) * 240 / 512  # a leak from minute 20
    assert deceleration_z(hours, late * 512 * KIB, 512 * KIB) > 2
    steady = MINUTES * 240 / 512
    assert abs(deceleration_z(hours, steady * 512 * KIB, 512 * KIB)) < 0.1


def test_a_cache_filling_and_a_flushed_buffer_are_slowing_by_a_fills_margin() -> None:
    hours = MINUTES / 60
    cache = deceleration(hours, 32 * (1 - np.exp(-MINUTES / 20)) * 512 * KIB, 512 * KIB)
    assert cache.slowing(2.33)
    assert cache.ratio < 0.15  # exp(-60 / 20) = 0.05 for the cache itself
    buffer = deceleration(hours, (MINUTES % 12) * 700 * KIB, 512 * KIB)
    assert buffer.slowing(2.33)


def test_the_effect_bound_is_the_mean_time_of_a_log_linear_intensity_ending_at_a_third() -> None:
    assert math.isclose(laplace_mean(0.0), 0.5)
    assert math.isclose(SLOWING_MEAN, 0.41024, abs_tol=1e-5)
    assert math.isclose(intensity_ratio(SLOWING_MEAN), SLOWING_RATIO, rel_tol=1e-9)
    assert math.isclose(intensity_ratio(laplace_mean(math.log(0.5))), 0.5, rel_tol=1e-9)
    assert math.isclose(intensity_ratio(0.5), 1.0, rel_tol=1e-9)


def _declining(total_quanta: float, decline: float, points: int) -> FloatArray:
    """Cumulative expected quanta of a rate falling linearly by `decline` (0.3: 30% lower at the end)."""
    u = np.arange(points, dtype=float) / (points - 1)
    result: FloatArray = total_quanta * (u - decline * u * u / 2) / (1 - decline / 2)
    return result


def test_a_fast_leak_whose_rate_wanes_with_the_load_is_not_slowing() -> None:
    # 120 one-minute profiles, 1,500 samples: a leak whose rate is 30% or 50% lower at the end of the window
    # than at its start (diurnal load). Its new highs' mean time shifts by 3-6% of the window, which the
    # Laplace z alone calls a significant slowing (-4 and -7.5 expected); by the effect size it is a leak.
    hours = np.arange(120, dtype=float) / 60
    for decline in (0.3, 0.5):
        called_by_z = 0
        for seed in range(20):
            d = deceleration(hours, _sampled(_declining(1500, decline, 120), seed), 512 * KIB)
            called_by_z += d.z <= -2.33
            assert d.mean_fraction > SLOWING_MEAN + 0.02, (decline, seed, d)
            assert not d.slowing(2.33), (decline, seed, d)
        assert called_by_z >= 18, decline  # what the z-only rule would have excluded


def test_an_exact_leak_with_an_uneven_rate_is_not_slowing() -> None:
    # The Python client: a 1-byte period, 200-byte orders, about 4,000 a profile: every one recorded, so the
    # "quanta" number in the hundreds of thousands and any wobble of the loop's rate is hugely significant.
    size = 200.0
    quantum = sample_quantum(size, 1.0)
    assert recorded_exactly(size, 1.0)
    rng = np.random.default_rng(7)
    seconds = np.arange(16, dtype=float)
    # CPU-starved: each interval's orders vary at random, and the last third runs at a quarter of the rate.
    rate = np.where(seconds[1:] > 10, 0.25, 1.0) * rng.gamma(2.0, 0.5, 15) * 4000 * size
    y = np.concatenate(([0.0], np.cumsum(rate)))
    exact = deceleration(seconds / 3600, y, quantum, exact=True)
    assert exact.mean_fraction <= SLOWING_MEAN  # a large effect: the loop did slow down at the end
    assert exact.n == 15  # one observation per profile interval, not ~50,000 objects
    assert not exact.slowing(2.33), exact
    counted = deceleration(seconds / 3600, y, quantum)  # as if each object were a Poisson sample
    assert counted.z < -50
    assert counted.slowing(2.33)
    # A mild unevenness (a rate 40% lower in the second half) is neither significant nor large.
    half = np.where(seconds[1:] > 8, 0.6, 1.0) * 4000 * size
    even = deceleration(seconds / 3600, np.concatenate(([0.0], np.cumsum(half))), quantum, exact=True)
    assert even.mean_fraction > SLOWING_MEAN
    assert not even.slowing(2.33)
    assert deceleration_z(seconds / 3600, np.concatenate(([0.0], np.cumsum(half))), quantum) < -30


def test_exact_recording_is_no_period_or_objects_of_several_periods() -> None:
    assert recorded_exactly(200.0, 1.0)  # the Python client's profiles
    assert recorded_exactly(64.0, 0.0)
    assert recorded_exactly(8 * 1024 * KIB, 512 * KIB)
    assert not recorded_exactly(512.0, 512 * KIB)  # Go's default sampling of small objects
    assert recorded_exactly(0.0, 1.0)  # size unknown, but no object is below 8 bytes
    assert not recorded_exactly(0.0, 512 * KIB)


def test_deceleration_needs_a_quantum_and_a_few_samples() -> None:
    hours = MINUTES / 60
    cache = 32 * (1 - np.exp(-MINUTES / 20)) * 512 * KIB
    assert deceleration_z(hours, cache, 0.0) == 0.0  # nothing known about sampling
    assert deceleration_z(hours, cache / 16, 512 * KIB) == 0.0  # 2 samples: too few to judge
    assert deceleration_z(hours[:2], cache[:2], 512 * KIB) == 0.0


def test_new_high_quanta_ignores_a_one_profile_spike() -> None:
    y = np.array([0, 1, 1, 5, 1, 1, 2, 2], dtype=float) * 512 * KIB  # 5: one profile, then gone
    assert new_high_quanta(y, 4, 512 * KIB) == 1.0  # from 1 to 2 (the median of 3 drops the spike)


def test_real_go_leak_with_sampling_gaps_never_flaps_back_to_ok() -> None:
    """150 KiB/min leak, no forced GC: flagged within the warm-up plus 15 profiles, then never ok again."""
    options = AnalyzeOptions(keep_timeline=True)
    (result,) = analyze_paths([str(VERSIONS / "steady_sampled")], ProcessorConfig(), DecodeLimits(), options)
    statuses = [r.status for r in result.timeline]
    first = next(i for i, s in enumerate(statuses) if s.flagged)
    assert first <= 30 + 15, first
    assert all(s.flagged for s in statuses[first:]), [s.value for s in statuses]
    assert result.report.status in (Status.SUSPECTED, Status.CONFIRMED)
    assert result.report.top_growers[0].function == "main.(*auditLog).retainAuditRecord"


CORPUS = Path(__file__).parents[2] / "testdata" / "corpus"


def test_no_series_flaps_back_to_ok_and_up_again() -> None:
    """Every series in the repository's corpus and the versioned series: the `transitions` of the report
    are the status changes in order, and none goes flagged -> ok -> flagged."""
    options = AnalyzeOptions(keep_timeline=True, time_of=_corpus_time)
    results = analyze_paths([str(CORPUS), str(VERSIONS)], ProcessorConfig(), DecodeLimits(), options)
    assert len(results) >= 10
    for result in results:
        statuses = [Status.INSUFFICIENT_DATA] + [r.status for r in result.timeline]  # a new series starts there
        changes = [(a, b) for a, b in itertools.pairwise(statuses) if a is not b]
        assert [(a, b) for _, a, b in result.report.transitions] == changes[-64:], result.source
        path = [b for _, b in changes]
        for i in range(len(path) - 2):
            assert not (path[i].flagged and path[i + 1] is Status.OK and path[i + 2].flagged), (result.source, path)


def _corpus_time(file: str) -> int:
    return corpus_time(file)
