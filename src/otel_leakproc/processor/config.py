"""Detector settings (the `processor` section of the config file).

Defaults are sized for real push intervals of 15 s to 5 min. Times are seconds, rates per hour,
z thresholds are Mann-Kendall z scores (2.33 ~ one-sided p 0.01, 3.09 ~ p 0.001).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields


def _bounds(
    obj: object,
    at_least: Mapping[str, float] | None = None,
    positive: tuple[str, ...] = (),
    skip: tuple[str, ...] = (),
) -> list[str]:
    """One message per numeric field that is out of range (never two for the same field).

    A field named in `at_least` must be >= its bound, one in `positive` must be > 0, any other numeric field
    must be >= 0. Fields in `skip` (checked by the caller) and None values are left alone.
    """
    minimums = at_least or {}
    errors = []
    for f in fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if f.name in skip or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if f.name in minimums:
            if value < minimums[f.name]:
                errors.append(f"{f.name}: must be >= {minimums[f.name]}, got {value}")
        elif f.name in positive:
            if value <= 0:
                errors.append(f"{f.name}: must be > 0, got {value}")
        elif value < 0:
            errors.append(f"{f.name}: must be >= 0, got {value}")
    return errors


def _failed(errors: list[str]) -> set[str]:
    """Fields that already have a message, so that relations between fields do not report them twice."""
    return {error.split(":", 1)[0] for error in errors}


def _z_order(obj: HeapConfig | GoroutineConfig | ContentionConfig, failed: set[str]) -> list[str]:
    """Hysteresis needs z_resolve <= z_suspect; confirming needs at least the evidence of suspecting."""
    errors: list[str] = []
    if "z_suspect" in failed:
        return errors
    z_confirm = getattr(obj, "z_confirm", None)
    if z_confirm is not None and "z_confirm" not in failed and z_confirm < obj.z_suspect:
        errors.append(f"z_confirm: must be >= z_suspect ({obj.z_suspect}), got {z_confirm}")
    if "z_resolve" not in failed and obj.z_resolve > obj.z_suspect:
        errors.append(f"z_resolve: must be <= z_suspect ({obj.z_suspect}), got {obj.z_resolve}")
    return errors


@dataclass(frozen=True, slots=True)
class HeapConfig:
    """Heap (in-use bytes) leak detection.

    Attributes:
        warmup_seconds: growth during the first part of a process's life is expected (caches fill,
            pools grow); the heap is flagged only when growth continues past it. The process start is
            the first profile of a series or the restart that began the current segment.
        min_points: profiles needed in the segment before any verdict.
        min_window_seconds: time span needed before any verdict.
        z_suspect: Mann-Kendall z needed to suspect a leak (total heap or an allocation site).
        z_confirm: z needed (on the total heap) to confirm a leak that has been suspected long enough.
        z_resolve: a flagged series resolves when its evidence drops below this z (hysteresis).
        confirm_seconds: how long a leak must stay suspected before it can be confirmed.
        min_growth_bytes_per_hour: absolute growth floor.
        min_growth_ratio_per_hour: relative growth floor (fraction of the current heap per hour).
        plateau_fraction: the most recent fraction of the window used by the plateau check.
        plateau_ratio: growth counts as ongoing when the recent slope is at least this fraction of
            the whole-window slope; a cache that filled and stopped falls below it.
        late_onset_bytes: a site with no samples in the first profiles of a segment that then grows is
            judged during the warm-up too (suspected, not confirmed) when its growth rate x the time it
            was absent reaches this many bytes: growth from start-up at that rate would almost surely
            have been sampled (Go samples once per 512 KiB on average; 1.5 MiB misses it 5% of the
            time). 0: the warm-up holds every site.
        memory_limit_bytes: limit for time-to-limit when neither the profile labels nor the resource
            carry one (null: unknown).
    """

    warmup_seconds: float = 1800.0
    min_points: int = 10
    min_window_seconds: float = 600.0
    z_suspect: float = 2.33
    z_confirm: float = 3.09
    z_resolve: float = 1.28
    confirm_seconds: float = 900.0
    min_growth_bytes_per_hour: float = 1024.0 * 1024.0
    min_growth_ratio_per_hour: float = 0.01
    plateau_fraction: float = 0.3
    plateau_ratio: float = 0.25
    late_onset_bytes: float = 1.5 * 1024 * 1024
    memory_limit_bytes: int | None = None

    def validate(self) -> list[str]:
        errors = _bounds(self, {"min_points": 4}, positive=("memory_limit_bytes",), skip=("plateau_fraction",))
        if not 0 < self.plateau_fraction < 1:
            errors.append(f"plateau_fraction: must be between 0 and 1, got {self.plateau_fraction}")
        return errors + _z_order(self, _failed(errors))


@dataclass(frozen=True, slots=True)
class GoroutineConfig:
    """Goroutine leak detection (goroutine groups that keep growing; goroutineleak profiles).

    Attributes:
        warmup_seconds: growth right after a process starts (pools being filled) is not flagged.
        min_points: profiles needed before a verdict.
        z_suspect: Mann-Kendall z a group's count needs to be suspected.
        z_confirm: z needed to confirm after `confirm_seconds` of suspicion.
        z_resolve: hysteresis threshold for resolving.
        confirm_seconds: how long a group must stay suspected before confirmation.
        min_growth_per_hour: a group must grow at least this many goroutines per hour.
        min_increase: and by at least this many goroutines over the window.
        confirm_wait_minutes: a growing group whose oldest goroutines have waited this long
            (debug=2 dumps) is confirmed without waiting for `confirm_seconds`.
    """

    warmup_seconds: float = 300.0
    min_points: int = 6
    z_suspect: float = 2.33
    z_confirm: float = 3.09
    z_resolve: float = 1.28
    confirm_seconds: float = 600.0
    min_growth_per_hour: float = 12.0
    min_increase: int = 5
    confirm_wait_minutes: int = 10

    def validate(self) -> list[str]:
        errors = _bounds(self, {"min_points": 4})
        return errors + _z_order(self, _failed(errors))


@dataclass(frozen=True, slots=True)
class ContentionConfig:
    """Lock contention (mutex and block profiles, cumulative; trended as delay per second).

    Attributes:
        warmup_seconds: contention right after start is not flagged.
        min_points: profiles needed before a verdict (rates need two profiles each).
        z_suspect: Mann-Kendall z of the lock delay rate needed to suspect growing contention.
        z_resolve: hysteresis threshold for resolving.
        confirm_seconds: how long contention must stay flagged before it is confirmed.
        min_delay_rate: seconds of lock delay per second below which nothing is flagged.
        high_delay_rate: a sustained delay rate at or above this is flagged even without a trend.
    """

    warmup_seconds: float = 300.0
    min_points: int = 6
    z_suspect: float = 2.33
    z_resolve: float = 1.28
    confirm_seconds: float = 600.0
    min_delay_rate: float = 0.001
    high_delay_rate: float = 0.1

    def validate(self) -> list[str]:
        errors = _bounds(self, {"min_points": 4})
        failed = _failed(errors)
        if failed.isdisjoint({"min_delay_rate", "high_delay_rate"}) and self.high_delay_rate < self.min_delay_rate:
            errors.append(
                f"high_delay_rate: must be >= min_delay_rate ({self.min_delay_rate}), got {self.high_delay_rate}"
            )
        return errors + _z_order(self, failed)


@dataclass(frozen=True, slots=True)
class ProcessorConfig:
    """History and detection settings shared by every series.

    Attributes:
        window_seconds: history kept per series and used for trends.
        max_points: hard bound on profiles kept per series (older ones are dropped).
        bucket_seconds: when profiles arrive faster than this, trends use the minimum per bucket
            (GC sawtooth); 0 picks 60 s automatically when the median interval is below 45 s.
        max_gap_seconds: a pause longer than this between profiles starts a new segment, like a restart.
        top_growers: growers reported per series.
        heap: heap detector settings.
        goroutine: goroutine detector settings.
        contention: mutex/block detector settings.
    """

    window_seconds: float = 7200.0
    max_points: int = 240
    bucket_seconds: float = 0.0
    max_gap_seconds: float = 1800.0
    top_growers: int = 5
    heap: HeapConfig = field(default_factory=HeapConfig)
    goroutine: GoroutineConfig = field(default_factory=GoroutineConfig)
    contention: ContentionConfig = field(default_factory=ContentionConfig)

    def validate(self) -> list[str]:
        errors = _bounds(self, {"window_seconds": 60, "max_points": 8, "top_growers": 1}, positive=("max_gap_seconds",))
        failed = _failed(errors)
        # Settings a section could never satisfy with this history: its detector would never reach a verdict.
        for name, section in (("heap", self.heap), ("goroutine", self.goroutine), ("contention", self.contention)):
            if "max_points" not in failed and section.min_points > self.max_points:
                errors.append(f"{name}.min_points: must be <= max_points ({self.max_points}), got {section.min_points}")
        if "window_seconds" not in failed and self.heap.min_window_seconds > self.window_seconds:
            errors.append(
                f"heap.min_window_seconds: must be <= window_seconds ({self.window_seconds}), "
                f"got {self.heap.min_window_seconds}"
            )
        return errors


@dataclass(frozen=True, slots=True)
class StateConfig:
    """Where series history lives between restarts (the `state` section).

    Attributes:
        dir: folder for the snapshot file; "" keeps state in memory only (lost on restart).
        snapshot_interval_seconds: how often the snapshot is rewritten; a SIGKILL loses at most this much.
        max_series: series tracked at once; when full, the least recently updated series of the tenant with
            the most series is evicted (counted), so a tenant never loses a series to a larger one.
        max_series_per_tenant: series one tenant may hold; its next new series evicts that tenant's own
            least recently updated series (counted), whatever the other tenants hold. A value above
            `max_series` means `max_series`.
    """

    dir: str = "otel-leakproc-state"
    snapshot_interval_seconds: float = 30.0
    max_series: int = 10000
    max_series_per_tenant: int = 5000

    def validate(self) -> list[str]:
        return _bounds(self, {"max_series": 1, "max_series_per_tenant": 1}, positive=("snapshot_interval_seconds",))
