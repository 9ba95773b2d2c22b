"""Detector persistence (`to_state` / `from_state`) and `timeline`, on real corpus profile series.

A restored detector must be indistinguishable from the original: the same report right away, and the
same reports for every profile that follows. The state goes through JSON in every test, since that is
what the service's snapshot file does with it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from otel_leakproc.model import ProfileKind, ProfileSummary, SeriesKey, SiteValue, Status
from otel_leakproc.processor import _grid_pack
from otel_leakproc.processor import history as history_module
from otel_leakproc.processor.config import HeapConfig, ProcessorConfig
from otel_leakproc.processor.detector import STATE_VERSION, SeriesDetector, _pack, _unpack
from otel_leakproc.receiver.decode import DecodeLimits, decode_profile
from otel_leakproc.state.records import resolve_state

CORPUS = Path(__file__).parents[2] / "testdata" / "corpus"
NANOS = 1_000_000_000
CONFIG = ProcessorConfig()

# (folder, kind): a heap leak, a restart, a goroutine leak, a goroutineleak profile, mutex and block.
SERIES = [
    ("steady_leak/heap", ProfileKind.HEAP),
    ("restart/heap", ProfileKind.HEAP),
    ("goroutine_leak/goroutine", ProfileKind.GOROUTINE),
    ("goroutineleak_go127/goroutineleak", ProfileKind.GOROUTINELEAK),
    ("lock_contention/mutex", ProfileKind.MUTEX),
    ("lock_contention/block", ProfileKind.BLOCK),
]
# Where the tests cut a series: before any profile, while collecting, and inside flagged stretches.
SPLITS = (0, 2, 7, 20, 31, 36, 45)


@cache
def corpus_series(folder: str, kind: ProfileKind) -> tuple[ProfileSummary, ...]:
    files = sorted((CORPUS / folder).glob("*.pb.gz"))
    assert files, folder
    summaries = [decode_profile(f.read_bytes(), DecodeLimits(), kind_hint=kind) for f in files]
    assert all(s.kind is kind for s in summaries)
    return tuple(sorted(summaries, key=lambda s: s.time_nanos))


def key_for(kind: ProfileKind) -> SeriesKey:
    return SeriesKey("tenant", "svc", "pod-1", kind)


def round_trip(detector: SeriesDetector, config: ProcessorConfig = CONFIG) -> SeriesDetector:
    state = json.loads(json.dumps(detector.to_state(), allow_nan=False))
    return SeriesDetector.from_state(detector.key, config, state)


def assert_plain(value: Any) -> None:
    """Only dict/list/str/int/float/bool/None, exactly those types (no numpy, no enums, no tuples)."""
    if value is None:
        return
    assert type(value) in (dict, list, str, int, float, bool), type(value)
    if isinstance(value, dict):
        for k, v in value.items():
            assert type(k) is str
            assert_plain(v)
    elif isinstance(value, list):
        for v in value:
            assert_plain(v)


def assert_continues_exactly(
    original: SeriesDetector, restored: SeriesDetector, rest: Sequence[ProfileSummary]
) -> None:
    """The restored detector reports what the original does, now and after every remaining profile."""
    assert restored.report() == original.report()
    assert restored.timeline() == original.timeline()
    for summary in rest:
        assert restored.update(summary) == original.update(summary)
    assert restored.to_state() == original.to_state()


@pytest.mark.parametrize(("folder", "kind"), SERIES)
@pytest.mark.parametrize("split", SPLITS)
def test_restored_detector_continues_exactly_like_the_original(folder: str, kind: ProfileKind, split: int) -> None:
    series = corpus_series(folder, kind)
    original = SeriesDetector(key_for(kind), CONFIG)
    for summary in series[:split]:
        original.update(summary)
    state = original.to_state()
    assert_plain(state)
    assert state["version"] == STATE_VERSION

    assert_continues_exactly(original, round_trip(original), series[split:])


@pytest.mark.parametrize(("folder", "kind"), SERIES)
@pytest.mark.parametrize("split", [7, 31])
def test_round_trip_of_a_grid_in_its_sparse_form(
    monkeypatch: pytest.MonkeyPatch, folder: str, kind: ProfileKind, split: int
) -> None:
    """A grid past its dense row bound (here 0: sparse from the first name) round-trips too, and continues exactly."""
    monkeypatch.setattr(history_module, "MAX_GRID_ROWS", 0)
    series = corpus_series(folder, kind)
    original = SeriesDetector(key_for(kind), CONFIG)
    for summary in series[:split]:
        original.update(summary)
    assert original._sites.overflow or original._groups.overflow
    assert_continues_exactly(original, round_trip(original), series[split:])


class _NumpyGridValues:
    """`_grid_pack` as `history` sees it, but for `grid_values`, which takes nothing: every export to the numpy
    references (`presence_of_ids_numpy`, `values_by_width_numpy`)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_grid_pack, name)

    @staticmethod
    def grid_values(*args: Any) -> Any:
        return NotImplemented


