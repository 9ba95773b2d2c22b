"""Detector settings (the `processor` section of the config file).

Defaults are sized for real push intervals of 15 s to 5 min. Times are seconds, rates per hour,
z thresholds are Mann-Kendall z scores (2.33 ~ one-sided p 0.01, 3.09 ~ p 0.001).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Literal


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
        plateau_ratio: the total heap counts as stopped when its recent slope is significantly below
            this fraction of the whole-window slope (and unsampled sites when their recent growth is).
        stopped_p: a sampled allocation site counts as stopped (a cache that filled) only when so little
            growth in its recent stretch, or so long without a new sample, has less than this
            probability at its long-run rate given the profile's sampling period (Poisson).
        min_new_samples: after the warm-up, a site raises a flag only once it has passed its earlier peak
            by this many samples (sampling periods) since the warm-up ended: a cache that filled during
            the warm-up looks like a leak for as long as sampling can leave a leak unseen. A flag raised
            is held while the site grows and has not stopped.
        late_onset_bytes: a site with no samples in the first profiles of a segment that then grows is
            judged during the warm-up too (suspected, not confirmed) when its growth rate x the time it
            was absent reaches this many bytes: growth from start-up at that rate would almost surely
            have been sampled (Go samples once per 512 KiB on average; 1.5 MiB misses it 5% of the
            time). 0: the warm-up holds every site.
        memory_limit_bytes: limit for time-to-limit when neither the profile labels nor the resource
            carry one (null: unknown).
        candidate_sites: sites (the fastest growing by least squares) that get the robust fit and the
            site tests after each profile; a site's z threshold is Bonferroni-corrected for this many tests.
        late_onset_absent_profiles: profiles a site must be absent from at the start of a segment before
            the new-retention rule (`late_onset_bytes`) can judge it in the warm-up.
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
    stopped_p: float = 0.001
    min_new_samples: float = 2.0
    late_onset_bytes: float = 1.5 * 1024 * 1024
    memory_limit_bytes: int | None = None
    candidate_sites: int = 8
    late_onset_absent_profiles: int = 3

    def validate(self) -> list[str]:
        errors = _bounds(
            self,
            {"min_points": 4, "candidate_sites": 1, "late_onset_absent_profiles": 1},
            positive=("memory_limit_bytes",),
            skip=("plateau_fraction", "stopped_p"),
        )
        if not 0 < self.plateau_fraction < 1:
            errors.append(f"plateau_fraction: must be between 0 and 1, got {self.plateau_fraction}")
        if not 0 < self.stopped_p < 1:
            errors.append(f"stopped_p: must be between 0 and 1, got {self.stopped_p}")
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
        candidate_groups: groups (the fastest growing by least squares) that get the robust fit.
        recent_fraction: the most recent fraction of the window that tells whether a group still grows.
        ongoing_ratio: a group still grows when its slope over that recent part is at least this fraction
            of its whole-window slope.
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
    candidate_groups: int = 8
    recent_fraction: float = 0.3
    ongoing_ratio: float = 0.25

    def validate(self) -> list[str]:
        errors = _bounds(self, {"min_points": 4, "candidate_groups": 1}, skip=("recent_fraction",))
        if not 0 < self.recent_fraction < 1:
            errors.append(f"recent_fraction: must be between 0 and 1, got {self.recent_fraction}")
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
        high_delay_rate: a sustained delay rate at or above this is flagged even without a trend (and
            stays flagged while the rate is above half of it).
        recent_fraction: the most recent fraction of the window (at least 2 profiles) whose delay rate is
            compared with the quietest stretch of the same length.
        rise_ratio: contention is flagged when the recent rate is at least this many times the baseline
            (plus half of `min_delay_rate`) and trends up.
        keep_ratio: flagged contention stays flagged while the recent rate is at least this many times
            the baseline.
    """

    warmup_seconds: float = 300.0
    min_points: int = 6
    z_suspect: float = 2.33
    z_resolve: float = 1.28
    confirm_seconds: float = 600.0
    min_delay_rate: float = 0.001
    high_delay_rate: float = 0.1
    recent_fraction: float = 0.2
    rise_ratio: float = 2.0
    keep_ratio: float = 1.5

    def validate(self) -> list[str]:
        errors = _bounds(self, {"min_points": 4}, skip=("recent_fraction",))
        if not 0 < self.recent_fraction < 1:
            errors.append(f"recent_fraction: must be between 0 and 1, got {self.recent_fraction}")
        failed = _failed(errors)
        if failed.isdisjoint({"min_delay_rate", "high_delay_rate"}) and self.high_delay_rate < self.min_delay_rate:
            errors.append(
                f"high_delay_rate: must be >= min_delay_rate ({self.min_delay_rate}), got {self.high_delay_rate}"
            )
        return errors + _z_order(self, failed)


