"""The internal data model shared by the pipeline stages.

Everything here is a frozen dataclass with explicit units. Decoders produce a `ProfileSummary`; the
processor (detectors) consumes summaries and produces `SeriesReport`s; exporters and the CLI render
reports. No stage downstream of the decoders ever sees protobuf or pprof objects.

Ownership rule: once a summary is handed to a consumer, nobody mutates it (they are frozen anyway).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from operator import attrgetter
from typing import Any

UNKNOWN_SERVICE = "unknown_service"
OTHER_SITE = "(other)"


class ProfileKind(StrEnum):
    """The profile kinds the detectors understand (the `kind` field of the analyze contract)."""

    HEAP = "heap"
    GOROUTINE = "goroutine"
    GOROUTINELEAK = "goroutineleak"
    MUTEX = "mutex"
    BLOCK = "block"


class Status(StrEnum):
    """Verdict of a series, ordered from least to most alarming."""

    INSUFFICIENT_DATA = "insufficient_data"
    OK = "ok"
    SUSPECTED = "suspected"
    CONFIRMED = "confirmed"

    @property
    def flagged(self) -> bool:
        return self in (Status.SUSPECTED, Status.CONFIRMED)


@dataclass(frozen=True, slots=True)
class SiteValue:
    """One attributed site of a profile: the frame a human would change, and its value.

    `value` is in the summary's primary unit (heap: in-use bytes; goroutine kinds: goroutines; mutex and
    block: cumulative delay in nanoseconds). `count` is the secondary measure (heap: in-use objects;
    mutex/block: contentions; goroutines: same as value).
    """

    function: str
    file: str
    line: int
    value: float
    count: float = 0.0
    leaf: str = ""  # innermost frame of the largest contributing stack, kept as evidence


@dataclass(frozen=True, slots=True)
class GoroutineGroup:
    """Goroutines that share wait state, blocking frame, user frame and creator (LeakProf-style)."""

    state: str  # wait reason, e.g. "chan receive"; "" when the source does not say
    blocking: str  # innermost frame outside package runtime, e.g. "sync.(*Mutex).Lock"
    function: str  # first frame a human would change
    file: str
    line: int
    creator: str  # function from the "created by" line; "" when unknown
    count: int
    max_wait_minutes: int = 0  # only debug=2 dumps carry wait minutes
    leaked: int = 0  # goroutines the Go runtime proved leaked ("(leaked)" in a goroutineleak dump)

    @property
    def key(self) -> str:
        """Stable identity of the group across profiles."""
        return f"{self.state}|{self.blocking}|{self.function}|{self.creator}"


@dataclass(frozen=True, slots=True)
class ProfileSummary:
    """The compact, bounded result of decoding one uploaded profile.

    Attributes:
        kind: which detector family consumes it.
        time_nanos: collection time, ns since the Unix epoch (the profile's own `time_nanos`, else the
            upload time or file modification time supplied by the caller).
        duration_nanos: profile duration when meaningful (delta profiles), else 0.
        total: primary total (heap in-use bytes, goroutines, cumulative delay ns).
        total_count: secondary total (heap in-use objects, contentions; goroutines again).
        cumulative: a value that only grows within one process (heap alloc_objects when cumulative,
            mutex/block contentions); a decrease means the process restarted. None when unknown.
        sites: top-K attributed sites by value, descending.
        other: the part of `total` not covered by `sites`.
        groups: goroutine groups (goroutine kinds only), by count descending, top-K.
        labels: profile-level labels that matter for series handling (e.g. `__session_id__`).
        source_format: "pprof", "goroutine-text" or "otlp".
        has_wait_times: True when the source carries goroutine wait minutes (debug=2 dumps).
        sample_period: the profile's sampling period in its own unit (pprof `period`; Go heap profiles:
            `runtime.MemProfileRate` bytes, one sample per that many bytes allocated on average), 0 when
            the profile was not sampled or does not say. The detectors judge whether a sampled series
            has stopped growing against it.
    """

    kind: ProfileKind
    time_nanos: int
    total: float
    duration_nanos: int = 0
    total_count: float = 0.0
    cumulative: float | None = None
    sites: tuple[SiteValue, ...] = ()
    other: float = 0.0
    groups: tuple[GoroutineGroup, ...] = ()
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    source_format: str = "pprof"
    has_wait_times: bool = False
    sample_period: float = 0.0


def _pickled_by_fields(cls: type[Any]) -> None:
    """Pickle instances of the frozen dataclass `cls` as its field values, in field order, rebuilt by
    `_rebuild_<name>` (defined here, at module level, so a pickle names it).

    Summaries cross from the decoder workers to `serve`'s event-loop process with every upload; the
    default of slotted dataclasses (a state dict per object, restored field by field) costs about three
    times as much on each side for a summary's 64 sites. The rebuild sets each slot through its
    descriptor instead of calling `__init__`, which goes through `object.__setattr__` per field (frozen):
    about 45 instead of 100 us for 64 sites. (None of these classes has a `__post_init__`.)"""
    names = [f.name for f in fields(cls)]
    values = attrgetter(*names)
    arguments = ", ".join(f"v{i}" for i in range(len(names)))
    sets = "".join(f"    s{i}(o, v{i})\n" for i in range(len(names)))
    name = f"_rebuild_{cls.__name__}"
    namespace: dict[str, Any] = {"__name__": __name__, "new": object.__new__, "cls": cls}
    namespace.update({f"s{i}": cls.__dict__[n].__set__ for i, n in enumerate(names)})
    exec(f"def {name}({arguments}):\n    o = new(cls)\n{sets}    return o\n", namespace)
    rebuild = namespace[name]
    globals()[name] = rebuild

    def reduce(self: Any) -> tuple[Any, tuple[Any, ...]]:
        return rebuild, values(self)

    cls.__reduce__ = reduce  # type: ignore[assignment]  # (typeshed: the no-argument method of object)


for _cls in (SiteValue, GoroutineGroup, ProfileSummary):
    _pickled_by_fields(_cls)


@dataclass(frozen=True, slots=True, order=True)
class SeriesKey:
    """Identity of a tracked series: tenant, service.name, service.instance.id, kind."""

    tenant: str
    service: str
    instance: str
    kind: ProfileKind


@dataclass(frozen=True, slots=True)
class Grower:
    """One entry of `top_growers`: a site or goroutine group and how fast it grows."""

    function: str
    file: str
    line: int
    growth_per_hour: float
    share: float  # this grower's share of the positive growth of the series, 0..1
    current: float
    state: str | None = None  # goroutine wait state
    detail: dict[str, object] = field(default_factory=dict, hash=False)


@dataclass(slots=True, eq=True)
class Evidence(Mapping[str, object]):
    """The detectors' numbers behind a verdict: the `evidence` object of analyze --json, typed.

    Each field is reported by some kinds only, or at some stages only; None means not reported. `to_dict()`
    is the JSON object: the fields in the order declared here with None left out, then `extra` (keys of an
    older saved state that this version does not know). It also reads like that dict (`evidence["total_z"]`).

    Attributes:
        window_seconds: heap: time spanned by the history used.
        points: profiles in the history.
        segment_age_seconds: time since the process segment began (start-up or last restart).
        leaked_goroutines: goroutines the Go runtime proved leaked in the newest profile.
        plateaued_sites_excluded, plateaued_sites: heap: sites judged stopped (or without new samples since
            the warm-up) were taken out of the total before it was trended, and how many.
        total_z: Mann-Kendall z of the total (heap bytes, goroutines).
        total_slope_low_per_hour, total_slope_high_per_hour: heap: the total's 95% Sen interval.
        recent_slope_per_hour: heap: the total's slope over the recent part of the window.
        growth_floor_per_hour: heap: the growth floor applied (absolute or relative, the larger).
        best_site_z: heap: z of the strongest growing site that holds a verdict.
        best_group_z: goroutines: z of the strongest growing group.
        oldest_wait_minutes: goroutines: wait of the strongest group's oldest goroutine (debug=2 dumps).
        plateaued: heap: the total has stopped growing (recent slope significantly below the window's).
        bucket_seconds: heap: bucket of the per-bucket minima the trends used (0: none).
        delay_rate_seconds_per_second, baseline_delay_rate_seconds_per_second: contention: lock delay rate
            now and in the quietest stretch of the window.
        trend_z: contention: z of the delay rate's trend.
        lock_sites_only: contention: only lock waits were counted (block profiles).
        reason: why there is no verdict yet, or why a flag was raised in the warm-up.
        absent_at_start_seconds: heap: how long a site raised during the warm-up was unseen after start-up.
        sites_without_new_samples_since_warmup: heap: growing sites that cannot raise a flag yet.
        memory_limit_bytes: heap: the limit time-to-limit is computed against.
        last_restart: why the process was last judged restarted.
        ignored_out_of_order: profiles ignored because they were not newer than the last one.
    """

    window_seconds: float | None = None
    points: int | None = None
    segment_age_seconds: float | None = None
    leaked_goroutines: int | None = None
    plateaued_sites_excluded: bool | None = None
    plateaued_sites: int | None = None
    total_z: float | None = None
    total_slope_low_per_hour: float | None = None
    total_slope_high_per_hour: float | None = None
    recent_slope_per_hour: float | None = None
    growth_floor_per_hour: float | None = None
    best_site_z: float | None = None
    best_group_z: float | None = None
    oldest_wait_minutes: int | None = None
    plateaued: bool | None = None
    bucket_seconds: float | None = None
    delay_rate_seconds_per_second: float | None = None
    baseline_delay_rate_seconds_per_second: float | None = None
    trend_z: float | None = None
    lock_sites_only: bool | None = None
    reason: str | None = None
    absent_at_start_seconds: float | None = None
    sites_without_new_samples_since_warmup: int | None = None
    memory_limit_bytes: int | None = None
    last_restart: str | None = None
    ignored_out_of_order: int | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for name in _EVIDENCE_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Evidence:
        """The inverse of `to_dict` (keys it does not know are kept in `extra`)."""
        evidence = cls()
        for key, value in data.items():
            if key in _EVIDENCE_FIELDS:
                setattr(evidence, key, value)
            else:
                evidence.extra[key] = value
        return evidence

    def __getitem__(self, key: str) -> object:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


_EVIDENCE_FIELDS = tuple(f.name for f in fields(Evidence) if f.name != "extra")


class FixVerdict(StrEnum):
    """Outcome of comparing a flagged series before and after a restart with a new version."""

    PENDING = "pending"  # the new version is younger than the comparison age
    FIXED = "fixed"
    NOT_FIXED = "not_fixed"


@dataclass(frozen=True, slots=True)
class FixSide:
    """One side (before or after the new version) of a fix verification, at the same age since start.

    Attributes:
        version: the `service.version` of that process.
        growth_per_hour: growth of what the verdict rested on (heap: the sites that were leaking;
            goroutine kinds: the goroutine count) over ages 0..`FixVerification.age_seconds`, Sen slope.
            Mutex and block: the Sen slope of the lock delay rate between profiles (ns/s per hour).
        growth_low_per_hour, growth_high_per_hour: its 95% interval.
        total_growth_per_hour: growth of the whole series (heap in use, goroutines; mutex and block: the
            profile's cumulative delay, i.e. its average delay rate) over the same ages.
        current: the whole series' value (heap bytes, goroutines) at that age; mutex and block: `delay_rate`.
        delay_rate: mutex and block only (else None): what the verdict rests on, ns of lock delay per second
            from start-up to that age (block profiles: lock waits only).
        delay_rate_low, delay_rate_high: its 95% interval (from the spread of the rates between profiles).
        top_site: mutex and block: the site with the most delay over those ages ("" when none had any).
        top_site_share: its share of that delay (0-1; None for heap and goroutine kinds).
    """

    version: str
    growth_per_hour: float
    growth_low_per_hour: float
    growth_high_per_hour: float
    total_growth_per_hour: float
    current: float
    delay_rate: float | None = None
    delay_rate_low: float | None = None
    delay_rate_high: float | None = None
    top_site: str = ""
    top_site_share: float | None = None


@dataclass(frozen=True, slots=True)
class FixVerification:
    """Did a deploy fix the leak? A flagged series restarted with another version, compared like with like.

    Attributes:
        verdict: pending until the new version is `age_seconds` old, then fixed or not_fixed.
        restart_time_nanos: the first profile of the new version.
        age_seconds: the age since start at which both processes are compared.
        sites: the heap sites whose growth is compared (those the flag rested on); empty for goroutines;
            mutex and block: the sites the flag named (the comparison is of all lock sites' delay).
        before: the flagged process, at `age_seconds`.
        after: the new version at the same age (None while pending).
        after_version: the new `service.version` (also in `after` once it is known).
    """

    verdict: FixVerdict
    restart_time_nanos: int
    age_seconds: float
    sites: tuple[str, ...]
    before: FixSide
    after: FixSide | None
    after_version: str


@dataclass(frozen=True, slots=True)
class SeriesReport:
    """The current verdict of a series (one object of the `analyze --json` contract)."""

    key: SeriesKey
    profiles: int
    first_time_nanos: int
    last_time_nanos: int
    status: Status
    first_flagged_at_nanos: int | None
    score: float
    current: float
    growth_per_hour: float
    time_to_limit_seconds: float | None
    restarts: int
    top_growers: tuple[Grower, ...]
    evidence: Evidence = field(default_factory=Evidence, hash=False)
    # Status changes of the series so far, oldest first: (profile time ns, from, to); bounded (newest kept).
    transitions: tuple[tuple[int, Status, Status], ...] = ()
    # The latest fix verification (a flagged series restarted with another version), if any.
    fix: FixVerification | None = None


# Event families by kind: heap leaks are `leak.*`, goroutine leaks `goroutine_leak.*`, lock contention
# `contention.*`; the suffix is the new status (`suspected`, `confirmed`) or `resolved`.
_EVENT_FAMILY = {
    ProfileKind.HEAP: "leak",
    ProfileKind.GOROUTINE: "goroutine_leak",
    ProfileKind.GOROUTINELEAK: "goroutine_leak",
    ProfileKind.MUTEX: "contention",
    ProfileKind.BLOCK: "contention",
}


def event_name(kind: ProfileKind, previous: Status, current: Status) -> str | None:
    """The event a status change emits, or None when the change is not an event.

    suspected/confirmed are emitted on entering them; resolved when a flagged series returns to ok or
    insufficient data (after a restart). ok <-> insufficient_data is not an event.
    """
    if previous == current:
        return None
    family = _EVENT_FAMILY[kind]
    if current.flagged:
        return f"{family}.{current.value}"
    if previous.flagged:
        return f"{family}.resolved"
    return None


def not_fixed_event_name(kind: ProfileKind) -> str:
    """The event of a deploy that did not fix a flagged series (`leak.not_fixed`); its status is unchanged."""
    return f"{_EVENT_FAMILY[kind]}.not_fixed"


@dataclass(frozen=True, slots=True)
class LeakEvent:
    """One status transition of a series, emitted once (never per profile).

    Attributes:
        name: `leak.suspected`, `leak.confirmed`, `leak.resolved`, `leak.not_fixed` (a new version that
            did not fix the leak), `goroutine_leak.*`, `contention.*`.
        time_nanos: the profile time at which the transition happened.
        previous: status before the transition.
        report: the series report right after it (the evidence: growth, window, top growers, time to limit).
        resource: attributes of the monitored service (`service.name`, `service.instance.id`,
            `service.namespace`, `k8s.*`) as received.
    """

    name: str
    time_nanos: int
    previous: Status
    report: SeriesReport
    resource: dict[str, str] = field(default_factory=dict, hash=False)
