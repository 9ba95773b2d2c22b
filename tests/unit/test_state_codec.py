"""The state codec and records (`otel_leakproc.state`): values round-trip exactly, frames detect torn and
flipped bytes, point records carry a whole summary, and every corpus series reports the same after a
checkpoint round trip at every point as without one."""

from __future__ import annotations

import math
import random
import struct
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from otel_leakproc.analyze import KIND_DIRS, load_series
from otel_leakproc.model import ProfileKind, ProfileSummary, SeriesKey, SiteValue
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.detector import SeriesDetector
from otel_leakproc.receiver.decode import DecodeLimits
from otel_leakproc.state import records
from otel_leakproc.state.codec import (
    _DTYPES,
    CodecError,
    Columns,
    _Encoder,
    decode_value,
    encode_value,
    frame,
    read_frames,
)
from otel_leakproc.state.records import (
    RecordType,
    checkpoint_frame,
    checkpoint_head,
    checkpoint_state,
    key_to_plain,
    point_frame,
    point_from_payload,
    point_payload,
    point_route,
    renumbered_point_frame,
    summary_to_plain,
)

CORPORA = [Path(__file__).parents[1] / "testdata" / "corpus", Path("/work/shared/corpus")]
CONFIG = ProcessorConfig()


def test_values_round_trip_exactly_including_packed_arrays_and_interned_strings() -> None:
    value = {
        "none": None,
        "flags": [True, False],
        "ints": [0, -1, 127, -129, 1 << 40, -(1 << 62)],
        "small": [1, 2, 3, 4],
        "big": 1 << 80,
        "floats": [0.1, -2.5, math.inf, 1e300, 5e-324],
        "mixed": [1, 1.5, "x", None],
        "names": ["main.leak", "main.leak", "main.leak"],
        "b64": "QUJD" * 20,
        "not_b64": "main.(*T).f" * 8,
        "bytes": b"\x00\xff",
        "nested": {"a": [{"b": {}}], "": ""},
        "unicode": "naïve ✓",
    }
    assert decode_value(encode_value(value)) == value
    nan = decode_value(encode_value([math.nan] * 5))
    assert all(math.isnan(v) for v in nan)
    # Interning: the second and third copy of a name cost a few bytes, not the name again.
    assert len(encode_value(["github.com/acme/shop.(*Orders).append"] * 3)) < 50


def test_base64_strings_can_travel_as_blobs_beside_the_value() -> None:
    value = {"data": "QUJD" * 20, "again": "QUJD" * 20, "name": "main.leak"}
    blobs: list[bytes] = []
    data = encode_value(value, blobs)
    assert blobs == [b"ABC" * 20]  # once: the second copy is an interned reference
    assert b"ABC" not in data
    assert decode_value(data, blobs) == value
    with pytest.raises(CodecError, match="blob reference without blobs"):
        decode_value(data)


def test_non_plain_values_are_refused_with_their_path() -> None:
    with pytest.raises(TypeError, match=r"\$\.a\[1\]: set is not plain data"):
        encode_value({"a": [1, {2}]})


def test_frames_detect_torn_and_flipped_bytes_and_keep_the_good_prefix() -> None:
    good = frame(RecordType.POINT, encode_value({"x": list(range(300))}))
    second = frame(RecordType.POINT, b"second")
    data = good + second
    frames, tail = read_frames(data)
    assert [f.payload for f in frames][1] == b"second"
    assert tail is None
    frames, tail = read_frames(data[:-3])
    assert len(frames) == 1
    assert tail is not None
    assert tail.offset == len(good)
    assert "torn record" in tail.reason
    flipped = bytearray(data)
    flipped[len(good) + 15] ^= 1
    frames, tail = read_frames(bytes(flipped))
    assert len(frames) == 1
    assert tail is not None
    assert tail.reason == "checksum mismatch"
    header = bytearray(good)
    header[2] = 99  # a codec version from the future
    frames, tail = read_frames(bytes(header))
    assert frames == []
    assert tail is not None
    assert "version 99" in tail.reason
    with pytest.raises(CodecError):
        decode_value(encode_value([1, 2, 3])[:-1])


def _series_dirs() -> list[Path]:
    found = []
    for corpus in CORPORA:
        if corpus.is_dir():
            found += sorted(p for p in corpus.glob("*/*") if p.is_dir() and p.name in KIND_DIRS)
    return found