def _arrays_alike(got: Any, reference: Any, path: str = "state") -> None:
    """The same nested state: dicts with their keys in the same order, arrays of one dtype and bytes."""
    assert type(got) is type(reference), path
    if isinstance(reference, dict):
        assert list(got) == list(reference), path
        for key, value in reference.items():
            _arrays_alike(got[key], value, f"{path}.{key}")
    elif isinstance(reference, np.ndarray):
        assert (got.dtype, got.tobytes()) == (reference.dtype, reference.tobytes()), path
    else:
        assert got == reference, path


@pytest.mark.parametrize(("folder", "kind"), SERIES)
@pytest.mark.parametrize("rows", [None, 0])
def test_grid_states_are_the_same_with_the_c_forms_as_with_the_numpy_references(
    monkeypatch: pytest.MonkeyPatch, folder: str, kind: ProfileKind, rows: int | None
) -> None:
    """A state's grids (presence bitmaps, floors, widths, groups) are what the numpy references give, in the
    JSON form and in the arrays a checkpoint encodes, for dense grids (every name at every point) and sparse
    ones (`rows` 0: names that come and go)."""
    if rows is not None:
        monkeypatch.setattr(history_module, "MAX_GRID_ROWS", rows)
    detector = SeriesDetector(key_for(kind), CONFIG)
    for summary in corpus_series(folder, kind)[:31]:
        detector.update(summary)
    taken = []

    class Counted(_NumpyGridValues):
        @staticmethod
        def grid_values(*args: Any) -> Any:
            got = _grid_pack.grid_values(*args)
            taken.append(got is not NotImplemented)
            return got

    monkeypatch.setattr(history_module, "_grid_pack", Counted())
    plain, arrays = detector.to_state(), resolve_state(detector.to_state(arrays=True))
    assert taken
    assert all(taken)  # (every grid the C form's)
    monkeypatch.setattr(history_module, "_grid_pack", _NumpyGridValues())
    assert detector.to_state() == plain
    _arrays_alike(arrays, resolve_state(detector.to_state(arrays=True)))
    assert any(len(g["floor"]) for g in (arrays["sites"], arrays["groups"]) if g)  # (values were written)


def test_state_written_with_a_longer_window_keeps_the_newest_points() -> None:
    series = corpus_series("steady_leak/heap", ProfileKind.HEAP)
    original = SeriesDetector(key_for(ProfileKind.HEAP), CONFIG)
    for summary in series[:30]:
        original.update(summary)
    short = ProcessorConfig(max_points=10)
    restored = SeriesDetector.from_state(original.key, short, json.loads(json.dumps(original.to_state())))
    reference = SeriesDetector(key_for(ProfileKind.HEAP), short)
    for summary in series[:30]:
        reference.update(summary)
    assert restored.timeline() == reference.timeline()
    assert [p.time_nanos for p in restored.points] == [s.time_nanos for s in series[20:30]]
    for summary in series[30:]:
        assert restored.update(summary).top_growers == reference.update(summary).top_growers