@dataclass(frozen=True, slots=True)
class FixConfig:
    """Fix verification: a flagged heap or goroutine series that restarts with another `service.version`.

    Attributes:
        compare_seconds: age since start at which the new version is compared with the flagged process
            (both from their start to this age); shorter when the flagged process lived less long. Until
            then the series stays flagged (the restart does not resolve it).
        min_compare_seconds: a flagged process that lived less than this is too short to compare with:
            its restart resolves the series as any restart does.
        fixed_ratio: the deploy fixed the leak when the new version's growth is at most this fraction of
            the old one's and its 95% interval lies below the old rate; otherwise it did not.
        max_sites: heap sites (the top growers the flag rested on) whose growth is compared.
    """

    compare_seconds: float = 1200.0
    min_compare_seconds: float = 600.0
    fixed_ratio: float = 0.25
    max_sites: int = 3

    def validate(self) -> list[str]:
        ages = ("compare_seconds", "min_compare_seconds")
        errors = _bounds(self, {"max_sites": 1}, positive=ages, skip=("fixed_ratio",))
        if not 0 <= self.fixed_ratio < 1:
            errors.append(f"fixed_ratio: must be >= 0 and < 1, got {self.fixed_ratio}")
        if not _failed(errors) & set(ages) and self.min_compare_seconds > self.compare_seconds:
            errors.append(
                f"min_compare_seconds: must be <= compare_seconds ({self.compare_seconds}), "
                f"got {self.min_compare_seconds}"
            )
        return errors


@dataclass(frozen=True, slots=True)
class ProcessorConfig:
    """History and detection settings shared by every series.

    Attributes:
        window_seconds: history kept per series and used for trends.
        max_points: hard bound on profiles kept per series (older ones are dropped).
        fine_points: the newest points of a history kept whole; older ones are merged 6 to 1 (mean time,
            total and values: see processor/history.py). At or above `max_points` (the default) nothing
            is merged. 60 keeps a full default heap series at about 57 KiB instead of about 126 KiB, but
            changes verdicts on series longer than 60 profiles (docs/detection.md, long-series study).
        bucket_seconds: when profiles arrive faster than this, trends use the minimum per bucket
            (GC sawtooth); 0 picks 60 s automatically when the median interval is below 45 s.
        max_gap_seconds: a pause longer than this between profiles starts a new segment, like a restart.
        resolve_seconds: a flagged series goes back to ok only after its evidence has been gone (below
            z_resolve, sampled sites judged stopped) for this long; a restart resolves at once.
        auto_bucket_below_seconds, auto_bucket_seconds: with `bucket_seconds: 0`, trends use minima per
            `auto_bucket_seconds` when the median interval between profiles is below
            `auto_bucket_below_seconds` (fast pushes see the GC sawtooth).
        screened_sites: sites (by peak value in the window) the least-squares screen looks at (heap) or
            trended for contention (mutex/block).
        top_growers: growers reported per series.
        evaluate_every_seconds: `serve` re-evaluates a series whose status is ok at most this often (wall
            clock); the profiles in between are appended only, and a series that gets no further profile
            is evaluated within this time anyway. A series warming up, flagged or awaiting a fix verdict,
            and every restart, is evaluated on every profile; 0 evaluates every profile. Profiles pushed
            less often than this are each evaluated, so detection is never later in profiles. `analyze`,
            the evaluation and a state restore always evaluate every profile.
        heap: heap detector settings.
        goroutine: goroutine detector settings.
        contention: mutex/block detector settings.
        fix: fix verification settings (a flagged series restarted with a new version).
    """

    window_seconds: float = 7200.0
    max_points: int = 240
    fine_points: int = 240
    bucket_seconds: float = 0.0
    max_gap_seconds: float = 1800.0
    resolve_seconds: float = 1200.0
    auto_bucket_below_seconds: float = 45.0
    auto_bucket_seconds: float = 60.0
    screened_sites: int = 64
    top_growers: int = 5
    evaluate_every_seconds: float = 5.0
    heap: HeapConfig = field(default_factory=HeapConfig)
    goroutine: GoroutineConfig = field(default_factory=GoroutineConfig)
    contention: ContentionConfig = field(default_factory=ContentionConfig)
    fix: FixConfig = field(default_factory=FixConfig)

    def validate(self) -> list[str]:
        errors = _bounds(
            self,
            {"window_seconds": 60, "max_points": 8, "fine_points": 8, "top_growers": 1, "screened_sites": 1},
            positive=("max_gap_seconds",),
        )
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
class RedisConfig:
    """The shared state of several replicas (`state.redis`, used when `state.backend` is "redis").

    Attributes:
        url: `redis://host:port/db` or `rediss://` (TLS). A password in the URL works but is never logged;
            prefer `password_env` or `password_file`.
        password_env: the environment variable holding the password ("" for none).
        password_file: a file holding the password (a mounted Secret), read at start-up when `password_env`
            is "" or names an unset variable.
        cluster: talk to a Redis Cluster (keys of one partition share a hash tag, so every script works).
        key_prefix: the prefix of every key this service writes.
        partitions: the partition count, fixed when the first replica creates the cluster's keys (a later
            different value is ignored with a warning: moving series between partitions is not supported).
        lease_ttl_seconds: how long a partition lease lives without renewal (renewed every third of it); a
            dead replica's partitions move within this plus one renewal period.
        replica_id: this replica's identity in leases; "" is `HOSTNAME` plus a random suffix.
        connect_timeout_seconds, timeout_seconds: for connecting and for each command.
        poll_interval_ms: the shortest gap between two reads of an owner's streams; idle, an owner waits in one
            blocking XREAD for all of them (on a Redis Cluster it polls every `poll_interval_ms` instead).
        max_stream_entries: uploads to a partition whose stream holds more unconsumed entries than this (no
            owner is keeping up, or none is alive) are refused with 503 until it drains: Redis memory stays
            bounded and nothing answered is dropped.
    """

    url: str = "redis://127.0.0.1:6379/0"
    password_env: str = ""
    password_file: str = ""
    cluster: bool = False
    key_prefix: str = "leakproc"
    partitions: int = 64
    lease_ttl_seconds: float = 10.0
    replica_id: str = ""
    connect_timeout_seconds: float = 2.0
    timeout_seconds: float = 2.0
    poll_interval_ms: int = 50
    max_stream_entries: int = 500_000

    def validate(self) -> list[str]:
        errors = _bounds(
            self,
            {"partitions": 1, "poll_interval_ms": 1, "max_stream_entries": 1},
            positive=("lease_ttl_seconds", "connect_timeout_seconds", "timeout_seconds"),
        )
        if not self.url.startswith(("redis://", "rediss://")):
            errors.append("url: must start with redis:// or rediss://")
        if self.partitions > 4096:
            errors.append(f"partitions: at most 4096, got {self.partitions}")
        return errors