@cache
def _summaries(folder: Path) -> tuple[ProfileSummary, ...]:
    by_kind, errors = load_series(sorted(p for p in folder.iterdir() if p.is_file()), DecodeLimits(), None)
    assert not errors, errors
    ((_, summaries),) = by_kind.items()
    return tuple(summaries)


def test_the_corpus_is_there() -> None:
    assert len(_series_dirs()) >= 20


@pytest.mark.parametrize("folder", _series_dirs(), ids=lambda p: f"{p.parents[1].name}/{p.parent.name}/{p.name}")
def test_every_corpus_series_reports_the_same_through_records_at_every_point(folder: Path) -> None:
    summaries = _summaries(folder)
    kind = summaries[0].kind
    key = SeriesKey("t", folder.parent.name, "pod-1", kind)
    reference = SeriesDetector(key, CONFIG)
    restored = SeriesDetector(key, CONFIG)
    resource = {"service.name": folder.parent.name}
    for seq, summary in enumerate(summaries, 1):
        # The journal record gives back the same summary.
        payload = read_frames(point_frame(seq, key, resource, summary))[0][0].payload
        assert payload == encode_value(
            {"q": seq, "k": key_to_plain(key), "r": resource, "s": summary_to_plain(summary)}
        )
        assert point_route(payload) == (seq, key)
        point = point_from_payload(payload)
        assert point.summary == summary
        assert point.resource == resource
        expected = reference.update(summary)
        assert restored.update(point.summary) == expected
        # A checkpoint here and a restore from it: same report, same timeline, and it goes on the same.
        (record,), tail = read_frames(checkpoint_frame(seq, key, resource, restored.to_state()))
        assert tail is None
        assert record.type == RecordType.CHECKPOINT
        head = checkpoint_head(record.payload)
        assert (head.seq, head.key, head.resource) == (seq, key, resource)
        restored = SeriesDetector.from_state(key, CONFIG, checkpoint_state(record.payload))
        assert restored.report() == expected
        assert restored.timeline() == reference.timeline()


def test_a_checkpoint_head_is_read_without_the_detector_state() -> None:
    key = SeriesKey("t", "svc", "pod", ProfileKind.HEAP)
    payload = read_frames(checkpoint_frame(7, key, {"a": "b"}, {"report": None, "x": [1.0] * 10}))[0][0].payload
    cut = payload[: 4 + struct.unpack_from("<I", payload)[0]]  # the head only
    assert checkpoint_head(cut).seq == 7


def test_float_lists_are_narrowed_only_where_exact_and_string_lists_share_strings() -> None:
    whole = [float(1 << 40), 3.0, 0.0, -7.0, 12_345_678.0]
    halves = [0.5, 1.25, -3.75, 1e6 + 0.5]
    fine = [0.1, 1e300, -2.5e-300, 3.0]
    special = [0.0, -0.0, 1.0, 2.0]  # -0.0 must keep its sign
    nan = [math.nan, 1.0, 2.0, 3.0]
    names = ["github.com/acme/shop.(*A).run", "github.com/acme/shop.(*A).stop", "héllo/ü", "héllo/ü", "x"]
    value = {"whole": whole, "halves": halves, "fine": fine, "special": special, "nan": nan, "names": names}
    data = encode_value(value)
    back = decode_value(data)
    assert back["names"] == names
    for key in ("whole", "halves", "fine", "special"):
        assert [struct.pack("<d", v) for v in back[key]] == [struct.pack("<d", v) for v in value[key]], key
    assert math.isnan(back["nan"][0])
    assert back["nan"][1:] == nan[1:]
    # Narrower than float64: 5 whole numbers as int64 (40 bits), 4 halves as float32.
    assert len(encode_value(whole)) == 3 + 5 * 8
    assert len(encode_value(halves)) == 3 + 4 * 4
    coded = encode_value(names)  # the repeat is a reference, not a second copy
    assert coded.count("héllo/ü".encode()) == 1
    both = encode_value([names, ["x", "y", "héllo/ü", "x"], ["a\0b", "c", "d", "e"]])
    assert decode_value(both) == [names, ["x", "y", "héllo/ü", "x"], ["a\0b", "c", "d", "e"]]
    assert both.count("héllo/ü".encode()) == 1


