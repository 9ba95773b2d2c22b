"""Pure mapping from series reports and events to metric points and log records (no I/O, no clock).

This module is the metric and event contract documented in `docs/metrics.md` and `docs/events.md`: the
OTLP exporter and the Prometheus exposition both render what it returns, so the two cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from otel_leakproc.model import Grower, LeakEvent, ProfileKind, SeriesReport, Status
from otel_leakproc.report import duration, fix_text, human, rfc3339

NANOS_PER_SECOND = 1e9

# Resource attributes taken from what the receivers saw; anything else is not copied onto the resource.
RESOURCE_KEYS = ("service.name", "service.instance.id", "service.namespace", "service.version")
RESOURCE_PREFIXES = ("k8s.", "container.", "host.", "deployment.environment")


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One instrument: OTel name, UCUM unit, description, and its name after OTLP-to-Prometheus translation."""

    name: str
    unit: str
    description: str
    prometheus: str


def _spec(name: str, unit: str, description: str, prometheus: str) -> MetricSpec:
    return MetricSpec(name, unit, description, prometheus)


HEAP_IN_USE = _spec(
    "leakproc.heap.in_use", "By", "Heap in use after the last GC (inuse_space of the latest profile).",
    "leakproc_heap_in_use_bytes",
)  # fmt: skip
HEAP_GROWTH = _spec(
    "leakproc.heap.growth_rate", "By/h", "Robust (Theil-Sen) slope of heap in use over the window.",
    "leakproc_heap_growth_rate_bytes_per_hour",
)  # fmt: skip
HEAP_GROWTH_LOW = _spec(
    "leakproc.heap.growth_rate.lower_bound", "By/h",
    "Lower end of the slope's confidence interval: growth that is certain, 0 or less when it is not.",
    "leakproc_heap_growth_rate_lower_bound_bytes_per_hour",
)  # fmt: skip
HEAP_TIME_TO_LIMIT = _spec(
    "leakproc.heap.time_to_limit", "s", "Time until heap in use reaches the memory limit at the current growth.",
    "leakproc_heap_time_to_limit_seconds",
)  # fmt: skip
HEAP_LIMIT = _spec(
    "leakproc.heap.limit", "By", "Memory limit used for time to limit (config, label or k8s resource).",
    "leakproc_heap_limit_bytes",
)  # fmt: skip
GOROUTINES = _spec(
    "leakproc.goroutine.count", "{goroutine}",
    "Goroutines in the latest profile (goroutineleak kind: goroutines proven leaked).",
    "leakproc_goroutine_count",
)  # fmt: skip
GOROUTINE_GROWTH = _spec(
    "leakproc.goroutine.growth_rate", "{goroutine}/h", "Robust slope of the goroutine count over the window.",
    "leakproc_goroutine_growth_rate_per_hour",
)  # fmt: skip
CONTENTION_RATE = _spec(
    "leakproc.contention.delay_rate", "s/s", "Seconds goroutines spent waiting on locks per second of wall time.",
    "leakproc_contention_delay_rate_seconds_per_second",
)  # fmt: skip
STATUS = _spec(
    "leakproc.series.status", "",
    "1 for the series' current status (attribute leakproc.status), 0 for the other statuses.",
    "leakproc_series_status",
)  # fmt: skip
SCORE = _spec("leakproc.series.score", "1", "Strength of the verdict, 0 to 1.", "leakproc_series_score_ratio")
TREND_Z = _spec(
    "leakproc.series.trend_z", "", "Mann-Kendall z of the series' trend (confidence that it keeps growing).",
    "leakproc_series_trend_z",
)  # fmt: skip
SITE_GROWTH = _spec(
    "leakproc.heap.site.growth_rate", "By/h", "Growth of one of the top-K allocation sites.",
    "leakproc_heap_site_growth_rate_bytes_per_hour",
)  # fmt: skip
SITE_IN_USE = _spec(
    "leakproc.heap.site.in_use", "By", "Heap in use attributed to one of the top-K allocation sites.",
    "leakproc_heap_site_in_use_bytes",
)  # fmt: skip
GROUP_GROWTH = _spec(
    "leakproc.goroutine.group.growth_rate", "{goroutine}/h", "Growth of one of the top-K goroutine groups.",
    "leakproc_goroutine_group_growth_rate_per_hour",
)  # fmt: skip
GROUP_COUNT = _spec(
    "leakproc.goroutine.group.count", "{goroutine}", "Goroutines in one of the top-K goroutine groups.",
    "leakproc_goroutine_group_count",
)  # fmt: skip
LOCK_RATE = _spec(
    "leakproc.contention.site.delay_rate", "s/s", "Lock delay rate of one of the top-K contended call sites.",
    "leakproc_contention_site_delay_rate_seconds_per_second",
)  # fmt: skip
GROWER_SHARE = _spec(
    "leakproc.grower.share", "1", "A top-K grower's share of the series' positive growth, 0 to 1.",
    "leakproc_grower_share_ratio",
)  # fmt: skip

