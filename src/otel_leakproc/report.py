"""Rendering of `SeriesReport`s: the `analyze --json` / `/api/v1/series` objects and a readable table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from otel_leakproc.model import FixSide, FixVerification, Grower, ProfileKind, SeriesReport
from otel_leakproc.printable import printable

if TYPE_CHECKING:
    from otel_leakproc.analyze import AnalyzeRun

NANOS = 1_000_000_000


def rfc3339(nanos: int | None) -> str | None:
    """RFC 3339 UTC timestamp with millisecond precision, or None."""
    if nanos is None or nanos <= 0:
        return None
    stamp = datetime.fromtimestamp(nanos / NANOS, tz=UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def grower_to_json(grower: Grower) -> dict[str, Any]:
    out: dict[str, Any] = {
        "function": grower.function,
        "file": grower.file,
        "line": grower.line,
        "growth_per_hour": _num(grower.growth_per_hour),
        "share": round(grower.share, 4),
        "current": _num(grower.current),
    }
    if grower.state is not None:
        out["state"] = grower.state
    out.update(grower.detail)
    return out


def inputs_to_json(run: AnalyzeRun) -> dict[str, Any]:
    """The `inputs` object of `analyze --json`: files considered, read and skipped, and why."""
    return {
        "files": run.files,
        "read": run.read,
        "skipped": len(run.skipped),
        "skipped_by_reason": run.skipped_by_reason(),
        "skipped_files": [{"path": s.path, "reason": s.reason, "message": s.message} for s in run.skipped],
    }


def series_to_json(report: SeriesReport, source: str | None = None) -> dict[str, Any]:
    """One series object of the analyze --json contract (fields may be added, never renamed)."""
    key = report.key
    out: dict[str, Any] = {
        "service": key.service,
        "instance": key.instance,
        "kind": key.kind.value,
        "profiles": report.profiles,
        "first_time": rfc3339(report.first_time_nanos),
        "last_time": rfc3339(report.last_time_nanos),
        "status": report.status.value,
        "first_flagged_at": rfc3339(report.first_flagged_at_nanos),
        "score": report.score,
        "current": _num(report.current),
        "growth_per_hour": _num(report.growth_per_hour),
        "time_to_limit_seconds": None
        if report.time_to_limit_seconds is None
        else round(report.time_to_limit_seconds, 1),
        "restarts": report.restarts,
        "top_growers": [grower_to_json(g) for g in report.top_growers],
        "unit": UNITS[key.kind],
        "evidence": {k: _num(v) if isinstance(v, float) else v for k, v in report.evidence.to_dict().items()},
        "transitions": [{"time": rfc3339(t), "from": a.value, "to": b.value} for t, a, b in report.transitions],
    }
    if report.fix is not None:
        out["fix"] = fix_to_json(report.fix)
    if key.tenant:
        out["tenant"] = key.tenant
    if source is not None:
        out["source"] = source
    return out


def _side_to_json(side: FixSide) -> dict[str, Any]:
    return {
        "version": side.version,
        "growth_per_hour": _num(side.growth_per_hour),
        "growth_low_per_hour": _num(side.growth_low_per_hour),
        "growth_high_per_hour": _num(side.growth_high_per_hour),
        "total_growth_per_hour": _num(side.total_growth_per_hour),
        "current": _num(side.current),
        **(
            {}
            if side.delay_rate is None
            else {
                "delay_rate": _num(side.delay_rate),
                "delay_rate_low": _num(side.delay_rate_low or 0.0),
                "delay_rate_high": _num(side.delay_rate_high or 0.0),
                "top_site": side.top_site,
                "top_site_share": round(side.top_site_share or 0.0, 4),
            }
        ),
    }


def fix_to_json(fix: FixVerification) -> dict[str, Any]:
    """The `fix` object of a series (docs/analyze-json.md)."""
    return {
        "verdict": fix.verdict.value,
        "version": fix.after_version,
        "restart_time": rfc3339(fix.restart_time_nanos),
        "age_seconds": _num(round(fix.age_seconds, 1)),
        "sites": list(fix.sites),
        "before": _side_to_json(fix.before),
        "after": None if fix.after is None else _side_to_json(fix.after),
    }


def fix_text(fix: FixVerification, kind: ProfileKind) -> str:
    """One line for people, e.g. `fixed: growth 14.6 MiB/h before v1.4.2, 0.1 MiB/h after (at 30m)`;
    contention: `fixed: lock delay 33.9 s/s before v2, 1.7 us/s after (...); most contended: ...`."""
    if fix.before.delay_rate is not None:
        return _delay_fix_text(fix)
    before = f"growth {human(fix.before.growth_per_hour, kind)}/h before {fix.after_version}"
    if fix.after is None:
        return f"fix pending: {before}, compared at {duration(fix.age_seconds)} since start"
    verdict = "fixed" if fix.verdict.value == "fixed" else "NOT fixed"
    after = f"{human(fix.after.growth_per_hour, kind)}/h after"
    return f"{verdict}: {before}, {after} (both from start-up to {duration(fix.age_seconds)})"


def delay_rate_text(ns_per_second: float) -> str:
    """A lock delay rate for people at its own scale: `33.9 s/s`, `12.5 ms/s`, `1.7 us/s`."""
    for unit, size in (("s/s", NANOS), ("ms/s", NANOS / 1000)):
        if abs(ns_per_second) >= size:
            return f"{ns_per_second / size:.1f} {unit}"
    return f"{ns_per_second / 1000:.1f} us/s"


def _top_text(side: FixSide) -> str:
    if not side.top_site:
        return "none"
    return f"{side.top_site} {(side.top_site_share or 0.0) * 100:.0f}%"


def _delay_fix_text(fix: FixVerification) -> str:
    b, a = fix.before, fix.after
    before = f"lock delay {delay_rate_text(b.delay_rate or 0.0)} before {fix.after_version}"
    if a is None:
        return f"fix pending: {before}, compared at {duration(fix.age_seconds)} since start"
    verdict = "fixed" if fix.verdict.value == "fixed" else "NOT fixed"
    low, high = delay_rate_text(a.delay_rate_low or 0.0), delay_rate_text(a.delay_rate_high or 0.0)
    return (
        f"{verdict}: {before}, {delay_rate_text(a.delay_rate or 0.0)} after (95% {low} to {high}; both from"
        f" start-up to {duration(fix.age_seconds)}); most contended: {_top_text(b)} before, {_top_text(a)} after"
    )


UNITS = {
    ProfileKind.HEAP: "bytes",
    ProfileKind.GOROUTINE: "goroutines",
    ProfileKind.GOROUTINELEAK: "goroutines",
    ProfileKind.MUTEX: "ns/s",
    ProfileKind.BLOCK: "ns/s",
}


def _num(value: float) -> float | int:
    if value == int(value) and abs(value) < 2**53:
        return int(value)
    return round(value, 3)


def human(value: float, kind: ProfileKind) -> str:
    """A value in the kind's unit, for people: MiB, goroutines, or seconds of delay per second."""
    if kind is ProfileKind.HEAP:
        for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if abs(value) >= size:
                return f"{value / size:.1f} {unit}"
        return f"{value:.0f} B"
    if kind in (ProfileKind.MUTEX, ProfileKind.BLOCK):
        return f"{value / NANOS * 1000:.1f} ms/s"
    return f"{value:.0f}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def render_table(rows: list[tuple[SeriesReport, str]]) -> str:
    """The default analyze output: one line per series, then its top growers (pprof -top, with a verdict)."""
    lines = []
    header = (
        f"{'SERIES':<34} {'KIND':<13} {'PROFILES':>8} {'STATUS':<17} {'CURRENT':>11} {'GROWTH/h':>12} {'LIMIT IN':>8}"
    )
    lines.append(header)
    for report, _source in rows:
        key = report.key
        name = key.service + (f"/{key.instance}" if key.instance else "")
        growth = human(report.growth_per_hour, key.kind)
        if report.growth_per_hour > 0:
            growth = "+" + growth
        lines.append(
            f"{name[:34]:<34} {key.kind.value:<13} {report.profiles:>8} {report.status.value:<17} "
            f"{human(report.current, key.kind):>11} {growth:>12} {duration(report.time_to_limit_seconds):>8}"
        )
        reason = report.evidence.reason
        if reason:
            lines.append(f"    ({reason})")
        if report.fix is not None:
            lines.append(f"    ({fix_text(report.fix, key.kind)})")
        for g in report.top_growers:
            where = f"{g.file}:{g.line}" if g.file else ""
            state = f" [{g.state}]" if g.state else ""
            rate = ("+" if g.growth_per_hour > 0 else "") + human(g.growth_per_hour, key.kind)
            lines.append(f"    {rate:>11}/h {g.share * 100:5.1f}%  {g.function}{state}  {where}")
    # Names come from the profiles: escape control characters so each line stays one line, as read.
    return "\n".join(printable(line) for line in lines)