def test_short_numeric_lists_are_packed_without_numpy_into_the_same_bytes() -> None:
    """Lists up to `_SHORT_ARRAY` long take a pure-Python path (a point record's few site values): it must
    choose the same type and write the same bytes as the numpy path longer lists take."""
    rng = random.Random(15)
    f32 = struct.unpack("<f", struct.pack("<f", 0.1))[0]
    pools = [
        [0.0, 1.0, -1.0, 127.0, -128.0, 128.0, 32767.0, 32768.0, -32769.0, float(1 << 31), float(1 << 40)],
        [float(2**53 - 1), -float(2**53 - 1), float(2**53), 1e300, -2.5e-300, 3.4028234663852886e38, 3.5e38],
        [0.5, 1.25, -3.75, f32, 0.1, 1e6 + 0.5, -0.0, math.nan, math.inf, -math.inf, 1e-46, 1e-40],
    ]
    cases = [list(p) for p in pools]
    for _ in range(3000):
        pool = rng.choice(pools[: rng.randint(1, 3)])
        cases.append([rng.choice(pool) for _ in range(rng.randint(4, 12))])
        scale = rng.choice([1, 100, 1 << 20, 1 << 40])
        cases.append([float(rng.randint(-scale, scale)) for _ in range(rng.randint(4, 12))])
    for values in cases:
        slow = bytearray()
        _Encoder(slow, None).put_floats(np.asarray(values, dtype=np.float64))
        fast = bytearray()
        _Encoder(fast, None).put_short_floats(values)
        assert fast == slow, values
        ints = [rng.randint(-(1 << rng.choice([6, 14, 30, 62])), 1 << rng.choice([6, 14, 30, 62])) for _ in values]
        short_ints = encode_value(ints)
        assert short_ints[1] == encode_value(ints * 20)[1]  # the numpy path (longer than _SHORT_ARRAY): same type
        assert short_ints[3:] == np.asarray(ints, dtype=_DTYPES[short_ints[1]]).tobytes()
        assert decode_value(short_ints) == ints


def test_point_payloads_reuse_their_series_head_and_write_the_bytes_of_the_whole_dict() -> None:
    """`point_payload` keeps the encoded key and resource of a series: on the first point and on every later
    one, and for names that are also the record's own keys, it writes what `encode_value` writes."""
    summary = ProfileSummary(
        ProfileKind.HEAP, 5, 30.0, sites=(SiteValue("s", "k", 1, 10.0), SiteValue("heap", "q", 2, 20.0))
    )
    keys = [SeriesKey("t", "svc", "pod", ProfileKind.HEAP), SeriesKey("s", "k", "r", ProfileKind.HEAP)]
    resources = [{}, {"service.name": "svc"}, {"s": "k", "q": "heap", "r": "t"}, {"service.name": "svc", "x": "y"}]
    for round_ in range(3):
        for key in keys:
            for resource in resources:
                for seq in (1, 127, 128, 1 << 40):
                    whole = {"q": seq, "k": key_to_plain(key), "r": resource, "s": summary_to_plain(summary)}
                    assert point_payload(seq, key, resource, summary) == encode_value(whole), (round_, key, resource)
                    # What an owner journals for a point another process sent it (numbered 0 there).
                    received = point_payload(0, key, resource, summary)
                    assert renumbered_point_frame(received, seq) == point_frame(seq, key, resource, summary)
        records._POINT_HEADS.clear()  # and once more from an empty cache
    for other in (b"", encode_value({"q": 1}), encode_value([1, 2]), point_payload(1, keys[0], {}, summary)[:6]):
        assert renumbered_point_frame(other, 9) is None  # not a point payload: the owner encodes the point
    for other in (b"", encode_value({"q": 1}), encode_value([1, 2]), point_payload(1, keys[0], {}, summary)[:6]):
        assert renumbered_point_frame(other, 9) is None  # not a point payload: the owner encodes the point
    with pytest.raises(TypeError, match=r"\$\.r\.bad"):
        point_payload(1, keys[0], {"bad": object()}, summary)  # type: ignore[dict-item]