@dataclass(frozen=True, slots=True)
class StateConfig:
    """Where series history lives between restarts (the `state` section).

    Attributes:
        dir: folder for the journal and checkpoint files; "" keeps state in memory only (lost on restart).
        snapshot_interval_seconds: how often changed series are checkpointed and the journal truncated
            (nothing is lost between checkpoints: every accepted profile is in the journal first).
        max_series: series tracked at once; when full, the least recently updated series of the tenant with
            the most series is evicted (counted), so a tenant never loses a series to a larger one.
        max_series_per_tenant: series one tenant may hold; its next new series evicts that tenant's own
            least recently updated series (counted), whatever the other tenants hold. A value above
            `max_series` means `max_series`. With `backend: redis` it is one count for the whole cluster,
            kept in Redis (`max_series` then bounds each partition's table): docs/scaling.md.
        fsync: when journal writes are forced to disk: "always" (before each upload is answered),
            "interval" (every `fsync_interval_ms`), "never" (left to the kernel). Any of them survives a
            crash of the process; they differ on a crash of the machine (docs/serve.md).
        fsync_interval_ms: the period of the "interval" policy.
        journal_max_bytes: a checkpoint is also written when the journal grows past this.
        backend: "file" (the journal in `dir`, one replica) or "redis" (several replicas share the series
            through Redis, one owner per partition: docs/scaling.md).
        redis: the Redis connection and partitioning (`backend: redis` only).
    """

    dir: str = "otel-leakproc-state"
    snapshot_interval_seconds: float = 300.0
    max_series: int = 10000
    max_series_per_tenant: int = 5000
    fsync: Literal["always", "interval", "never"] = "interval"
    fsync_interval_ms: int = 1000
    journal_max_bytes: int = 64 << 20
    backend: Literal["file", "redis"] = "file"
    redis: RedisConfig = field(default_factory=RedisConfig)

    def validate(self) -> list[str]:
        errors = _bounds(
            self,
            {"max_series": 1, "max_series_per_tenant": 1, "fsync_interval_ms": 1, "journal_max_bytes": 1},
            positive=("snapshot_interval_seconds",),
        )
        if self.fsync not in ("always", "interval", "never"):
            errors.append(f"fsync: must be one of always, interval, never; got {self.fsync!r}")
        if self.backend not in ("file", "redis"):
            errors.append(f"backend: must be file or redis; got {self.backend!r}")
        return errors
