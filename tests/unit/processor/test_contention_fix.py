"""Fix verification of lock contention (mutex and block series) on real Go profiles.

tests/testdata/inventory holds the mutex and block profiles of examples/inventory scraped every 2 s
(scripts/inventory_contention_series.py): 40 of v1 (one map-wide RWMutex held over the warehouse round
trip while 37 readers queue), then 40 of v2 either `-fixed` (sharded locks) or not. Judged with the demo's
settings (examples/inventory/demo.yaml: compared at 60 s). tests/testdata/series/late_contention is
sampled contention (SetMutexProfileFraction(5), SetBlockProfileRate(10000)) that begins 20 minutes into the
process, one profile a minute, judged with the shipped defaults.
"""

from __future__ import annotations

import dataclasses
import json
from functools import cache
from pathlib import Path

import pytest

from otel_leakproc.config import load_settings
from otel_leakproc.exporter.signals import event_record
from otel_leakproc.model import FixVerdict, ProfileKind, ProfileSummary, SeriesKey, Status
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.detector import SeriesDetector
from otel_leakproc.processor.state import SeriesTable
from otel_leakproc.receiver.decode import DecodeLimits, decode_profile
from otel_leakproc.receiver.identity import resolve_identity
from otel_leakproc.report import fix_text, fix_to_json

TESTDATA = Path(__file__).parents[2] / "testdata"
ROOT = Path(__file__).parents[3]
NANOS = 1_000_000_000
HOLDER = "main.(*LockedStockMap).DeductBatch"
READER = "main.(*LockedStockMap).Get"
TOP = {ProfileKind.MUTEX: HOLDER, ProfileKind.BLOCK: READER}
KINDS = (ProfileKind.MUTEX, ProfileKind.BLOCK)


@cache
def demo_config() -> ProcessorConfig:
    return load_settings(ROOT / "examples" / "inventory" / "demo.yaml").processor


@cache
def profiles(process: str, kind: ProfileKind) -> tuple[ProfileSummary, ...]:
    files = sorted((TESTDATA / "inventory" / process / kind.value).glob("*.pb.gz"))
    assert len(files) == 40
    return tuple(decode_profile(f.read_bytes(), DecodeLimits()) for f in files)


def key(kind: ProfileKind) -> SeriesKey:
    return SeriesKey("", "inventory", "inventory-0", kind)


def deploy(kind: ProfileKind, after: str, count: int = 40) -> SeriesDetector:
    """v1's 40 profiles, then `count` of the `after` process; the version comes from each profile's comment."""
    detector = SeriesDetector(key(kind), demo_config())
    for summary in profiles("v1", kind) + profiles(after, kind)[:count]:
        detector.update(summary)
    return detector


@pytest.mark.parametrize("kind", KINDS)
def test_the_sharded_locks_are_verified_as_the_fix_with_the_delay_rate_before_and_after(kind: ProfileKind) -> None:
    detector = deploy(kind, "v2-fixed")
    report = detector.report()
    fix = report.fix
    assert fix is not None
    assert fix.after is not None
    assert fix.verdict is FixVerdict.FIXED
    assert (fix.before.version, fix.after.version) == ("v1", "v2")
    assert fix.sites == (TOP[kind],)
    assert fix.age_seconds == 60.0  # demo.yaml's compare_seconds: v1 lived 78 s
    # v1: the 37 readers wait almost all the time (about 34 s of waiting per second), on the one lock.
    before, after = fix.before, fix.after
    assert before.delay_rate is not None
    assert 25 * NANOS < before.delay_rate < 37 * NANOS
    assert before.delay_rate_low is not None
    assert before.delay_rate_low > 0.9 * before.delay_rate
    assert (before.top_site, before.top_site_share) == (TOP[kind], pytest.approx(1.0, abs=0.01))
    # v2: microseconds per second at most, and not the old lock.
    assert after.delay_rate is not None
    assert after.delay_rate_high is not None
    assert after.delay_rate_high < 0.001 * NANOS
    assert after.top_site != TOP[kind]
    # The series resolves to v2's own verdict once v2 is 60 s old: the flag was held from the restart.
    assert report.status is Status.OK
    restart = profiles("v2-fixed", kind)[0].time_nanos
    assert fix.restart_time_nanos == restart
    flagged_to_ok = [(t, a, b) for t, a, b in report.transitions if a.flagged and not b.flagged]
    assert flagged_to_ok == [(restart + 60 * NANOS, Status.CONFIRMED, Status.OK)]
    assert report.evidence.last_restart == "new version v2 (was v1)"