def test_records_of_codec_version_1_and_detector_state_version_2_still_restore() -> None:
    """Committed records written by the release before (tests/testdata/state/*codec1*, made with its
    point_frame and checkpoint_frame from the first 41 profiles of corpus/steady_leak/heap)."""
    folder = CORPORA[0] / "steady_leak" / "heap"
    summaries = _summaries(folder)
    state_dir = Path(__file__).parents[1] / "testdata" / "state"
    (point,), tail = read_frames((state_dir / "point_codec1.bin").read_bytes())
    assert tail is None
    assert point.type == RecordType.POINT
    assert point_from_payload(point.payload).summary == summaries[40]
    (record,), tail = read_frames((state_dir / "checkpoint_codec1_state2.bin").read_bytes())
    assert tail is None
    assert record.type == RecordType.CHECKPOINT
    key = SeriesKey("t", "steady_leak", "pod-1", ProfileKind.HEAP)
    state = checkpoint_state(record.payload)
    assert state["version"] == 2
    assert state["sites"]["values"]["dtype"] == "<f8"
    restored = SeriesDetector.from_state(key, CONFIG, state)
    reference = SeriesDetector(key, CONFIG)
    for summary in summaries[:40]:
        reference.update(summary)
    # The saved report was computed by that release on float64 values, the reference's on the 16-bit levels
    # grids keep now (history.py): same verdict, figures within the levels' rounding; from the next profile on
    # both compute on the same levels.
    saved, now = restored.report(), reference.report()
    assert (saved.status, saved.first_flagged_at_nanos) == (now.status, now.first_flagged_at_nanos)
    assert [g.function for g in saved.top_growers] == [g.function for g in now.top_growers]
    assert saved.top_growers[0].current == pytest.approx(now.top_growers[0].current, rel=1e-3)
    for summary in summaries[40:]:
        assert restored.update(summary) == reference.update(summary)


@pytest.mark.parametrize(
    ("name", "scenario", "kind"),
    [("heap", "steady_leak", ProfileKind.HEAP), ("mutex", "lock_contention", ProfileKind.MUTEX)],
)
def test_checkpoints_of_detector_state_version_6_still_restore(name: str, scenario: str, kind: ProfileKind) -> None:
    """Committed checkpoints written by the release before state version 7 (tests/testdata/state/
    make_state_checkpoints.py, the first 41 profiles of a corpus series): restored, the series goes on
    exactly as one fed every profile."""
    summaries = _summaries(CORPORA[0] / scenario / name)
    state_dir = Path(__file__).parents[1] / "testdata" / "state"
    (record,), tail = read_frames((state_dir / f"checkpoint_state6_{name}.bin").read_bytes())
    assert tail is None
    key = SeriesKey("t", scenario, "pod-1", kind)
    state = checkpoint_state(record.payload)
    assert state["version"] == 6
    assert len(state["sites"]["moves"]) == len(state["sites"]["ids"]) > 0  # each value's move from the value order
    restored = SeriesDetector.from_state(key, CONFIG, state)
    reference = SeriesDetector(key, CONFIG)
    for summary in summaries[:41]:
        reference.update(summary)
    assert restored.report() == reference.report()
    for summary in summaries[41:]:
        assert restored.update(summary) == reference.update(summary)


@pytest.mark.parametrize(
    ("name", "scenario", "kind"),
    [("heap", "steady_leak", ProfileKind.HEAP), ("mutex", "lock_contention", ProfileKind.MUTEX)],
)
def test_checkpoints_of_detector_state_version_7_still_restore(name: str, scenario: str, kind: ProfileKind) -> None:
    """Committed checkpoints written by the release before state version 8 (tests/testdata/state/
    make_state_checkpoints.py, the first 41 profiles of a corpus series, checkpoint layout CB3): restored,
    the series goes on exactly as one fed every profile."""
    summaries = _summaries(CORPORA[0] / scenario / name)
    state_dir = Path(__file__).parents[1] / "testdata" / "state"
    (record,), tail = read_frames((state_dir / f"checkpoint_state7_{name}.bin").read_bytes())
    assert tail is None
    assert bytes(record.payload[:4]) == b"\xffCB3"
    key = SeriesKey("t", scenario, "pod-1", kind)
    state = checkpoint_state(record.payload)
    assert state["version"] == 7
    assert len(state["sites"]["ties"]) == (len(state["sites"]["ids"]) + 3) // 4 > 0  # 2-bit tie fields
    restored = SeriesDetector.from_state(key, CONFIG, state)
    reference = SeriesDetector(key, CONFIG)
    for summary in summaries[:41]:
        reference.update(summary)
    assert restored.report() == reference.report()
    assert restored.to_state() == reference.to_state()
    for summary in summaries[41:]:
        assert restored.update(summary) == reference.update(summary)


