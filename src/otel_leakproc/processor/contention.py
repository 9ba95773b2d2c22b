"""Lock contention evaluation (mutex and block profiles, cumulative): the lock delay rate now against the
quietest stretch of the window, from differences of cumulative delay over several profiles."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from otel_leakproc.model import OTHER_SITE, Evidence, Grower, ProfileKind, SeriesReport, Status
from otel_leakproc.processor.history import Grid, SiteMeta
from otel_leakproc.processor.trend import FLAT, FloatArray, theil_sen, theil_sen_rows
from otel_leakproc.receiver.decode.frames import is_runtime_frame, is_system_frame

if TYPE_CHECKING:
    from otel_leakproc.processor.detector import SeriesDetector

NANOS = 1_000_000_000
HOUR = 3600.0
# Block-profile leaves that are lock waits; channel, select and WaitGroup waits are not contention.
_LOCK_LEAVES = ("Lock", "RLock", "semacquire", "Semacquire", "lockSlow", "rLock")
_NON_LOCK_LEAVES = ("WaitGroup", "Cond", "chanrecv", "chansend", "selectgo", "Unlock")


def is_lock_wait(leaf: str) -> bool:
    """True when a block-profile stack ends in a lock acquisition (not a channel/select/WaitGroup wait)."""
    if any(marker in leaf for marker in _NON_LOCK_LEAVES):
        return False
    return any(marker in leaf for marker in _LOCK_LEAVES)


def evaluate(det: SeriesDetector, now: float) -> SeriesReport:
    """Mutex/block profiles are cumulative: compare the delay rate now with the window's baseline.

    Rates come from differences of cumulative delay over several profiles, not single intervals,
    because sampled profiles record delay in chunks (many intervals show nothing, then a lump).
    """
    cfg = det.config.contention
    n = len(det.points)
    age = now - det.segment_start
    evidence = Evidence(points=n, segment_age_seconds=age)
    if n < 3:
        evidence.reason = "collecting profiles"
        det.status = Status.INSUFFICIENT_DATA
        return det._build(now, 0.0, 0.0, 0.0, (), evidence)
    lock_only = det.key.kind is ProfileKind.BLOCK
    names = lock_sites(det)
    t = det.points.times()
    cumulative = cumulative_delay(det, names)
    total = cumulative.sum(axis=0)
    k = max(2, int(n * cfg.recent_fraction))
    recent_site = (cumulative[:, -1] - cumulative[:, -1 - k]) / (t[-1] - t[-1 - k])
    # Baseline: the quietest k-profile stretch of the window, so contention that started inside the
    # window stays "grown" until the window has moved past its start.
    span_rates = (total[k:] - total[:-k]) / (t[k:] - t[:-k])
    quiet = int(np.argmin(span_rates))
    recent = float(recent_site.sum())
    baseline = float(span_rates[quiet])
    interval = np.diff(total) / np.diff(t)
    th = (t[1:] - t[1]) / HOUR
    trend = theil_sen(th, interval, intercept=False) if len(th) >= 3 else FLAT
    # Growth: how fast the delay rate itself rises (Sen slope of the rates between profiles, ns/s per hour),
    # about 0 for steady contention however heavy. (Not the recent rate's excess over the quietest stretch
    # per half window: that is never below 0 and, over a short window, turned a flat 9 us/s into 16 ms/s/h.)
    growth = trend.slope if np.isfinite(trend.slope) else 0.0
    evidence.delay_rate_seconds_per_second = recent / NANOS
    evidence.baseline_delay_rate_seconds_per_second = baseline / NANOS
    evidence.trend_z = round(trend.z, 3)
    evidence.lock_sites_only = lock_only
    floor = cfg.min_delay_rate * NANOS
    heavy_rate = cfg.high_delay_rate * NANOS
    if n < cfg.min_points or age < cfg.warmup_seconds:
        evidence.reason = "warm-up" if n >= cfg.min_points else "collecting profiles"
        det.status = Status.INSUFFICIENT_DATA
    else:
        rising = recent >= floor and recent >= cfg.rise_ratio * baseline + floor / 2 and trend.z >= cfg.z_resolve
        heavy = recent >= heavy_rate
        keep = recent >= floor and (recent >= cfg.keep_ratio * baseline or recent >= heavy_rate / 2)
        det._transition(rising or heavy, keep, det._flag_age(now) >= cfg.confirm_seconds, now)
    top = [int(i) for i in np.argsort(-recent_site)[: det.config.top_growers] if recent_site[i] > 0]
    site_slopes = [0.0] * len(top)
    if top and len(th) >= 3:
        site_rates = np.diff(cumulative[top], axis=1) / np.diff(t)
        fits = theil_sen_rows(th, site_rates, interval=False, z=False, intercept=False)
        site_slopes = [fit.slope if np.isfinite(fit.slope) else 0.0 for fit in fits]
    growers = [(names[i], float(recent_site[i]), float(slope)) for i, slope in zip(top, site_slopes, strict=True)]
    current = float(interval[-1])
    return det._build(now, current, growth, growth, _growers(det, growers, recent), evidence, trend.z)


def is_runtime_lock(function: str, leaf: str = "") -> bool:
    """A site of the Go runtime's own locks: a stack inside the runtime only, named after a runtime frame
    (`runtime.unlock`, `runtime._LostContendedRuntimeLock`) or a runtime closure (`_.goready.func1`), or a
    runtime lock (`leaf` in the runtime) taken under standard library frames only (`syscall.Syscall`
    entering the scheduler). The scheduler and GC contend on them on a busy machine; there is nothing in the
    service to change. (A runtime lock under user code, a channel's, is named after the user frame and counts.)"""
    if is_runtime_frame(function) or function.startswith("_."):
        return True
    return bool(leaf) and is_runtime_frame(leaf) and is_system_frame(function)


def counts_as_contention(det: SeriesDetector, name: str) -> bool:
    """Whether a site's delay counts: not the runtime's own locks (`is_runtime_lock`); for block profiles
    only waits on a lock (not channels, select, WaitGroup)."""
    meta = det.meta.get(name) or SiteMeta(name, "", 0)
    if is_runtime_lock(meta.function or name, meta.leaf):
        return False
    return det.key.kind is not ProfileKind.BLOCK or is_lock_wait(meta.leaf)


def lock_sites(det: SeriesDetector) -> list[str]:
    """Sites trended for contention: the top sites whose delay counts (`counts_as_contention`)."""
    return [n for n in det._site_names() if counts_as_contention(det, n)]


def segment_delay(det: SeriesDetector, grids: list[Grid]) -> tuple[list[str], FloatArray]:
    """Lock sites of the current segment and their cumulative delay (rows) over the points of `grids` (the
    start of the segment that left the history, then the history), for a fix verification."""
    names = lock_sites(det)
    known = set(names)
    for grid in grids[:-1]:  # sites seen only at the start of the segment count too
        for name in grid.ranked(det.config.screened_sites, OTHER_SITE):
            if name not in known and counts_as_contention(det, name):
                names.append(name)
                known.add(name)
    columns = []
    for grid in grids:
        part = np.zeros((len(names), grid.n))
        rows = [i for i, name in enumerate(names) if name in grid.index]
        if rows:
            part[rows] = grid.matrix([names[i] for i in rows])
        columns.append(part)
    values = np.concatenate(columns, axis=1) if columns else np.zeros((len(names), 0))
    cumulative: FloatArray = np.maximum.accumulate(np.maximum(values, 0.0), axis=1) if values.size else values
    return names, cumulative


def cumulative_delay(det: SeriesDetector, names: list[str]) -> FloatArray:
    """Cumulative delay per site (rows) and point (columns); a site missing from top-K keeps its total."""
    if not names:
        return np.zeros((0, len(det.points)))
    cumulative: FloatArray = np.maximum.accumulate(np.maximum(det._matrix(names, "sites"), 0.0), axis=1)
    return cumulative


def _growers(det: SeriesDetector, sites: list[tuple[str, float, float]], total_rate: float) -> tuple[Grower, ...]:
    out = []
    for name, rate, growth in sites:
        meta = det.meta.get(name) or SiteMeta(name, "", 0)
        detail: dict[str, object] = {"delay_seconds_per_second": rate / NANOS}
        if meta.leaf and meta.leaf != meta.function:
            detail["leaf"] = meta.leaf
        out.append(
            Grower(
                function=meta.function,
                file=meta.file,
                line=meta.line,
                growth_per_hour=growth,
                share=min(1.0, rate / total_rate) if total_rate > 0 else 0.0,
                current=rate,
                detail=detail,
            )
        )
    return tuple(out)