@pytest.mark.parametrize(("folder", "kind"), SERIES)
def test_series_ends_flagged_where_expected_so_the_round_trip_covered_flags(folder: str, kind: ProfileKind) -> None:
    """Guards the test above: the series reach flagged states, so hysteresis state was carried across."""
    series = corpus_series(folder, kind)
    detector = SeriesDetector(key_for(kind), CONFIG)
    flagged_at = [i for i, s in enumerate(series) if detector.update(s).status.flagged]
    assert flagged_at
    # Some split point of the test above comes right after a flagged profile: the state written there
    # is a flagged one.
    assert any(split - 1 in flagged_at for split in SPLITS)


def test_restart_state_survives_the_round_trip() -> None:
    series = corpus_series("restart/heap", ProfileKind.HEAP)
    original = SeriesDetector(key_for(ProfileKind.HEAP), CONFIG)
    for summary in series:
        original.update(summary)
    assert original.restarts >= 1
    restored = round_trip(original)
    assert restored.restarts == original.restarts
    assert restored.report().evidence["last_restart"] == original.last_restart_reason != ""
    assert restored.report() == original.report()


def test_ignored_profiles_and_memory_limit_survive_and_limit_can_be_overridden() -> None:
    series = corpus_series("steady_leak/heap", ProfileKind.HEAP)
    config = ProcessorConfig(heap=HeapConfig(warmup_seconds=600))
    original = SeriesDetector(key_for(ProfileKind.HEAP), config, memory_limit_bytes=512 * 1024 * 1024)
    for summary in series[:40]:
        original.update(summary)
    original.update(series[10])  # out of order: ignored and counted
    assert original.report().evidence["ignored_out_of_order"] == 1
    restored = round_trip(original, config)
    assert restored.report() == original.report()
    assert restored.memory_limit_bytes == 512 * 1024 * 1024
    assert restored.update(series[40]) == original.update(series[40])
    assert original.report().time_to_limit_seconds is not None

    state = json.loads(json.dumps(original.to_state()))
    lower = SeriesDetector.from_state(original.key, config, state, memory_limit_bytes=256 * 1024 * 1024)
    assert lower.memory_limit_bytes == 256 * 1024 * 1024
    ttl_lower = lower.update(series[41]).time_to_limit_seconds
    ttl_original = original.update(series[41]).time_to_limit_seconds
    assert ttl_lower is not None
    assert ttl_original is not None
    assert ttl_lower < ttl_original


def test_empty_detector_round_trips() -> None:
    original = SeriesDetector(key_for(ProfileKind.MUTEX), CONFIG)
    state = json.loads(json.dumps(original.to_state()))
    assert state["points"]["time_nanos"]["n"] == 0
    assert state["report"] is None
    restored = SeriesDetector.from_state(original.key, CONFIG, state)
    assert restored.report() == original.report()
    assert restored.timeline() == []


def test_numpy_scalars_in_evidence_are_written_as_plain_numbers() -> None:
    series = corpus_series("lock_contention/mutex", ProfileKind.MUTEX)
    detector = SeriesDetector(key_for(ProfileKind.MUTEX), CONFIG)
    for summary in series[:10]:
        detector.update(summary)
    detector.report().evidence.trend_z = np.float64(1.5)  # type: ignore[assignment]
    detector.report().evidence.extra["status_seen"] = Status.OK
    state = detector.to_state()
    assert_plain(state)
    assert state["report"]["evidence"]["trend_z"] == 1.5
    assert type(state["report"]["evidence"]["trend_z"]) is float
    assert state["report"]["evidence"]["status_seen"] == "ok"


def _state_after(count: int, kind: ProfileKind = ProfileKind.HEAP) -> dict[str, Any]:
    folder = {ProfileKind.HEAP: "steady_leak/heap", ProfileKind.MUTEX: "lock_contention/mutex"}[kind]
    detector = SeriesDetector(key_for(kind), CONFIG)
    for summary in corpus_series(folder, kind)[:count]:
        detector.update(summary)
    state: dict[str, Any] = json.loads(json.dumps(detector.to_state()))
    return state