def test_a_checkpoint_state_leaves_its_grids_to_the_encoder_and_shares_nothing_with_the_live_series() -> None:
    """`to_state(arrays=True)` runs on the event loop; the grids' version-8 packing is done by the encoder
    (in its thread), on copies: the series moving on in between changes nothing in the record."""
    summaries = _summaries(CORPORA[0] / "steady_leak" / "heap")
    key = SeriesKey("t", "steady_leak", "pod-1", ProfileKind.HEAP)
    detector = SeriesDetector(key, CONFIG)
    for summary in summaries[:30]:
        detector.update(summary)
    state = detector.to_state(arrays=True)
    assert hasattr(state["sites"], "resolve_state")  # not packed yet
    now = checkpoint_frame(1, key, {}, state)
    for summary in summaries[30:40]:
        detector.update(summary)
    assert checkpoint_frame(1, key, {}, state) == now
    restored = SeriesDetector.from_state(key, CONFIG, checkpoint_state(read_frames(now)[0][0].payload))
    reference = SeriesDetector(key, CONFIG)
    for summary in summaries[:30]:
        reference.update(summary)
    assert restored.to_state() == reference.to_state()
    assert SeriesDetector.from_state(key, CONFIG, state).to_state() == reference.to_state()  # read as it is too


@pytest.mark.parametrize("dtype", ["<f8", "<f4", "<i8", "<i4", "<i2", "<u2", "|i1", "|u1"])
def test_a_column_block_gives_every_array_back_bit_for_bit(dtype: str) -> None:
    rng = np.random.default_rng(3)
    arrays = [
        (rng.standard_normal(n) * 1e6).astype(dtype) if dtype[1] == "f" else rng.integers(0, 100, n).astype(dtype)
        for n in (0, 1, 7, 300)
    ]
    if dtype == "<f8":
        arrays.append(np.array([np.nan, -0.0, np.inf, 5e-324]))
    block = Columns()
    offsets = [block.add(a) for a in arrays]
    back = Columns.unpack(block.pack())
    for a, at in zip(arrays, offsets, strict=True):
        got = back.get(dtype, len(a), at)
        assert got.dtype == np.dtype(dtype)
        assert got.tobytes() == a.tobytes()
    with pytest.raises(ValueError, match="past the block"):
        back.get(dtype, 10_000, 0)
    with pytest.raises(CodecError, match="does not inflate"):
        Columns.unpack(b"not deflated")


def test_a_column_block_stores_int64_as_differences_and_large_planes_as_blocks_of_their_own() -> None:
    rng = np.random.default_rng(4)
    clock = (1_790_000_000 * 10**9 + 30 * 10**9 * np.arange(300)).astype("<i8")
    wrapping = np.array([2**63 - 1, -(2**63), 0, 2**63 - 1], dtype="<i8")  # differences wrap around, exactly
    noise = rng.integers(0, 60, 4000).astype(np.uint16)  # low plane 4000 bytes: a deflate block of its own
    block = Columns()
    offsets = [block.add(clock, delta=True), block.add(wrapping, delta=True), block.add(noise)]
    shares: list[int] = []
    packed = block.pack(shares=shares)
    assert len(shares) == 3
    assert shares[0] < 100  # 300 clock readings 30 s apart: a handful of bytes
    back = Columns.unpack(packed)
    assert back.get("<i8", 300, offsets[0], delta=True).tolist() == clock.tolist()
    assert back.get("<i8", 4, offsets[1], delta=True).tolist() == wrapping.tolist()
    assert back.get("<u2", 4000, offsets[2]).tolist() == noise.tolist()
    assert Columns.unpack(block.pack()).get("<u2", 4000, offsets[2]).tolist() == noise.tolist()
    with pytest.raises(ValueError, match="delta coding"):
        Columns().add(np.arange(5, dtype="<i4"), delta=True)
    with pytest.raises(ValueError, match="delta True"):
        back.get("<f8", 4, 0, delta=True)


