"""The detectors on the generated series of kinds the shared corpus lacks (tests/testdata/series, issue 14).

Scored separately on the tuning set and on the held-out set (HELDOUT.md, committed before any scoring).
The assertions hold what the detectors achieved when the series were added; the series they then missed,
flagged falsely or flapped on are listed by name below (KNOWN_*), so an improvement can drop a name and
raise the bar, and a regression anywhere else fails.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from otel_leakproc.analyze import AnalyzeOptions, analyze_paths
from otel_leakproc.config import load_settings
from otel_leakproc.evaluation import BASE_SECONDS, TICK_SECONDS, Case, corpus_time, evaluate_series, summarize
from otel_leakproc.model import ProfileKind, Status
from otel_leakproc.receiver.proto import profile_pb2

SERIES = Path(__file__).parent.parent / "testdata" / "series"

pytestmark = pytest.mark.corpus

# What the detectors of main did not achieve on 2026-12-06 after the sampling-aware "stopped" test and the
# resolve hold (tests/testdata/series/README.md has the table). No series flaps any more.
KNOWN_MISSES = {
    ("trickle_leak", "heap"),  # 20 KiB/min: a heap sample every ~25 min
    ("large_object_slow_leak", "heap"),  # drew 3 heap samples where ~11 were expected
    ("deploy_does_not_fix", "heap"),  # restart at 30 cuts the history inside the 30-min warm-up, twice
}
KNOWN_FALSE_ALARMS = {
    ("cache_fill_slow", "heap"),  # held out: a cache still filling, slowly, at the end of the hour
}
KNOWN_FLAPPING: set[tuple[str, str]] = set()  # flagged -> ok -> flagged at least once
KNOWN_LATE = {  # flagged, but past the budget
    ("mostly_freed_small_leak", "heap"),  # held out: 92 KiB/min under a site that frees most of it, at 52
}
WARM_UP_TICKS = 30  # processor.heap.warmup_seconds at one profile a minute


def latency_budget(case: Case) -> int:
    """Issue 14's budget in profiles after the leak starts: a leak present from start-up within the warm-up
    plus 15; one that starts later within 30 (slow ones; steady ones are far inside it)."""
    return WARM_UP_TICKS + 15 - case.start_tick if case.start_tick < WARM_UP_TICKS else 30


@dataclass(frozen=True, slots=True)
class Scored:
    case: Case
    set: str
    statuses: tuple[Status, ...]

    @property
    def name(self) -> tuple[str, str]:
        return (self.case.scenario, self.case.kind.value)

    @property
    def flaps(self) -> int:
        cycles, flagged, dropped = 0, False, False
        for status in self.statuses:
            if status.flagged:
                cycles += dropped
                flagged, dropped = True, False
            elif flagged:
                dropped = True
        return cycles


def _labels() -> dict[str, dict[str, Any]]:
    labels: dict[str, dict[str, Any]] = json.loads((SERIES / "labels.json").read_text())
    return labels


@pytest.fixture(scope="module")
def scored() -> list[Scored]:
    settings = load_settings(None)
    options = AnalyzeOptions(keep_timeline=True, time_of=corpus_time)
    out = []
    for name, label in sorted(_labels().items()):
        for result in analyze_paths([str(SERIES / name)], settings.processor, settings.decode.to_limits(), options):
            statuses = tuple(r.status for r in result.timeline)
            out.append(Scored(evaluate_series(name, label, result), str(label["set"]), statuses))
    return out


def _heldout_names() -> set[str]:
    text = (SERIES / "HELDOUT.md").read_text()
    held = text.split("## Held-out set", 1)[1]
    return set(re.findall(r"^\| ([a-z0-9_]+) \|", held, re.MULTILINE)) - {"series"}  # minus the header


def test_split_is_the_committed_held_out_list() -> None:
    labels = _labels()
    heldout = {name for name, label in labels.items() if label["set"] == "heldout"}
    tuning = {name for name, label in labels.items() if label["set"] == "tuning"}
    assert heldout == _heldout_names()
    assert len(tuning) == 12
    assert len(heldout) == 7
    assert not heldout & tuning


def test_profiles_are_one_minute_apart_and_carry_their_version() -> None:
    for name, label in _labels().items():
        versions = {t: v["version"] for v in label["versions"] for t in range(v["first_tick"], v["last_tick"] + 1)}
        files = sorted((SERIES / name / "heap").glob("*.pb.gz"))
        assert len(files) == 60, name
        for number, file in enumerate(files):
            profile = profile_pb2.Profile()
            profile.ParseFromString(gzip.decompress(file.read_bytes()))
            assert profile.time_nanos == (BASE_SECONDS + number * TICK_SECONDS) * 10**9, file
            comments = [profile.string_table[i] for i in profile.comment]
            assert comments == [f"service.version={versions[number]}"], file
            assert profile.period == 512 * 1024, file  # Go's default heap sampling, not raised for the test


@pytest.mark.parametrize("subset", ["tuning", "heldout"])
def test_labelled_problems_flagged_and_named(scored: list[Scored], subset: str) -> None:
    rows = [s for s in scored if s.set == subset]
    for s in rows:
        if s.case.positive and s.name not in KNOWN_MISSES:
            assert s.case.detected, s.name
            assert s.case.top1_ok, (s.name, s.case.top1_at_flag, s.case.top1_final)
            assert s.case.latency is not None
            if s.name in KNOWN_LATE:
                assert s.case.latency > latency_budget(s.case), f"{s.name} is in time now: remove it from KNOWN_LATE"
            else:
                assert s.case.latency <= latency_budget(s.case), (s.name, s.case.latency)
        if s.name in KNOWN_MISSES:  # listed misses are real misses; drop the name when one is found
            assert not s.case.detected, f"{s.name} is flagged now: remove it from KNOWN_MISSES"


@pytest.mark.parametrize("subset", ["tuning", "heldout"])
def test_no_false_alarm_beyond_the_known_ones(scored: list[Scored], subset: str) -> None:
    rows = [s for s in scored if s.set == subset]
    for s in rows:
        if s.name in KNOWN_FALSE_ALARMS:
            assert s.case.false_alarm, f"{s.name} is quiet now: remove it from KNOWN_FALSE_ALARMS"
        else:
            assert not s.case.false_alarm, s.name


@pytest.mark.parametrize("subset", ["tuning", "heldout"])
def test_no_flapping_beyond_the_known_ones(scored: list[Scored], subset: str) -> None:
    for s in (s for s in scored if s.set == subset):
        if s.name in KNOWN_FLAPPING:
            assert s.flaps >= 1, f"{s.name} no longer flaps: remove it from KNOWN_FLAPPING"
        else:
            assert s.flaps == 0, s.name


def test_summary_per_set(scored: list[Scored]) -> None:
    tuning = summarize([s.case for s in scored if s.set == "tuning"])
    heldout = summarize([s.case for s in scored if s.set == "heldout"])
    # Tuning: 10 labelled problem series (7 heap leaks, a goroutine leak, contention in mutex and block);
    # held-out: 5 heap leaks. The goroutine series of every scenario are negatives (18 quiet ones).
    assert tuning["series"] == 26  # 12 heap, 12 goroutine, mutex, block
    assert tuning["true_positives"] >= 9
    assert tuning["false_negatives"] <= 1
    assert tuning["false_alarms"] <= 1
    assert tuning["top1_accuracy"] == 1.0
    assert heldout["series"] == 14
    assert heldout["true_positives"] >= 3
    assert heldout["false_negatives"] <= 3
    assert heldout["false_alarms"] <= 2
    assert heldout["top1_accuracy"] == 1.0


def test_goroutine_and_contention_series(scored: list[Scored]) -> None:
    by_name = {s.name: s for s in scored}
    slow = by_name[("goroutine_slow_leak", "goroutine")].case
    assert slow.top1_final == "main.(*inventorySyncer).awaitSyncAck"
    assert slow.latency is not None
    assert slow.latency <= 8
    assert by_name[("late_contention", "mutex")].case.top1_final == "main.(*ledgerService).rebuildBalances"
    assert by_name[("late_contention", "block")].case.top1_final == "main.(*ledgerService).readBalance"
    quiet = [s for s in scored if s.case.kind is ProfileKind.GOROUTINE and not s.case.positive]
    assert len(quiet) == 18
    assert not [s.name for s in quiet if s.case.flagged_tick is not None]
