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
    FloatArray,
    deceleration_z,
    growth_stopped,
    new_high_quanta,
    poisson_cdf,
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


def _corpus_time(file: Path) -> int:
    return corpus_time(file)
