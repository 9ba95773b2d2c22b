"""Heap leak evaluation: in-use bytes of the series and of its allocation sites, over the current segment.

A heap is suspected when its total, or one of its sites, grows significantly (Mann-Kendall z, Sen's interval
above the growth floor) after the warm-up, and the growth has not stopped under the sampling model (a cache
that filled is not a leak); see docs/detection.md. `evaluate` runs after every profile.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from otel_leakproc.model import OTHER_SITE, Evidence, SeriesReport, Status
from otel_leakproc.processor.trend import (
    FloatArray,
    StopTest,
    Trend,
    bucket_minima,
    deceleration,
    growth_stopped,
    new_high_quanta,
    ols_slopes,
    recent_slope,
    recorded_exactly,
    sample_quantum,
    theil_sen,
    theil_sen_rows,
)

if TYPE_CHECKING:
    from otel_leakproc.processor.detector import SeriesDetector

HOUR = 3600.0


@lru_cache(maxsize=32)
def bonferroni_z(z: float, tests: int) -> float:
    """The z threshold that keeps the one-sided false-alarm rate of `z` over `tests` simultaneous tests."""
    from statistics import NormalDist  # noqa: PLC0415 (statistics costs ~9 ms of analyze's start-up)

    normal = NormalDist()
    return normal.inv_cdf(1.0 - (1.0 - normal.cdf(z)) / tests)


def evaluate(det: SeriesDetector, now: float) -> SeriesReport:
    cfg = det.config.heap
    t_raw, y_raw = det._series()
    current = float(y_raw[-1])
    span = float(t_raw[-1] - t_raw[0])
    age = now - det.segment_start
    evidence = Evidence(window_seconds=span, points=len(t_raw), segment_age_seconds=age)
    if len(t_raw) < cfg.min_points or span < cfg.min_window_seconds:
        evidence.reason = "collecting profiles"
        det.status = Status.INSUFFICIENT_DATA
        return det._build(now, current, 0.0, 0.0, (), evidence)
    bucket = det._bucket(t_raw)
    t, y = bucket_minima(t_raw, y_raw, bucket)
    th = (t - t[0]) / HOUR
    total = theil_sen(th, y, intercept=False)
    recent_n = max(4, int(len(th) * cfg.plateau_fraction))
    total_recent = recent_slope(th, y, recent_n)
    floor = max(cfg.min_growth_bytes_per_hour, cfg.min_growth_ratio_per_hour * current)

    names, site_matrix = det._sites.ranked_matrix(det.config.screened_sites, OTHER_SITE)
    growers: list[tuple[str, Trend, float]] = []
    best_site_z = 0.0
    site_z = bonferroni_z(cfg.z_suspect, cfg.candidate_sites)  # several sites are tested at once
    stopped = np.zeros(len(y))  # sites that grew and stopped (a cache that filled): not a leak
    late_z, late = 0.0, ("", 0.0)  # the strongest grower that was absent at start-up (see below)
    stopped_sites = pending_sites = 0
    best_site = ""  # the site the verdict rests on: named first among the growers
    held_z = 0.0  # sites still growing (not stopped under the sampling model), new samples or not
    if names:
        matrix = site_matrix
        if bucket:
            matrix = np.vstack([bucket_minima(t_raw, row, bucket)[1] for row in matrix])
        screen = ols_slopes(th, matrix)
        order = [int(i) for i in np.argsort(-screen)[: cfg.candidate_sites] if screen[i] > 0]
        for i, trend in zip(order, theil_sen_rows(th, matrix[order], intercept=False), strict=True):
            growers.append((names[i], trend, float(matrix[i][-1])))
            # Growth that slows down over the whole window (a cache filling, a buffer flushed and
            # refilled to the same level) is no leak, even while its recent stretch still grows.
            slowing = trend.z >= cfg.z_resolve and _site_slowing(det, names[i], th, matrix[i])
            if trend.z >= cfg.z_suspect:
                # The recent fit only matters here: not fitted for the other candidates. A site that
                # grew long ago and has been flat since keeps a high Mann-Kendall z (every pair across
                # the step rises) while its Sen slope falls to 0 (most pairs are ties): compare the
                # recent slope with the floor as well, so such a step still counts as stopped.
                stop = _site_stopped(det, names[i], th, matrix[i], max(trend.slope, floor), recent_n)
                if stop.stopped:  # grew and stopped, even if its interval now reaches zero
                    stopped += matrix[i]
                    stopped_sites += 1
                elif trend.slope >= floor and trend.low > 0 and trend.z >= site_z:
                    # Growing and not stopped: holds a flag. Raising one after the warm-up also needs
                    # new samples since the warm-up ended: a cache that filled during it cannot be
                    # told from a leak by a few quiet profiles, but a leak soon passes its old peak.
                    held_z = max(held_z, trend.z)
                    # And growth confidently above the floor: a site that frees about as much as it
                    # adds (its samples come and go) can pass its old peak by chance.
                    # Not while its growth slows down significantly over the window either.
                    if not slowing and trend.low >= floor and _grew_after_warmup(det, names[i], t, matrix[i]):
                        if trend.z > best_site_z:
                            best_site_z, best_site = trend.z, names[i]
                    else:  # and its growth is no evidence for the total yet either
                        pending_sites += 1
                        stopped += matrix[i]
                    if age < cfg.warmup_seconds and trend.z > late_z:
                        absent = _absent_at_start(det, t, matrix[i], floor)
                        if absent is not None:
                            late_z, late = trend.z, (names[i], absent)
                elif slowing:  # growing too little to hold a flag, and slowing down: not in the total
                    stopped += matrix[i]
                    stopped_sites += 1
            elif slowing:  # a site below the suspect level can still carry the total's trend
                stopped += matrix[i]
                stopped_sites += 1
    if stopped.any():
        # Judge the total without the growth of sites that have plateaued, so a filled cache
        # cannot keep the whole heap flagged through the noise of the rest.
        y = y - stopped
        total = theil_sen(th, y, intercept=False)
        total_recent = recent_slope(th, y, recent_n)
        evidence.plateaued_sites_excluded = True
        evidence.plateaued_sites = stopped_sites
    total_ongoing = _total_ongoing(det, th, y, total, recent_n)
    total_ok = total.low >= floor and total_ongoing  # confidently above the floor, not just above 0
    total_z = total.z if total_ok else 0.0
    evidence.total_z = round(total.z, 3)
    evidence.total_slope_low_per_hour = total.low
    evidence.total_slope_high_per_hour = total.high
    evidence.recent_slope_per_hour = total_recent
    evidence.growth_floor_per_hour = floor
    evidence.best_site_z = round(best_site_z, 3)
    evidence.plateaued = not total_ongoing
    evidence.bucket_seconds = bucket
    if age < cfg.warmup_seconds:
        # Hold a flag raised here while some site still grows significantly: a sampled leak can
        # pause for a few profiles (no new sample) and pass for stopped meanwhile.
        held = max((tr.z for _, tr, _ in growers if tr.slope >= floor and tr.low > 0), default=0.0)
        keep = det.status.flagged and max(late_z, held) >= cfg.z_resolve
        if late_z < site_z and not keep:
            evidence.reason = f"warm-up: process segment is {age:.0f} s old (< {cfg.warmup_seconds:.0f} s)"
            det.status = Status.INSUFFICIENT_DATA
            return det._build(now, current, total.slope, total.slope, det._growers(growers), evidence)
        # Growth that began after start-up is not warm-up: judged on that site alone, and only
        # suspected (the total still carries whatever start-up growth there was, so no confirmation).
        if late[0]:  # a site's name is its function
            evidence.reason = f"new retention during warm-up: {late[0]} was absent for {late[1]:.0f} s"
            evidence.absent_at_start_seconds = late[1]
        else:
            evidence.reason = "flagged during warm-up; the evidence is still above z_resolve"
        det._transition(late_z >= site_z, keep, False, now)
        strength = max(late_z, held)
        named = det._growers(growers, first=late[0])
        return det._build(now, current, total.slope, total.slope, named, evidence, strength)
    if pending_sites:
        evidence.sites_without_new_samples_since_warmup = pending_sites
    strength = max(total_z, best_site_z)
    confirm = total_z >= cfg.z_confirm and best_site_z >= cfg.z_suspect and det._flag_age(now) >= cfg.confirm_seconds
    det._transition(strength >= cfg.z_suspect, max(strength, held_z) >= cfg.z_resolve, confirm, now)
    if det.status.flagged:
        strength = max(strength, held_z)
    named = det._growers(growers, first=best_site)
    return det._build(now, current, total.slope, total.slope, named, evidence, strength)


def _grew_after_warmup(det: SeriesDetector, name: str, t: FloatArray, row: FloatArray) -> bool:
    """Has the site gained `heap.min_new_samples` samples past its earlier peak since the warm-up ended?
    (Every point of the window when the warm-up ended before it.)"""
    cfg = det.config.heap
    since = int(np.searchsorted(t, det.segment_start + cfg.warmup_seconds))
    if since == 0:
        since = 1  # the first point has nothing before it to pass
    quantum = sample_quantum(det.sizes.get(name, 0.0), det.sample_period)
    gained = new_high_quanta(row, since, quantum)
    # Whole samples: a sampled value moves by about one quantum per sample, not exactly one.
    return round(gained) >= cfg.min_new_samples if quantum > 0 else gained > 0


def _site_stopped(
    det: SeriesDetector, name: str, th: FloatArray, row: FloatArray, rate: float, recent_n: int
) -> StopTest:
    """Has this site stopped growing at `rate` (per hour), given how its profile samples it?"""
    size = det.sizes.get(name, 0.0)
    quantum = sample_quantum(size, det.sample_period)
    cfg = det.config.heap
    exact = recorded_exactly(size, det.sample_period)
    return growth_stopped(th, row, rate, quantum, recent_n, cfg.stopped_p, cfg.plateau_ratio, exact)


def _site_slowing(det: SeriesDetector, name: str, th: FloatArray, row: FloatArray) -> bool:
    """Does this site's growth slow down over the window as confidently as a leak must grow to be
    suspected, and as much as a fill does? (Laplace test of its new-high samples' times, z <= -`heap.z_suspect`,
    and the fitted intensity at the window's end at most `trend.SLOWING_RATIO` of the start's.)"""
    size = det.sizes.get(name, 0.0)
    quantum = sample_quantum(size, det.sample_period)
    exact = recorded_exactly(size, det.sample_period)
    return deceleration(th, row, quantum, exact).slowing(det.config.heap.z_suspect)


def _total_ongoing(det: SeriesDetector, th: FloatArray, y: FloatArray, total: Trend, recent_n: int) -> bool:
    """Is the total heap still growing? Stopped only when the recent slope is significantly (its 95%
    interval) below `plateau_ratio` x the window's: the total of a heap without a forced GC swings by
    megabytes between profiles, so a flat-looking recent fit alone is no evidence."""
    recent = theil_sen(th[-recent_n:], y[-recent_n:], z=False, intercept=False)
    return recent.high >= det.config.heap.plateau_ratio * total.slope


def _absent_at_start(det: SeriesDetector, t: FloatArray, row: FloatArray, floor: float) -> float | None:
    """Seconds a growing site went unseen after the segment began, when that absence shows it did
    not grow from start-up; else None.

    Warm-up excuses growth from start-up (a cache filling), and a filling cache can look exactly like a
    leak until it stops. A site with no samples in the first profiles that then grows steadily is
    different: had it grown at its current rate from the start, the sampler (Go: one sample per
    512 KiB allocated, on average) would have caught it with probability 1 - exp(-rate x time absent
    / 512 KiB). `heap.late_onset_bytes` (rate x time absent) sets that bar.
    """
    need = det.config.heap.late_onset_bytes
    seen = np.flatnonzero(row > 0)
    if need <= 0 or len(seen) == 0:
        return None
    first = int(seen[0])
    # At least 3 profiles without it, and enough after it appeared for a slope (the trend's z
    # already covers significance over the whole window, zeros included).
    if first < det.config.heap.late_onset_absent_profiles or len(row) - first < 4:
        return None
    absent = float(t[first - 1] - det.segment_start)
    rate = theil_sen(t[first:] / HOUR, row[first:], interval=False, z=False, intercept=False).slope
    if rate < floor or rate * absent / HOUR < need:
        return None
    return absent