@pytest.mark.parametrize("version", [0, STATE_VERSION + 1, "1", None])
def test_wrong_version_is_rejected_with_a_clear_message(version: object) -> None:
    state = _state_after(5)
    state["version"] = version
    with pytest.raises(ValueError, match=rf"unsupported version {version!r} \(expected {STATE_VERSION}\)"):
        SeriesDetector.from_state(key_for(ProfileKind.HEAP), CONFIG, state)


def test_version_1_state_is_refused_with_a_clear_message() -> None:
    """Version 1 (one record per point) is not read: the service sets such a snapshot aside, starts empty."""
    state = _state_after(5)
    state["version"] = 1
    expected = rf"unsupported version 1 \(expected {STATE_VERSION}\): written by an older release"
    with pytest.raises(ValueError, match=expected):
        SeriesDetector.from_state(key_for(ProfileKind.HEAP), CONFIG, state)


def test_missing_version_is_rejected() -> None:
    state = _state_after(5)
    del state["version"]
    with pytest.raises(ValueError, match="unsupported version None"):
        SeriesDetector.from_state(key_for(ProfileKind.HEAP), CONFIG, state)


def test_state_of_another_kind_is_rejected() -> None:
    state = _state_after(5, ProfileKind.MUTEX)
    with pytest.raises(ValueError, match="written for kind 'mutex', not 'heap'"):
        SeriesDetector.from_state(key_for(ProfileKind.HEAP), CONFIG, state)


def _drop_points(s: dict[str, Any]) -> None:
    del s["points"]


def _bad_name_index(s: dict[str, Any]) -> None:
    s["sites"]["names"][0] = 10_000


def _widest_group(s: dict[str, Any]) -> tuple[str, str]:
    """The sites grid's widest group of differences from each name's floor, and its dtype (state version 8)."""
    width = max(s["sites"]["values"], key=int)
    return width, "|u1" if int(width) <= 8 else "<u2"


def _values_mismatch(s: dict[str, Any]) -> None:
    width, dtype = _widest_group(s)
    s["sites"]["values"][width] = _pack(_unpack(s["sites"]["values"][width], dtype)[:-1])


def _difference_past_its_width(s: dict[str, Any]) -> None:
    width, dtype = _widest_group(s)
    differences = _unpack(s["sites"]["values"][width], dtype).copy()
    differences[0] = (1 << int(width)) | differences[0]
    s["sites"]["values"][width] = _pack(differences)


def _group_of_no_width(s: dict[str, Any]) -> None:
    s["sites"]["values"]["17"] = s["sites"]["values"].pop(_widest_group(s)[0])


def _floors_short(s: dict[str, Any]) -> None:
    s["sites"]["floor"] = _pack(_unpack(s["sites"]["floor"], "<u2")[:-1])


def _string_total(s: dict[str, Any]) -> None:
    s["points"]["total"] = "12"


def _bad_array_data(s: dict[str, Any]) -> None:
    s["points"]["total"]["data"] = "AAAA"


def _wrong_array_length(s: dict[str, Any]) -> None:
    s["points"]["total"]["n"] += 1


def _wrong_dtype(s: dict[str, Any]) -> None:
    s["points"]["total"]["dtype"] = "<f4"


def _bad_status(s: dict[str, Any]) -> None:
    s["status"] = "leaking"


def _unordered_points(s: dict[str, Any]) -> None:
    s["points"]["time_nanos"] = _pack(_unpack(s["points"]["time_nanos"], "<i8")[::-1])


def _bad_report(s: dict[str, Any]) -> None:
    s["report"]["top_growers"] = [{"function": "f"}]


