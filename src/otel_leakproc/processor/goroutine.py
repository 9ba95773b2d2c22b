"""Goroutine leak evaluation: goroutine groups (wait state, blocking frame, user frame, creator) that keep
growing, and goroutines the Go runtime proved leaked (goroutineleak profiles, `(leaked)` in dumps)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from otel_leakproc.model import Evidence, Grower, ProfileKind, SeriesReport, Status
from otel_leakproc.processor.history import SiteMeta
from otel_leakproc.processor.trend import FLAT, Trend, ols_slopes, recent_slope, theil_sen, theil_sen_rows

if TYPE_CHECKING:
    from otel_leakproc.processor.detector import SeriesDetector

HOUR = 3600.0


def evaluate(det: SeriesDetector, now: float) -> SeriesReport:
    cfg = det.config.goroutine
    t_raw, y = det._series()
    current = float(y[-1])
    age = now - det.segment_start
    evidence = Evidence(points=len(t_raw), segment_age_seconds=age)
    last = det._last_groups
    leaked_now = sum(v[2] for v in last.values())
    if det.key.kind is ProfileKind.GOROUTINELEAK:
        leaked_now = max(leaked_now, int(current))
    th = (t_raw - t_raw[0]) / HOUR
    total = theil_sen(th, y, interval=False, intercept=False) if len(th) >= 3 else FLAT  # slope and z used
    keys = det._groups.live_sorted()
    growers: list[tuple[str, Trend, float]] = []
    best = 0.0
    oldest_wait = 0
    if keys and len(th) >= 3:
        matrix = det._matrix(keys, "groups")
        screen = ols_slopes(th, matrix)
        recent_n = max(4, int(len(th) * cfg.recent_fraction))
        order = [int(i) for i in np.argsort(-screen)[: cfg.candidate_groups] if screen[i] > 0]
        for i, trend in zip(order, theil_sen_rows(th, matrix[order], intercept=False), strict=True):
            growers.append((keys[i], trend, float(matrix[i][-1])))
            increase = float(matrix[i][-1] - matrix[i][0])
            # The recent fit (is the growth ongoing?) only when the rest of the test holds.
            grows = (
                trend.slope >= cfg.min_growth_per_hour
                and increase >= cfg.min_increase
                and recent_slope(th, matrix[i], recent_n) >= cfg.ongoing_ratio * trend.slope
            )
            if grows and trend.z > best:
                best = trend.z
                oldest_wait = last.get(keys[i], (0, 0, 0))[1]
    if leaked_now:  # the runtime proved these goroutines can never wake: nothing to wait for
        leaked_groups = sorted(((k, v[2]) for k, v in last.items() if v[2] > 0), key=lambda kv: -kv[1])
        known = {name for name, _, _ in growers}
        for k, n in leaked_groups:
            if k not in known:
                growers.append((k, Trend(0.0, 0.0, 0.0, 0.0, 0.0, 0), float(n)))
        evidence.leaked_goroutines = leaked_now
    evidence.total_z = round(total.z, 3)
    evidence.best_group_z = round(best, 3)
    if oldest_wait:
        evidence.oldest_wait_minutes = oldest_wait
    if leaked_now:
        det._transition(True, True, True, now)
    elif det.key.kind is ProfileKind.GOROUTINELEAK:
        det._transition(False, False, False, now)
    elif len(th) < cfg.min_points or age < cfg.warmup_seconds:
        evidence.reason = "warm-up" if len(th) >= cfg.min_points else "collecting profiles"
        det.status = Status.INSUFFICIENT_DATA
    else:
        confirm = best >= cfg.z_confirm and (
            det._flag_age(now) >= cfg.confirm_seconds or oldest_wait >= cfg.confirm_wait_minutes
        )
        det._transition(best >= cfg.z_suspect, best >= cfg.z_resolve, confirm, now)
    leaked_keys = frozenset(k for k, v in last.items() if v[2] > 0)
    ranked = det._growers(growers, leaked_keys)
    if leaked_now:  # leaked groups first: they are the proof
        ranked = tuple(sorted(ranked, key=lambda g: 0 if _is_leaked(det, g, last) else 1))
    return det._build(now, current, total.slope, total.slope, ranked, evidence, max(best, 5.0 if leaked_now else 0))


def _is_leaked(det: SeriesDetector, grower: Grower, last: dict[str, tuple[int, int, int]]) -> bool:
    return any(v[2] > 0 and det.meta.get(k, SiteMeta("", "", 0)).function == grower.function for k, v in last.items())