ALL_METRICS: tuple[MetricSpec, ...] = (
    HEAP_IN_USE, HEAP_GROWTH, HEAP_GROWTH_LOW, HEAP_TIME_TO_LIMIT, HEAP_LIMIT,
    GOROUTINES, GOROUTINE_GROWTH, CONTENTION_RATE,
    STATUS, SCORE, TREND_Z,
    SITE_GROWTH, SITE_IN_USE, GROUP_GROWTH, GROUP_COUNT, LOCK_RATE, GROWER_SHARE,
)  # fmt: skip

_CONTENTION = (ProfileKind.MUTEX, ProfileKind.BLOCK)
_GOROUTINES = (ProfileKind.GOROUTINE, ProfileKind.GOROUTINELEAK)

Attributes = dict[str, str | int | float]


@dataclass(frozen=True, slots=True)
class Point:
    """One gauge data point of one metric."""

    metric: MetricSpec
    attributes: Attributes
    value: float


def monitored_resource(resource: Mapping[str, str], report: SeriesReport) -> dict[str, str]:
    """The resource of derived signals: the monitored service as received, never otel-leakproc itself.

    `service.name` and `service.instance.id` fall back to the series key, so every point can be joined to
    the service's own telemetry even when the receiver saw only a Pyroscope application name.
    """
    out = {
        key: str(value) for key, value in resource.items() if key in RESOURCE_KEYS or key.startswith(RESOURCE_PREFIXES)
    }
    out.setdefault("service.name", report.key.service)
    if report.key.instance:
        out.setdefault("service.instance.id", report.key.instance)
    return out


def series_attributes(report: SeriesReport) -> Attributes:
    """Attributes every point of a series carries (besides the resource)."""
    return {"leakproc.tenant": report.key.tenant, "leakproc.profile.kind": report.key.kind.value}


def grower_attributes(report: SeriesReport, rank: int, grower: Grower) -> Attributes:
    attributes = series_attributes(report)
    attributes.update(
        {
            "leakproc.grower.rank": rank,
            "code.function.name": grower.function,
            "code.file.path": grower.file,
            "code.line.number": grower.line,
        }
    )
    if grower.state:
        attributes["leakproc.goroutine.state"] = grower.state
    return attributes


def trend_z(report: SeriesReport) -> float | None:
    evidence = report.evidence
    value = evidence.total_z if evidence.total_z is not None else evidence.trend_z
    return None if value is None else float(value)


