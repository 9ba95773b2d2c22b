"""Tests for report rendering: the `analyze --json` series objects (a contract) and the readable table."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from otel_leakproc.model import (
    Evidence,
    GoroutineGroup,
    Grower,
    ProfileKind,
    ProfileSummary,
    SeriesKey,
    SeriesReport,
    SiteValue,
    Status,
)
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.detector import SeriesDetector
from otel_leakproc.report import render_table, rfc3339, series_to_json

NANOS = 1_000_000_000
T0 = 1_790_000_000 * NANOS
MINUTE = 60 * NANOS

# The fields of one series object, as DESIGN.md ("Interfaces users rely on") lists them.
CONTRACT_KEYS = {
    "service",
    "instance",
    "kind",
    "profiles",
    "first_time",
    "last_time",
    "status",
    "first_flagged_at",
    "score",
    "current",
    "growth_per_hour",
    "time_to_limit_seconds",
    "restarts",
    "top_growers",
}
GROWER_KEYS = {"function", "file", "line", "growth_per_hour", "share"}


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


HEAP_REPORT = SeriesReport(
    key=SeriesKey("", "checkout", "pod-1", ProfileKind.HEAP),
    profiles=60,
    first_time_nanos=T0,
    last_time_nanos=T0 + 59 * MINUTE,
    status=Status.CONFIRMED,
    first_flagged_at_nanos=T0 + 30 * MINUTE,
    score=0.87,
    current=31_873_270.0,
    growth_per_hour=15_403_574.988_4,
    time_to_limit_seconds=12_345.678,
    restarts=1,
    top_growers=(
        Grower(
            function="main.(*OrderProcessor).processBatch",
            file="app/order.go",
            line=851,
            growth_per_hour=15_844_258.125,
            share=0.93,
            current=14_259_915.0,
            detail={"z": 10.8},
        ),
        Grower("main.renderPage", "app/page.go", 12, 1_200_000.0, 0.07, 3_000_000.0),
    ),
    evidence=Evidence(total_z=9.854, points=60),
)


def heap_report(**changes: Any) -> SeriesReport:
    return dataclasses.replace(HEAP_REPORT, **changes)


def goroutine_report() -> SeriesReport:
    return SeriesReport(
        key=SeriesKey("", "quotes", "", ProfileKind.GOROUTINE),
        profiles=40,
        first_time_nanos=T0,
        last_time_nanos=T0 + 39 * MINUTE,
        status=Status.SUSPECTED,
        first_flagged_at_nanos=T0 + 7 * MINUTE,
        score=0.6,
        current=540.0,
        growth_per_hour=360.0,
        time_to_limit_seconds=None,
        restarts=0,
        top_growers=(
            Grower(
                function="main.(*QuoteClient).awaitAck",
                file="app/quote.go",
                line=147,
                growth_per_hour=360.0,
                share=1.0,
                current=240.0,
                state="chan receive",
                detail={"created_by": "main.(*QuoteClient).request"},
            ),
        ),
    )


def parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    assert parsed.tzinfo is not None, f"{text!r} has no UTC offset"
    return parsed


def test_series_object_has_the_contract_keys_with_their_types() -> None:
    out = series_to_json(heap_report(), source="profiles/checkout")
    assert set(out) >= CONTRACT_KEYS, CONTRACT_KEYS - set(out)
    assert out["service"] == "checkout"
    assert out["instance"] == "pod-1"
    assert out["kind"] == "heap"
    assert out["profiles"] == 60
    assert isinstance(out["profiles"], int)
    assert out["status"] == "confirmed"
    assert isinstance(out["score"], float)
    assert 0.0 <= out["score"] <= 1.0
    assert out["score"] == 0.87
    assert is_number(out["current"])
    assert out["current"] == 31_873_270
    assert is_number(out["growth_per_hour"])
    assert out["growth_per_hour"] == pytest.approx(15_403_574.988, abs=0.001)
    assert isinstance(out["time_to_limit_seconds"], float)
    assert out["time_to_limit_seconds"] == pytest.approx(12_345.7)
    assert out["restarts"] == 1
    assert isinstance(out["restarts"], int)
    # Additions are allowed by the contract; these are the ones documented in report.py.
    assert out["source"] == "profiles/checkout"
    assert out["unit"] == "bytes"
    assert out["evidence"] == {"total_z": 9.854, "points": 60}
    assert "tenant" not in out  # only for a named tenant


def test_growers_have_the_contract_keys() -> None:
    growers = series_to_json(heap_report())["top_growers"]
    assert isinstance(growers, list)
    assert [g["function"] for g in growers] == ["main.(*OrderProcessor).processBatch", "main.renderPage"]
    first = growers[0]
    assert set(first) >= GROWER_KEYS
    assert first["file"] == "app/order.go"
    assert first["line"] == 851
    assert isinstance(first["line"], int)
    assert first["growth_per_hour"] == pytest.approx(15_844_258.125)
    assert first["share"] == 0.93
    assert first["z"] == 10.8  # detail is merged in
    assert "state" not in first  # heap sites have no wait state


def test_goroutine_growers_carry_their_wait_state() -> None:
    out = series_to_json(goroutine_report())
    assert out["kind"] == "goroutine"
    assert out["instance"] == ""
    assert out["unit"] == "goroutines"
    assert out["time_to_limit_seconds"] is None
    (grower,) = out["top_growers"]
    assert set(grower) >= GROWER_KEYS | {"state"}
    assert grower["state"] == "chan receive"
    assert grower["created_by"] == "main.(*QuoteClient).request"
    assert grower["share"] == 1.0


def test_times_are_rfc3339_utc_and_round_trip() -> None:
    out = series_to_json(heap_report())
    first = parse_time(out["first_time"])
    last = parse_time(out["last_time"])
    flagged = parse_time(out["first_flagged_at"])
    assert first == datetime.fromtimestamp(T0 / NANOS, tz=UTC)
    assert first.utcoffset() is not None
    assert first.utcoffset().total_seconds() == 0
    assert (last - first).total_seconds() == 59 * 60
    assert (flagged - first).total_seconds() == 30 * 60
    assert out["first_time"] == "2026-09-21T14:13:20.000Z"


def test_rfc3339_keeps_milliseconds_and_maps_missing_times_to_null() -> None:
    assert rfc3339(T0 + 123_456_789) == "2026-09-21T14:13:20.123Z"
    assert rfc3339(None) is None
    assert rfc3339(0) is None
    out = series_to_json(heap_report(status=Status.OK, first_flagged_at_nanos=None, time_to_limit_seconds=None))
    assert out["first_flagged_at"] is None
    assert out["time_to_limit_seconds"] is None
    assert out["status"] == "ok"


def test_tenant_is_added_when_known() -> None:
    out = series_to_json(heap_report(key=SeriesKey("team-a", "checkout", "pod-1", ProfileKind.HEAP)))
    assert out["tenant"] == "team-a"


def _detector_reports() -> list[SeriesReport]:
    """Reports of real detectors for each detector family, after enough profiles to trend."""
    config = ProcessorConfig()
    out = []
    heap = SeriesDetector(SeriesKey("", "svc", "i", ProfileKind.HEAP), config, memory_limit_bytes=1 << 30)
    gor = SeriesDetector(SeriesKey("", "svc", "i", ProfileKind.GOROUTINE), config)
    mutex = SeriesDetector(SeriesKey("", "svc", "i", ProfileKind.MUTEX), config)
    for m in range(40):
        t = T0 + m * MINUTE
        heap.update(
            ProfileSummary(
                kind=ProfileKind.HEAP,
                time_nanos=t,
                total=8e6 + 3e5 * m,
                sites=(SiteValue("main.grow", "a.go", 3, 4e6 + 3e5 * m), SiteValue("main.flat", "b.go", 4, 4e6)),
            )
        )
        gor.update(
            ProfileSummary(
                kind=ProfileKind.GOROUTINE,
                time_nanos=t,
                total=float(10 + 6 * m),
                groups=(
                    GoroutineGroup("chan receive", "runtime.gopark", "main.wait", "w.go", 9, "main.spawn", 10 + 6 * m),
                ),
            )
        )
        mutex.update(
            ProfileSummary(
                kind=ProfileKind.MUTEX,
                time_nanos=t,
                total=1e9 * m * m,
                cumulative=float(m * m),
                sites=(SiteValue("main.deduct", "d.go", 5, 1e9 * m * m, leaf="sync.(*Mutex).Unlock"),),
            )
        )
    out.extend(d.report() for d in (heap, gor, mutex))
    return out


def test_detector_reports_serialise_to_strict_json() -> None:
    reports = _detector_reports()
    assert [r.status.flagged for r in reports] == [True, True, True]
    doc = {"series": [series_to_json(r) for r in reports]}
    text = json.dumps(doc, allow_nan=False)  # numpy scalars, NaN or infinity would raise here
    back = json.loads(text)["series"]
    assert [s["kind"] for s in back] == ["heap", "goroutine", "mutex"]
    for s in back:
        assert set(s) >= CONTRACT_KEYS
        assert s["status"] in {"suspected", "confirmed"}
        assert parse_time(s["first_time"]) < parse_time(s["last_time"])
        assert parse_time(s["first_time"]) <= parse_time(s["first_flagged_at"]) <= parse_time(s["last_time"])
        assert s["top_growers"]
        assert all(set(g) >= GROWER_KEYS for g in s["top_growers"])
    assert back[0]["top_growers"][0]["function"] == "main.grow"
    assert is_number(back[0]["time_to_limit_seconds"])
    assert back[0]["time_to_limit_seconds"] > 0
    assert back[1]["top_growers"][0]["state"] == "chan receive"
    assert back[2]["top_growers"][0]["function"] == "main.deduct"


def test_render_table_names_status_and_top_grower() -> None:
    text = render_table([(heap_report(), "src"), (goroutine_report(), "src2")])
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["SERIES", "KIND", "PROFILES", "STATUS"]
    heap_row = next(line for line in lines if line.startswith("checkout/pod-1"))
    assert heap_row.split()[:4] == ["checkout/pod-1", "heap", "60", "confirmed"]
    assert "30.4 MiB" in heap_row
    assert "+14.7 MiB" in heap_row
    assert "3.4h" in heap_row  # 12 345 s to the limit
    grower = lines[lines.index(heap_row) + 1]
    assert "main.(*OrderProcessor).processBatch" in grower
    assert "app/order.go:851" in grower
    assert "93.0%" in grower
    quotes = next(line for line in lines if line.startswith("quotes "))
    assert quotes.split()[:4] == ["quotes", "goroutine", "40", "suspected"]
    quote_grower = lines[lines.index(quotes) + 1]
    assert "main.(*QuoteClient).awaitAck [chan receive]" in quote_grower
    assert "+360/h" in quote_grower


def test_render_table_shows_the_reason_of_an_undecided_series() -> None:
    report = heap_report(
        status=Status.INSUFFICIENT_DATA,
        profiles=2,
        first_flagged_at_nanos=None,
        top_growers=(),
        time_to_limit_seconds=None,
        evidence=Evidence(reason="collecting profiles"),
    )
    lines = render_table([(report, "src")]).splitlines()
    assert len(lines) == 3
    assert "insufficient_data" in lines[1]
    assert lines[1].split()[-1] == "-"  # no time to limit
    assert lines[2].strip() == "(collecting profiles)"