@pytest.mark.parametrize("kind", KINDS)
def test_a_deploy_that_kept_the_map_wide_lock_is_not_fixed_and_stays_flagged(kind: ProfileKind) -> None:
    report = deploy(kind, "v2-unfixed").report()
    fix = report.fix
    assert fix is not None
    assert fix.after is not None
    assert fix.verdict is FixVerdict.NOT_FIXED
    assert fix.before.delay_rate is not None
    assert fix.after.delay_rate is not None
    assert fix.after.delay_rate == pytest.approx(fix.before.delay_rate, rel=0.1)
    assert fix.after.top_site == TOP[kind]
    assert report.status is Status.CONFIRMED
    restart = profiles("v2-unfixed", kind)[0].time_nanos
    assert all(t < restart for t, _, _ in report.transitions)  # never left the flag after the restart


@pytest.mark.parametrize("kind", KINDS)
def test_too_little_of_the_new_version_keeps_the_verdict_pending_and_the_flag_held(kind: ProfileKind) -> None:
    # 20 profiles of v2: 38 s, younger than the 60 s comparison age.
    report = deploy(kind, "v2-fixed", count=20).report()
    fix = report.fix
    assert fix is not None
    assert fix.verdict is FixVerdict.PENDING
    assert fix.after is None
    assert fix.before.delay_rate is not None
    assert fix.before.delay_rate > 25 * NANOS
    assert report.status is Status.CONFIRMED
    assert "fix pending: lock delay " in fix_text(fix, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_too_short_a_flagged_life_is_not_compared_with(kind: ProfileKind) -> None:
    # v1 flagged after 10 s and restarted at 18 s: younger than min_compare_seconds (20 s in the demo).
    detector = SeriesDetector(key(kind), demo_config())
    for summary in profiles("v1", kind)[:10]:
        report = detector.update(summary)
    assert report.status is Status.SUSPECTED
    for summary in profiles("v2-unfixed", kind):
        report = detector.update(summary)
    assert report.fix is None
    restart = profiles("v2-unfixed", kind)[0].time_nanos
    assert (restart, Status.SUSPECTED, Status.INSUFFICIENT_DATA) in report.transitions  # resolved at the restart


@pytest.mark.parametrize("kind", KINDS)
def test_the_json_the_event_and_the_line_carry_before_and_after(kind: ProfileKind) -> None:
    table = SeriesTable(demo_config(), 10)
    events = []
    for summary in profiles("v1", kind) + profiles("v2-fixed", kind):
        version = summary.labels.get("service.version") or "v1"
        resource = resolve_identity({"version": version}, "inventory").resource
        update = table.update(key(kind), resource, summary)
        if update.event is not None:
            events.append(update.event)
    names = [e.name for e in events]
    assert names == ["contention.suspected", "contention.confirmed", "contention.resolved"]
    fix = events[-1].report.fix
    assert fix is not None
    record = event_record(events[-1])
    attributes = record["attributes"]
    assert isinstance(attributes, dict)
    assert attributes["leakproc.fix.verdict"] == "fixed"
    assert attributes["leakproc.fix.before.delay_rate"] > 25  # seconds of waiting per second
    assert attributes["leakproc.fix.after.delay_rate_high"] < 0.001
    assert attributes["leakproc.fix.before.top_site"] == TOP[kind]
    assert attributes["leakproc.fix.before.top_site_share"] == pytest.approx(1.0, abs=0.01)
    body = record["body"]
    assert isinstance(body, str)
    assert "fixed: lock delay " in body, body
    assert " s/s before v2, " in body, body
    assert f"most contended: {TOP[kind]} 100% before" in body, body
    as_json = fix_to_json(fix)
    assert as_json["before"]["top_site"] == TOP[kind]
    assert as_json["before"]["delay_rate"] == pytest.approx(fix.before.delay_rate, rel=1e-6)
    assert as_json["after"]["delay_rate_high"] < 0.001 * NANOS


def test_a_deploy_of_unfixed_code_names_itself_not_fixed_in_an_event() -> None:
    table = SeriesTable(demo_config(), 10)
    names = []
    for summary in profiles("v1", ProfileKind.MUTEX) + profiles("v2-unfixed", ProfileKind.MUTEX):
        resource = resolve_identity({"version": summary.labels.get("service.version") or "v1"}, "inventory").resource
        update = table.update(key(ProfileKind.MUTEX), resource, summary)
        if update.event is not None:
            names.append(update.event.name)
    assert names == ["contention.suspected", "contention.confirmed", "contention.not_fixed"]


@pytest.mark.parametrize("kind", KINDS)
def test_state_round_trip_in_the_middle_of_a_contention_verification(kind: ProfileKind) -> None:
    entries = profiles("v1", kind) + profiles("v2-fixed", kind)
    whole = deploy(kind, "v2-fixed").report()
    for cut in (41, 55, 75):
        detector = SeriesDetector(key(kind), demo_config())
        for summary in entries[:cut]:
            detector.update(summary)
        state = json.loads(json.dumps(detector.to_state(), allow_nan=False))
        restored = SeriesDetector.from_state(key(kind), demo_config(), state)
        assert restored.report() == detector.report()
        for summary in entries[cut:]:
            restored.update(summary)
        assert restored.report() == whole, cut


@pytest.mark.parametrize("kind", KINDS)
def test_late_contention_is_compared_over_the_ages_it_was_contended_at(kind: ProfileKind) -> None:
    # The contention begins 20 minutes into the process; the shipped comparison age is 20 minutes. Compared
    # there, both processes would be quiet (or show one contended profile): the comparison reaches 10 minutes
    # (`fix.min_compare_seconds`) past the age the flag was raised at instead.
    files = sorted((TESTDATA / "series" / "late_contention" / kind.value).glob("*.pb.gz"))
    first = [decode_profile(f.read_bytes(), DecodeLimits()) for f in files]
    again = [dataclasses.replace(s, time_nanos=s.time_nanos + 3600 * NANOS) for s in first]  # v2: the same code
    detector = SeriesDetector(SeriesKey("", "ledger", "", kind), ProcessorConfig())
    for summary in first:
        detector.update(summary, "v1")
    assert detector.status.flagged
    assert detector.flagged_since is not None
    flagged_at = detector.flagged_since - detector.segment_start
    assert flagged_at >= 1200
    verdicts = [detector.update(summary, "v2").fix for summary in again]
    assert all(f is not None and f.verdict is FixVerdict.PENDING for f in verdicts[:30])  # not at 20 minutes
    fix = verdicts[-1]
    assert fix is not None
    assert fix.age_seconds == flagged_at + 600
    assert fix.verdict is FixVerdict.NOT_FIXED
    assert fix.after is not None
    assert fix.before.delay_rate is not None
    assert fix.before.delay_rate > 0.001 * NANOS
    assert fix.after.top_site == fix.before.top_site == fix.sites[0]
    assert detector.report().status.flagged


@pytest.mark.parametrize("kind", KINDS)
def test_a_process_older_than_the_window_is_compared_from_its_start(kind: ProfileKind) -> None:
    # A 20-second window holds neither v1's first 60 s nor v2's: both are kept (with their sites'
    # cumulative delay) for the comparison, and survive a state round trip.
    small = dataclasses.replace(demo_config(), window_seconds=20)
    entries = profiles("v1", kind) + profiles("v2-fixed", kind)
    detector = SeriesDetector(key(kind), small)
    for summary in entries[:55]:
        detector.update(summary)
    assert detector._early is not None
    state = json.loads(json.dumps(detector.to_state(), allow_nan=False))
    detector = SeriesDetector.from_state(key(kind), small, state)
    for summary in entries[55:]:
        detector.update(summary)
    fix, whole = detector.report().fix, deploy(kind, "v2-fixed").report().fix
    assert fix is not None
    assert whole is not None
    assert fix.verdict is FixVerdict.FIXED
    assert fix.before == whole.before
    assert fix.after is not None
    assert whole.after is not None
    assert fix.after.delay_rate == whole.after.delay_rate