def report_points(report: SeriesReport) -> list[Point]:
    """Every gauge point of one series report (bounded: top-K growers at most)."""
    kind = report.key.kind
    base = series_attributes(report)
    points: list[Point] = []
    if kind is ProfileKind.HEAP:
        points += [Point(HEAP_IN_USE, base, report.current), Point(HEAP_GROWTH, base, report.growth_per_hour)]
        low = report.evidence.total_slope_low_per_hour
        if low is not None:
            points.append(Point(HEAP_GROWTH_LOW, base, float(low)))
        if report.time_to_limit_seconds is not None:
            points.append(Point(HEAP_TIME_TO_LIMIT, base, report.time_to_limit_seconds))
        limit = report.evidence.memory_limit_bytes
        if limit is not None:
            points.append(Point(HEAP_LIMIT, base, float(limit)))
    elif kind in _GOROUTINES:
        points += [Point(GOROUTINES, base, report.current), Point(GOROUTINE_GROWTH, base, report.growth_per_hour)]
    else:
        # The slope of a rate (s/s per hour) has no unit the Prometheus translation renders cleanly; the
        # status and score carry the verdict, and events carry the slope.
        points.append(Point(CONTENTION_RATE, base, report.current / NANOS_PER_SECOND))
    for status in Status:
        points.append(Point(STATUS, {**base, "leakproc.status": status.value}, float(report.status is status)))
    points.append(Point(SCORE, base, report.score))
    z = trend_z(report)
    if z is not None:
        points.append(Point(TREND_Z, base, z))
    for rank, grower in enumerate(report.top_growers, start=1):
        attributes = grower_attributes(report, rank, grower)
        if kind is ProfileKind.HEAP:
            points.append(Point(SITE_GROWTH, attributes, grower.growth_per_hour))
            points.append(Point(SITE_IN_USE, attributes, grower.current))
        elif kind in _GOROUTINES:
            points.append(Point(GROUP_GROWTH, attributes, grower.growth_per_hour))
            points.append(Point(GROUP_COUNT, attributes, grower.current))
        else:
            points.append(Point(LOCK_RATE, attributes, grower.current / NANOS_PER_SECOND))
        points.append(Point(GROWER_SHARE, attributes, grower.share))
    return points


# --- events --------------------------------------------------------------------------------------

# OTel log severity numbers (logs data model): INFO=9, WARN=13, ERROR=17.
SEVERITY: dict[str, tuple[int, str]] = {
    "suspected": (13, "WARN"),
    "confirmed": (17, "ERROR"),
    "resolved": (9, "INFO"),
    "not_fixed": (13, "WARN"),
}
UNITS = {
    ProfileKind.HEAP: "By",
    ProfileKind.GOROUTINE: "{goroutine}",
    ProfileKind.GOROUTINELEAK: "{goroutine}",
    ProfileKind.MUTEX: "s/s",
    ProfileKind.BLOCK: "s/s",
}


def _in_unit(kind: ProfileKind, value: float) -> float:
    return value / NANOS_PER_SECOND if kind in _CONTENTION else value


def event_id(event: LeakEvent) -> str:
    """A stable id: the same transition always gets the same id, so a consumer can drop a redelivery."""
    key = event.report.key
    text = f"{key.tenant}\x00{key.service}\x00{key.instance}\x00{key.kind}\x00{event.name}\x00{event.time_nanos}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def event_record(event: LeakEvent) -> dict[str, object]:
    """A log event as plain JSON data: what the spool stores and the OTLP exporter sends.

    Keys: `event_name`, `time_unix_nano`, `severity_number`, `severity_text`, `body` (one readable line),
    `attributes` (the evidence; arrays for the top growers), `resource` (the monitored service).
    """
    report = event.report
    kind = report.key.kind
    number, text = SEVERITY[event.name.rsplit(".", 1)[-1]]
    attributes: dict[str, object] = {
        "event.id": event_id(event),
        **series_attributes(report),
        "leakproc.status": report.status.value,
        "leakproc.status.previous": event.previous.value,
        "leakproc.score": report.score,
        "leakproc.unit": UNITS[kind],
        "leakproc.current": _in_unit(kind, report.current),
        "leakproc.growth_rate_per_hour": _in_unit(kind, report.growth_per_hour),
        "leakproc.window.start": rfc3339(report.first_time_nanos) or "",
        "leakproc.window.end": rfc3339(report.last_time_nanos) or "",
        "leakproc.window.seconds": (report.last_time_nanos - report.first_time_nanos) / NANOS_PER_SECOND,
        "leakproc.profiles": report.profiles,
        "leakproc.restarts": report.restarts,
    }
    if report.first_flagged_at_nanos is not None:
        attributes["leakproc.first_flagged_at"] = rfc3339(report.first_flagged_at_nanos) or ""
    if report.time_to_limit_seconds is not None:
        attributes["leakproc.time_to_limit_seconds"] = report.time_to_limit_seconds
    z = trend_z(report)
    if z is not None:
        attributes["leakproc.trend_z"] = z
    growers = report.top_growers
    if growers:
        top = growers[0]
        attributes.update(
            {
                "code.function.name": top.function,
                "code.file.path": top.file,
                "code.line.number": top.line,
                "leakproc.top_growers.function": [g.function for g in growers],
                "leakproc.top_growers.location": [f"{g.file}:{g.line}" for g in growers],
                "leakproc.top_growers.growth_rate_per_hour": [_in_unit(kind, g.growth_per_hour) for g in growers],
                "leakproc.top_growers.share": [g.share for g in growers],
            }
        )
        states = [g.state or "" for g in growers]
        if any(states):
            attributes["leakproc.top_growers.state"] = states
    attributes.update(fix_attributes(report))
    return {
        "event_name": event.name,
        "time_unix_nano": event.time_nanos,
        "severity_number": number,
        "severity_text": text,
        "body": event_summary(event),
        "attributes": attributes,
        "resource": monitored_resource(event.resource, report),
    }


