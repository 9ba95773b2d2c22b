"""Fix verification on real Go heap series: a flagged series restarted with a new version is compared like with like.

tests/testdata/versions/checkout_fixed and checkout_unfixed hold 40 profiles of a leaking v1.4.1 and 40 of
v1.4.2 (fixed in one, still leaking in the other), one minute apart (see the README there).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from otel_leakproc.analyze import split_version
from otel_leakproc.model import FixVerdict, GoroutineGroup, ProfileKind, ProfileSummary, SeriesKey, Status
from otel_leakproc.processor.config import FixConfig, ProcessorConfig
from otel_leakproc.processor.detector import SeriesDetector
from otel_leakproc.processor.state import SeriesTable
from otel_leakproc.receiver.decode import DecodeLimits, decode_profile
from otel_leakproc.receiver.identity import resolve_identity

VERSIONS = Path(__file__).parents[2] / "testdata" / "versions"
KEY = SeriesKey("", "checkout", "", ProfileKind.HEAP)
LEAKER = "main.(*auditLog).retainAuditRecord"
MIB = 1024 * 1024


@cache
def versioned(case: str) -> tuple[tuple[ProfileSummary, str], ...]:
    out = []
    for version in ("v1.4.1", "v1.4.2"):
        files = sorted((VERSIONS / case / version / "heap").glob("*.pb.gz"))
        assert len(files) == 40
        out += [(decode_profile(f.read_bytes(), DecodeLimits()), version) for f in files]
    return tuple(sorted(out, key=lambda e: e[0].time_nanos))


def run(case: str, config: ProcessorConfig | None = None) -> SeriesDetector:
    detector = SeriesDetector(KEY, config or ProcessorConfig())
    for summary, version in versioned(case):
        detector.update(summary, version)
    return detector


def test_a_deploy_that_fixed_the_leak_resolves_the_series_with_before_and_after() -> None:
    detector = run("checkout_fixed")
    report = detector.report()
    fix = report.fix
    assert fix is not None
    assert fix.after is not None
    assert fix.verdict is FixVerdict.FIXED
    assert fix.sites == (LEAKER,)
    assert (fix.before.version, fix.after.version, fix.after_version) == ("v1.4.1", "v1.4.2", "v1.4.2")
    assert fix.age_seconds == 1200.0
    assert fix.before.growth_per_hour > 10 * MIB  # 300 KiB a minute is 17.6 MiB/h
    assert fix.after.growth_per_hour < fix.before.growth_per_hour / 20
    assert report.status is Status.OK
    restart = versioned("checkout_fixed")[40][0].time_nanos
    assert fix.restart_time_nanos == restart
    # The restart itself did not resolve the series: the flag was held until the comparison age, then the
    # series took v1.4.2's own status (still in its warm-up at 20 minutes, ok after it).
    flagged_to_ok = [(t, a, b) for t, a, b in report.transitions if a.flagged and not b.flagged]
    assert flagged_to_ok == [(restart + 1200 * 10**9, Status.SUSPECTED, Status.INSUFFICIENT_DATA)]
    assert report.evidence["last_restart"] == "new version v1.4.2 (was v1.4.1)"


def test_a_deploy_that_did_not_fix_the_leak_says_so_and_stays_flagged() -> None:
    report = run("checkout_unfixed").report()
    fix = report.fix
    assert fix is not None
    assert fix.after is not None
    assert fix.verdict is FixVerdict.NOT_FIXED
    assert fix.after.growth_per_hour > 0.5 * fix.before.growth_per_hour
    assert report.status.flagged
    restart = versioned("checkout_unfixed")[40][0].time_nanos
    assert all(t < restart for t, _, _ in report.transitions)  # never left the flag after the restart


def test_pending_verdict_holds_the_flag_and_shows_the_old_side() -> None:
    detector = SeriesDetector(KEY, ProcessorConfig())
    for summary, version in versioned("checkout_fixed")[:50]:  # 10 minutes into v1.4.2
        report = detector.update(summary, version)
    assert report.status is Status.SUSPECTED
    assert report.fix is not None
    assert report.fix.verdict is FixVerdict.PENDING
    assert report.fix.after is None
    assert report.fix.before.growth_per_hour > 10 * MIB


def test_state_round_trip_in_the_middle_of_a_verification_continues_identically() -> None:
    entries = versioned("checkout_fixed")
    whole = run("checkout_fixed")
    for cut in (41, 55, 75):
        detector = SeriesDetector(KEY, ProcessorConfig())
        for summary, version in entries[:cut]:
            detector.update(summary, version)
        state = json.loads(json.dumps(detector.to_state(), allow_nan=False))
        restored = SeriesDetector.from_state(KEY, ProcessorConfig(), state)
        assert restored.report() == detector.report()
        for summary, version in entries[cut:]:
            restored.update(summary, version)
        assert restored.report() == whole.report(), cut


def test_a_state_written_before_fix_verification_still_restores() -> None:
    detector = SeriesDetector(KEY, ProcessorConfig())
    for summary, version in versioned("checkout_fixed")[:30]:
        detector.update(summary, version)
    state = json.loads(json.dumps(detector.to_state()))
    for new_key in ("service_version", "own", "early", "fix"):
        del state[new_key]
    del state["report"]["fix"]
    restored = SeriesDetector.from_state(KEY, ProcessorConfig(), state)
    assert restored.report() == detector.report()
    assert restored.version is None
    assert restored.fix is None


def test_a_process_older_than_the_window_is_compared_from_its_start() -> None:
    # A 10-minute window holds neither v1.4.1's first 20 minutes nor v1.4.2's: both are kept for the comparison.
    small = ProcessorConfig(window_seconds=600)
    big = ProcessorConfig()
    fix_small, fix_big = run("checkout_fixed", small).report().fix, run("checkout_fixed", big).report().fix
    assert fix_small is not None
    assert fix_big is not None
    assert fix_small.before == fix_big.before
    assert fix_small.after == fix_big.after
    assert fix_small.verdict is FixVerdict.FIXED


def test_the_table_emits_resolved_with_the_fix_and_not_fixed_for_a_deploy_that_did_not() -> None:
    for case, expected in (("checkout_fixed", "leak.resolved"), ("checkout_unfixed", "leak.not_fixed")):
        table = SeriesTable(ProcessorConfig(), 10)
        events = []
        for summary, version in versioned(case):
            update = table.update(KEY, resolve_identity({"version": version}, "checkout").resource, summary)
            if update.event is not None:
                events.append(update.event)
        assert [e.name for e in events] == ["leak.suspected", expected], case
        fix = events[-1].report.fix
        assert fix is not None
        assert fix.after is not None
        assert fix.before.version == "v1.4.1"


def test_version_folders_and_labels() -> None:
    assert split_version("checkout/v1.4.2") == ("checkout", "v1.4.2")
    assert split_version("checkout/pod-1/v2.0.0-rc1") == ("checkout/pod-1", "v2.0.0-rc1")
    assert split_version("checkout/pod-1") == ("checkout/pod-1", None)
    assert split_version("vendor/v") == ("vendor/v", None)
    assert split_version("v1.4.1") == ("v1.4.1", "v1.4.1")
    assert resolve_identity({"version": "v3"}, "svc").resource["service.version"] == "v3"
    assert resolve_identity({"service.version": "1.2", "version": "x"}, "svc").resource["service.version"] == "1.2"
    assert "service.version" not in resolve_identity({}, "svc").resource


def test_the_start_kept_for_a_comparison_is_bounded_and_kept_only_past_the_window() -> None:
    entries = versioned("checkout_fixed")[:40]  # v1.4.1: 40 minutes
    default = SeriesDetector(KEY, ProcessorConfig())  # a 2-hour window holds them all
    small = SeriesDetector(KEY, ProcessorConfig(window_seconds=1200))
    for summary, version in entries:
        default.update(summary, version)
        small.update(summary, version)
    assert default._early is None
    assert small._early is not None
    points, grid = small._early
    ages = points.times() - small.segment_start
    # The points that left the 20-minute window (ages 0..1080 s); 1140 s on are still in the history.
    assert len(points) == grid.n == 19
    assert ages.max() == 1080.0
    all_ages = small._segment("v1.4.1", (), 1200.0).ages
    assert all_ages.tolist() == [60.0 * i for i in range(40)]
    # Only points younger than compare_seconds are kept: with a 10-minute window and a 15-minute
    # comparison, the process's first 15 minutes, however long it lives.
    late = SeriesDetector(KEY, ProcessorConfig(window_seconds=600, fix=FixConfig(compare_seconds=900)))
    for summary, version in entries:
        late.update(summary, version)
    assert late._early is not None
    late_ages = late._early[0].times() - late.segment_start
    assert late_ages.tolist() == [60.0 * i for i in range(16)]
    # Complete (the points leaving the window now are older than 15 minutes): sized to what it holds.
    assert late._early[0].capacity == late._early[1].columns == 16


def goroutine_profile(minute: int, count: int) -> ProfileSummary:
    group = GoroutineGroup("chan receive", "main.awaitAck", "main.awaitAck", "main.go", 10, "main.spawn", count)
    idle = GoroutineGroup("select", "main.serve", "main.serve", "main.go", 20, "main.main", 20)
    return ProfileSummary(
        kind=ProfileKind.GOROUTINE,
        time_nanos=(1_790_000_000 + 60 * minute) * 10**9,
        total=float(count + 20),
        groups=(group, idle),
        source_format="goroutine-text",
    )


def test_goroutine_series_get_the_same_verification() -> None:
    key = SeriesKey("", "quotes", "", ProfileKind.GOROUTINE)
    for after_rate, verdict in ((0, FixVerdict.FIXED), (6, FixVerdict.NOT_FIXED)):
        detector = SeriesDetector(key, ProcessorConfig())
        for minute in range(40):
            report = detector.update(goroutine_profile(minute, 5 + 6 * minute), "v2")
        assert report.status.flagged
        for minute in range(40, 80):
            report = detector.update(goroutine_profile(minute, 5 + after_rate * (minute - 40)), "v3")
        fix = report.fix
        assert fix is not None
        assert fix.after is not None
        assert fix.verdict is verdict
        assert fix.sites == ()
        assert fix.before.growth_per_hour == 360.0  # 6 goroutines a minute
        assert fix.after.growth_per_hour == 60.0 * after_rate
        assert report.status.flagged is (verdict is FixVerdict.NOT_FIXED)


def test_a_profile_can_carry_its_version_in_a_pprof_comment() -> None:
    series = Path(__file__).parents[2] / "testdata" / "series" / "deploy_fixes_leak" / "heap"
    files = sorted(series.glob("*.pb.gz"))
    summaries = [decode_profile(f.read_bytes(), DecodeLimits()) for f in files]
    assert summaries[0].labels["service.version"] == "v1.4.1"
    assert summaries[-1].labels["service.version"] == "v1.4.2"
    detector = SeriesDetector(KEY, ProcessorConfig())
    for summary in sorted(summaries, key=lambda s: s.time_nanos):
        detector.update(summary)  # no version from the upload: the profile's own
    fix = detector.report().fix
    assert fix is not None
    assert fix.verdict is FixVerdict.FIXED
    assert (fix.before.version, fix.after_version) == ("v1.4.1", "v1.4.2")
    assert detector.report().evidence.last_restart == "new version v1.4.2 (was v1.4.1)"