@pytest.mark.parametrize(
    "corrupt",
    [
        _drop_points,
        _bad_name_index,
        _values_mismatch,
        _difference_past_its_width,
        _group_of_no_width,
        _floors_short,
        _string_total,
        _bad_array_data,
        _wrong_array_length,
        _wrong_dtype,
        _bad_status,
        _unordered_points,
        _bad_report,
    ],
)
def test_malformed_state_raises_value_error(corrupt: Any) -> None:
    state = _state_after(12)
    corrupt(state)
    with pytest.raises(ValueError, match="malformed"):
        SeriesDetector.from_state(key_for(ProfileKind.HEAP), CONFIG, state)


def test_non_mapping_state_is_rejected() -> None:
    with pytest.raises(ValueError, match="expected a mapping, got list"):
        SeriesDetector.from_state(key_for(ProfileKind.HEAP), CONFIG, [])  # type: ignore[arg-type]


# -- timeline ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "kind"),
    [("steady_leak/heap", ProfileKind.HEAP), ("goroutine_leak/goroutine", ProfileKind.GOROUTINE)],
)
def test_timeline_of_heap_and_goroutines_is_the_totals_in_the_window(folder: str, kind: ProfileKind) -> None:
    series = corpus_series(folder, kind)
    config = ProcessorConfig(max_points=20)
    detector = SeriesDetector(key_for(kind), config)
    for summary in series:
        report = detector.update(summary)
    timeline = detector.timeline()
    assert timeline == [(s.time_nanos, s.total) for s in series[-20:]]
    assert timeline[-1][1] == report.current
    assert all(type(t) is int and type(v) is float for t, v in timeline)


def test_timeline_of_mutex_is_the_delay_rate_between_consecutive_profiles() -> None:
    series = corpus_series("lock_contention/mutex", ProfileKind.MUTEX)[:30]
    detector = SeriesDetector(key_for(ProfileKind.MUTEX), CONFIG)
    for summary in series:
        report = detector.update(summary)
    timeline = detector.timeline()
    assert len(timeline) == len(series) - 1
    expected = [
        (b.time_nanos, (b.total - a.total) / ((b.time_nanos - a.time_nanos) / NANOS)) for a, b in pairwise(series)
    ]
    assert [t for t, _ in timeline] == [t for t, _ in expected]
    # The grid keeps each site's increase between profiles in 16 bits (history.py `CounterGrid`): within
    # 0.046% of it, so a rate between two profiles is within 0.046% (no error carried from larger ones).
    assert [v for _, v in timeline] == pytest.approx([v for _, v in expected], rel=4.6e-4)
    assert any(v > 0 for _, v in timeline)
    assert timeline[-1][1] == report.current


def test_timeline_of_block_counts_only_lock_waits() -> None:
    series = corpus_series("lock_contention/block", ProfileKind.BLOCK)[:30]
    detector = SeriesDetector(key_for(ProfileKind.BLOCK), CONFIG)
    for summary in series:
        report = detector.update(summary)
    timeline = detector.timeline()
    assert len(timeline) == len(series) - 1
    assert timeline[-1][1] == report.current
    all_waits = [(b.total - a.total) / ((b.time_nanos - a.time_nanos) / NANOS) for a, b in pairwise(series)]
    # The block profile also holds idle channel/select waits: the lock-wait rate is a strict part of it.
    assert all(0 <= v <= w * (1 + 1e-9) for (_, v), w in zip(timeline, all_waits, strict=True))
    assert sum(v for _, v in timeline) < sum(all_waits)


def test_timeline_of_contention_with_one_profile_is_empty() -> None:
    summary = ProfileSummary(
        kind=ProfileKind.MUTEX,
        time_nanos=1_790_000_000 * NANOS,
        total=5.0,
        cumulative=1.0,
        sites=(SiteValue("main.f", "main.go", 1, 5.0, 1.0, "sync.(*Mutex).Unlock"),),
    )
    detector = SeriesDetector(key_for(ProfileKind.MUTEX), CONFIG)
    detector.update(summary)
    assert detector.timeline() == []