def fix_attributes(report: SeriesReport) -> dict[str, object]:
    """`leakproc.fix.*`: the fix verification of a series restarted with a new version, before and after
    (at the same age since start), once it has a verdict."""
    fix = report.fix
    if fix is None or fix.after is None:
        return {}
    kind = report.key.kind
    out: dict[str, object] = {
        "leakproc.fix.verdict": fix.verdict.value,
        "leakproc.fix.age_seconds": fix.age_seconds,
        "leakproc.fix.restart_time": rfc3339(fix.restart_time_nanos) or "",
    }
    for name, side in (("before", fix.before), ("after", fix.after)):
        out[f"leakproc.fix.{name}.version"] = side.version
        out[f"leakproc.fix.{name}.growth_rate_per_hour"] = _in_unit(kind, side.growth_per_hour)
        out[f"leakproc.fix.{name}.current"] = _in_unit(kind, side.current)
        if side.delay_rate is not None:  # mutex and block: what the verdict rests on, in s/s
            out[f"leakproc.fix.{name}.delay_rate"] = _in_unit(kind, side.delay_rate)
            out[f"leakproc.fix.{name}.delay_rate_low"] = _in_unit(kind, side.delay_rate_low or 0.0)
            out[f"leakproc.fix.{name}.delay_rate_high"] = _in_unit(kind, side.delay_rate_high or 0.0)
            out[f"leakproc.fix.{name}.top_site"] = side.top_site
            out[f"leakproc.fix.{name}.top_site_share"] = side.top_site_share or 0.0
    if fix.sites:
        out["leakproc.fix.sites"] = list(fix.sites)
    return out


def event_summary(event: LeakEvent) -> str:
    """One readable line: what happened, to whom, how fast, and where."""
    report = event.report
    key = report.key
    who = f"{key.service}/{key.instance}" if key.instance else key.service
    parts = [
        f"{event.name}: {who} {key.kind}",
        f"{human(report.current, key.kind)} now, {human(report.growth_per_hour, key.kind)}/h",
    ]
    if report.time_to_limit_seconds is not None:
        parts.append(f"limit in {duration(report.time_to_limit_seconds)}")
    if report.top_growers and report.status.flagged:
        top = report.top_growers[0]
        state = f" [{top.state}]" if top.state else ""
        parts.append(f"top: {top.function} ({top.file}:{top.line}){state} {top.share:.0%} of growth")
    if report.fix is not None and report.fix.after is not None:
        parts.append(fix_text(report.fix, key.kind))
    return ", ".join(parts)


_SAFE = re.compile(r"[^A-Za-z0-9_]")


def prometheus_label(key: str) -> str:
    """An attribute key as the OTLP-to-Prometheus translation writes it as a label (`.` -> `_`)."""
    label = _SAFE.sub("_", key)
    return f"key_{label}" if label[:1].isdigit() else label


def dumps(record: Mapping[str, object]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"))