def test_a_column_block_lays_out_the_arrays_of_one_key_together_as_layout_says() -> None:
    arrays = [np.arange(3, dtype="|u1"), np.arange(100, dtype="<u2"), np.full(5, 7, "|u1"), np.arange(9, dtype="|u1")]
    keys = ["a", "b", None, "a"]  # the <u2 array is shuffled: its key is not used
    block = Columns()
    for array, key in zip(arrays, keys, strict=True):
        block.add(array, key=key)
    sizes = [(a.nbytes, None if Columns.shuffled(a.itemsize, len(a)) else k) for a, k in zip(arrays, keys, strict=True)]
    offsets = Columns.layout(sizes)
    assert offsets == [0, 12, 212, 3]  # the second "a" right after the first
    back = Columns.unpack(block.pack())
    for array, at in zip(arrays, offsets, strict=True):
        assert back.get(array.dtype.str, len(array), at).tolist() == array.tolist()


def test_a_checkpoint_stores_whole_float64_arrays_as_differences_and_every_other_bit_for_bit() -> None:
    key = SeriesKey("t", "s", "i", ProfileKind.HEAP)
    arrays = {
        "whole": np.array([3.0, -7.0, 0.0, 2.0**52, 1e15]),
        "negative_zero": np.array([1.0, -0.0, 2.0, 3.0]),
        "nan": np.array([1.0, np.nan, 2.0, 3.0]),
        "fraction": np.array([1.0, 0.5, 2.0, 3.0]),
        "too_large": np.array([2.0**53, 1.0, 2.0, 3.0]),
        "short": np.array([1.0, 2.0]),
        "clock": np.arange(10, dtype="<i8") * 10**9,
    }
    strings = {  # lists of 8 strings or more go to the column block, joined by NUL
        "names": [f"pkg.f{i}" for i in range(7)] + ["é\u2603"],
        "blank": [""] * 9,
        "with_nul": ["a\0b"] * 8,  # stays in the JSON
        "short": ["x"] * 7,
        "mixed": ["x"] * 7 + [None],
    }
    state = {"report": None, "a": arrays, "s": strings}
    payload = read_frames(checkpoint_frame(1, key, {}, state))[0][0].payload
    index = {tuple(e[0]): e[3:] for e in records.decode_index(payload)}
    assert index[("a", "whole")] == [1]
    assert index[("a", "clock")] == [1]
    assert all(not index[("a", k)] for k in ("negative_zero", "nan", "fraction", "too_large", "short"))
    assert {k for (where, k) in index if where == "s"} == {"names", "blank"}
    assert checkpoint_state(payload)["s"] == strings
    back = checkpoint_state(payload)["a"]
    for name, array in arrays.items():
        assert back[name].dtype == array.dtype
        assert back[name].tobytes() == array.tobytes(), name


def test_a_checkpoint_keeps_the_report_deflated_in_its_head() -> None:
    key = SeriesKey("t", "s", "i", ProfileKind.HEAP)
    report = {"top": ["github.com/acme/shop/internal/orders.(*Processor).handle"] * 20}
    payload = read_frames(checkpoint_frame(5, key, {"a": "b"}, {"report": report}))[0][0].payload
    assert bytes(payload[:4]) == b"\xffCB5"
    assert len(payload) < len(str(report))  # the report is not there as text
    head = checkpoint_head(payload)
    assert (head.seq, head.key, head.resource, head.report) == (5, key, {"a": "b"}, report)
    assert checkpoint_state(payload)["report"] == report


def test_a_checkpoint_with_arrays_reads_back_and_refuses_a_bad_column_index() -> None:
    key = SeriesKey("t", "s", "i", ProfileKind.HEAP)
    state = {"report": {"a": 1}, "x": {"y": np.arange(5, dtype=np.int16), "z": [1, "two"]}, "w": np.ones(3)}
    (record,), tail = read_frames(checkpoint_frame(3, key, {}, state))
    assert tail is None
    back = checkpoint_state(record.payload)
    assert back["report"] == {"a": 1}
    assert back["x"]["z"] == [1, "two"]
    assert back["x"]["y"].tolist() == [0, 1, 2, 3, 4]
    assert back["w"].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(TypeError, match=r"x\.bad: an array of 2 dimensions"):
        checkpoint_frame(3, key, {}, {"report": None, "x": {"bad": np.ones((2, 2))}})
    torn = bytes(record.payload)[:-8]
    with pytest.raises(CodecError):
        checkpoint_state(torn)
