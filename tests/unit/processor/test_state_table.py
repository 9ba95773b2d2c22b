"""The series table (bounds, events, deferred evaluation) and its reader of the old snapshot format, fed real
corpus profiles."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from old_snapshot import BUNDLED, snapshot, write_snapshot

from otel_leakproc.model import ProfileKind, ProfileSummary, SeriesKey
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.state import SNAPSHOT_FILE, SeriesTable, StateError
from otel_leakproc.receiver.decode import DecodeLimits, decode_profile
from otel_leakproc.state.legacy import read_snapshot, restore_legacy

CORPUS = Path(__file__).resolve().parents[2] / "testdata" / "corpus"


def summaries(series: str) -> list[ProfileSummary]:
    return [decode_profile(p.read_bytes(), DecodeLimits()) for p in sorted((CORPUS / series).glob("*.pb.gz"))]


LEAK = summaries("steady_leak/heap")
RESTART = summaries("restart/heap")  # ok for a while, suspected, then the process restarts


def key(service: str) -> SeriesKey:
    return SeriesKey("t", service, "i", ProfileKind.HEAP)


def test_events_once_per_transition_with_the_resource() -> None:
    table = SeriesTable(ProcessorConfig(), max_series=10)
    events = []
    for summary in LEAK:
        update = table.update(key("checkout"), {"service.name": "checkout"}, summary)
        if update.event is not None:
            events.append(update.event)
    assert [e.name for e in events] == ["leak.suspected", "leak.confirmed"]
    assert events[0].resource == {"service.name": "checkout"}
    assert events[0].report.top_growers[0].function == "main.(*orderHistoryArchive).appendOrderSnapshot"
    assert events[1].previous.value == "suspected"


def test_least_recently_updated_series_is_evicted() -> None:
    table = SeriesTable(ProcessorConfig(), max_series=2)
    table.update(key("a"), {}, LEAK[0])
    table.update(key("b"), {}, LEAK[0])
    table.update(key("a"), {}, LEAK[1])  # a is now the most recent
    update = table.update(key("c"), {}, LEAK[0])
    assert update.evicted == (key("b"),)
    assert [t.key.service for t in table] == ["a", "c"]
    assert table.evicted_total == 1


def test_an_old_snapshot_resumes_every_series_exactly(tmp_path: Path) -> None:
    config = ProcessorConfig()
    table = SeriesTable(config, max_series=10)
    for summary in LEAK[:30]:
        table.update(key("a"), {"k8s.pod.name": "a-0"}, summary)
    table.update(key("b"), {}, LEAK[0])
    path = tmp_path / SNAPSHOT_FILE
    write_snapshot(snapshot(table), path)
    restored = SeriesTable(config, max_series=10)
    assert restore_legacy(path, restored) == 2
    assert [t.key.service for t in restored] == ["a", "b"]  # LRU order kept
    a = restored.get(key("a"))
    assert a is not None
    assert a.resource == {"k8s.pod.name": "a-0"}
    for summary in LEAK[30:]:
        original = table.update(key("a"), {}, summary).series.report
        again = restored.update(key("a"), {}, summary).series.report
        assert again == original


def test_the_bundled_snapshot_of_an_older_release_restores_and_goes_on() -> None:
    """snapshot-format2.json.gz holds detector state version 2: the first 30 profiles of the steady leak."""
    table = SeriesTable(ProcessorConfig(), max_series=10)
    assert restore_legacy(BUNDLED, table) == 1
    leak = SeriesKey("default", "checkout", "pod-1", ProfileKind.HEAP)
    tracked = table.get(leak)
    assert tracked is not None
    assert tracked.resource == {"service.name": "checkout", "service.instance.id": "pod-1"}
    assert tracked.report.profiles == 30
    for summary in LEAK[30:]:
        report = table.update(leak, {}, summary).series.report
    assert report.profiles == 60
    assert report.status.value == "confirmed"
    assert report.top_growers[0].function == "main.(*orderHistoryArchive).appendOrderSnapshot"


def test_reading_an_old_snapshot_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    path = tmp_path / SNAPSHOT_FILE
    assert read_snapshot(path) is None
    assert restore_legacy(path, SeriesTable(ProcessorConfig(), max_series=10)) == 0
    path.write_bytes(gzip.compress(b"[1, 2]"))
    with pytest.raises(StateError, match="top level"):
        read_snapshot(path)
    path.write_bytes(b"\x1f\x8b truncated")
    with pytest.raises(StateError, match="not a valid snapshot"):
        read_snapshot(path)


@pytest.mark.parametrize(
    ("snapshot", "message"),
    [
        ({"format": "other", "version": 1, "series": []}, "format"),
        ({"format": "otel-leakproc-state", "version": 99, "series": []}, "version"),
        ({"format": "otel-leakproc-state", "version": 1, "series": {}}, "series"),
        ({"format": "otel-leakproc-state", "version": 1, "series": [{"tenant": "t"}]}, r"series\[0\]"),
        (
            {"format": "otel-leakproc-state", "version": 1, "series": [
                {"tenant": "t", "service": "s", "instance": "", "kind": "heap", "detector": {"version": -1}}]},
            r"series\[0\]",
        ),
    ],
)  # fmt: skip
def test_restore_refuses_bad_snapshots_and_keeps_the_table(snapshot: dict[str, object], message: str) -> None:
    table = SeriesTable(ProcessorConfig(), max_series=10)
    table.update(key("kept"), {}, LEAK[0])
    with pytest.raises(StateError, match=message):
        table.restore(snapshot)
    assert [t.key.service for t in table] == ["kept"]


def test_live_updates_of_an_ok_series_are_appended_then_settled() -> None:
    """`evaluate_every_seconds`: an ok series fed faster than that only appends; `settle` gives the verdict
    (and the event) the skipped evaluations would have given."""
    every = SeriesTable(ProcessorConfig(), max_series=10)
    statuses = [every.update(key("checkout"), {}, s).series.report.status.value for s in RESTART]
    first_flag = next(i for i, s in enumerate(statuses) if s == "suspected")
    table = SeriesTable(ProcessorConfig(evaluate_every_seconds=3600), max_series=10)
    reports = [table.update(key("checkout"), {}, s, live=True).series.report for s in RESTART[: first_flag + 1]]
    warm = next(i for i, r in enumerate(reports) if r.status.value == "ok")
    assert all(r.status.value == "ok" for r in reports[warm:])  # appended, not evaluated: still ok
    assert [r.profiles for r in reports] == list(range(1, first_flag + 2))  # the count follows every point
    assert reports[-1].last_time_nanos == RESTART[first_flag].time_nanos
    (settled,) = table.settle()
    assert settled.event is not None
    assert settled.event.name == "leak.suspected"
    assert settled.series.report.status.value == "suspected"
    assert table.settle() == []  # nothing left to evaluate
    # Once flagged, every point is evaluated again (a transition can happen on any of them).
    rest = [
        table.update(key("checkout"), {}, s, live=True).series.report.status.value for s in RESTART[first_flag + 1 :]
    ]
    assert rest == statuses[first_flag + 1 :]  # the restart and the new process's warm-up included


def test_live_updates_evaluate_every_profile_when_the_setting_is_zero() -> None:
    every = SeriesTable(ProcessorConfig(), max_series=10)
    live = SeriesTable(ProcessorConfig(evaluate_every_seconds=0), max_series=10)
    for summary in RESTART:
        a = every.update(key("checkout"), {}, summary).series.report
        b = live.update(key("checkout"), {}, summary, live=True).series.report
        assert (a.status, a.score, a.profiles) == (b.status, b.score, b.profiles)
    assert live.settle() == []


def test_a_restart_settles_the_points_appended_before_it() -> None:
    table = SeriesTable(ProcessorConfig(evaluate_every_seconds=3600), max_series=10)
    reports = [table.update(key("checkout"), {}, s, live=True).series.report for s in RESTART]
    restarted = next(i for i, r in enumerate(reports) if r.restarts)
    assert reports[restarted - 1].status.value == "ok"  # its last points were appended without a verdict
    transitions = [(old.value, new.value) for _, old, new in reports[restarted].transitions]
    assert transitions[-2:] == [("ok", "suspected"), ("suspected", "insufficient_data")]


def test_settle_in_slices_evaluates_at_least_one_series_a_call() -> None:
    table = SeriesTable(ProcessorConfig(evaluate_every_seconds=3600), max_series=10)
    for summary in RESTART[:34]:  # ok from profile 30 on: the later ones are only appended
        for service in ("a", "b", "c"):
            table.update(key(service), {}, summary, live=True)
    assert table.deferred == 3
    assert len(table.settle(deadline=0.0)) == 1  # a deadline already past still makes progress
    assert table.deferred == 2
    assert len(table.settle()) == 2
    assert table.deferred == 0
