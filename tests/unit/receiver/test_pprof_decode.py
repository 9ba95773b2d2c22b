"""Tests for the pprof decoder (`receiver.decode.pprof`), `decode_profile` and bounded gzip inflation.

Every profile in tests/testdata/pprof/ is an unmodified copy of a real Go profile from the labelled corpus
(see the README there). Malformed inputs are made by parsing one of them with `profile_pb2.Profile`,
breaking one field and serialising it again, so everything else stays realistic. Expected values are
computed in the tests straight from the protobuf, not taken from the decoder.
"""

from __future__ import annotations

import gzip
import random
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import pytest
from google.protobuf.message import DecodeError

from otel_leakproc.errors import InvalidProfileError, PayloadTooLargeError, RejectReason
from otel_leakproc.model import OTHER_SITE, GoroutineGroup, ProfileKind, ProfileSummary
from otel_leakproc.receiver.decode import decode_profile, pprof_fast
from otel_leakproc.receiver.decode import pprof as pprof_module
from otel_leakproc.receiver.decode.gzip_bound import gunzip_bounded, inflate_body, is_gzip
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.decode.pprof import classify, parse_pprof, summarize_pprof
from otel_leakproc.receiver.proto import profile_pb2

TESTDATA = Path(__file__).resolve().parents[2] / "testdata"
PPROF = TESTDATA / "pprof"
GOROUTINE_TEXT = TESTDATA / "goroutine-text" / "lock_contention_0030.txt"

HEAP = "go_heap_lock_contention_0030.pb.gz"
GOROUTINE = "go_goroutine_lock_contention_0030.pb.gz"
MUTEX = "go_mutex_lock_contention_0030.pb.gz"
BLOCK = "go_block_lock_contention_0030.pb.gz"
GOROUTINELEAK = "go127_goroutineleak_0010.pb.gz"
HEAP_BEFORE_RESTART = "go_heap_restart_before_0035.pb.gz"
HEAP_AFTER_RESTART = "go_heap_restart_after_0036.pb.gz"
HEAP_STEADY_LEAK = "go_heap_steady_leak_0059.pb.gz"

LIMITS = DecodeLimits()
MIB = 1024 * 1024
SECOND = 10**9


def _corpus_time(tick: int) -> int:
    """The corpus rewrote every profile's time_nanos to 1790000000 s + tick * 60 s."""
    return (1_790_000_000 + tick * 60) * SECOND


# --- helpers ------------------------------------------------------------------------------------


@cache
def _gz(name: str) -> bytes:
    return (PPROF / name).read_bytes()


def _raw(name: str) -> bytes:
    return gzip.decompress(_gz(name))


def _profile(name: str) -> profile_pb2.Profile:
    """A fresh, mutable parse of a test profile."""
    return profile_pb2.Profile.FromString(_raw(name))


def _decode(
    data: bytes,
    limits: DecodeLimits = LIMITS,
    *,
    kind_hint: ProfileKind | None = None,
    time_fallback_nanos: int | None = None,
    labels: Mapping[str, str] | None = None,
    alloc_cumulative: bool = True,
) -> ProfileSummary:
    return decode_profile(
        data,
        limits,
        kind_hint=kind_hint,
        time_fallback_nanos=time_fallback_nanos,
        labels=labels,
        alloc_cumulative=alloc_cumulative,
    )


def _reject(data: bytes, limits: DecodeLimits = LIMITS, *, kind_hint: ProfileKind | None = None) -> InvalidProfileError:
    with pytest.raises(InvalidProfileError) as info:
        decode_profile(data, limits, kind_hint=kind_hint)
    return info.value


def _types(profile: profile_pb2.Profile) -> list[str]:
    return [profile.string_table[vt.type] for vt in profile.sample_type]


def _column(profile: profile_pb2.Profile, sample_type: str) -> list[int]:
    index = _types(profile).index(sample_type)
    return [sample.value[index] for sample in profile.sample]


def _user_totals(profile: profile_pb2.Profile, sample_type: str) -> Counter[str]:
    """Value per first `main.` frame from the leaf: the corpus program's user code is all in package main."""
    strings = profile.string_table
    functions = {fn.id: strings[fn.name] for fn in profile.function}
    frames = {loc.id: [functions[line.function_id] for line in loc.line] for loc in profile.location}
    totals: Counter[str] = Counter()
    for sample, value in zip(profile.sample, _column(profile, sample_type), strict=True):
        names = [name for loc_id in sample.location_id for name in frames[loc_id]]
        user = next((name for name in names if name.startswith("main.")), None)
        if value and user is not None:
            totals[user] += value
    return totals


def _leaf_names(profile: profile_pb2.Profile) -> list[str]:
    strings = profile.string_table
    functions = {fn.id: strings[fn.name] for fn in profile.function}
    leaf_function = {loc.id: functions[loc.line[0].function_id] for loc in profile.location}
    return [leaf_function[sample.location_id[0]] for sample in profile.sample]


def _location_index(profile: profile_pb2.Profile, loc_id: int) -> int:
    return next(i for i, loc in enumerate(profile.location) if loc.id == loc_id)


def _function_index(profile: profile_pb2.Profile, fn_id: int) -> int:
    return next(i for i, fn in enumerate(profile.function) if fn.id == fn_id)


def _group(summary: ProfileSummary, count: int) -> GoroutineGroup:
    matches = [g for g in summary.groups if g.count == count]
    assert len(matches) == 1, summary.groups
    return matches[0]


def _gzip_zeros(size: int) -> bytes:
    """A gzip stream of `size` zero bytes, built without ever holding them all in memory."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(MIB)
    parts = [compressor.compress(chunk) for _ in range(size // MIB)]
    parts.append(compressor.flush())
    return b"".join(parts)


# --- kinds --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "tick"),
    [
        (HEAP, ProfileKind.HEAP, 30),
        (GOROUTINE, ProfileKind.GOROUTINE, 30),
        (MUTEX, ProfileKind.MUTEX, 30),
        (BLOCK, ProfileKind.BLOCK, 30),
        (GOROUTINELEAK, ProfileKind.GOROUTINELEAK, 10),
        (HEAP_BEFORE_RESTART, ProfileKind.HEAP, 35),
        (HEAP_AFTER_RESTART, ProfileKind.HEAP, 36),
        (HEAP_STEADY_LEAK, ProfileKind.HEAP, 59),
    ],
)
def test_kind_and_time_of_each_real_profile(name: str, kind: ProfileKind, tick: int) -> None:
    summary = _decode(_gz(name))
    assert summary.kind is kind
    assert summary.time_nanos == _corpus_time(tick)
    assert summary.duration_nanos == 0
    assert summary.source_format == "pprof"
    # Sites come largest first and, with fewer sites than top_sites, cover the whole total.
    values = [site.value for site in summary.sites]
    assert values == sorted(values, reverse=True)
    assert 0 < len(summary.sites) < LIMITS.top_sites
    assert summary.other == 0
    assert sum(values) == summary.total


def test_mutex_and_block_are_told_apart_without_a_hint() -> None:
    # Both have sample types [contentions, delay]; only the stacks differ.
    mutex, block = _profile(MUTEX), _profile(BLOCK)
    assert _types(mutex) == _types(block) == ["contentions", "delay"]
    # The mutex profile charges the delay to the unlocker: every leaf is an Unlock. The block profile's
    # leaves are where goroutines waited.
    assert {leaf.rsplit(".", 1)[1] for leaf in _leaf_names(mutex)} == {"Unlock"}
    assert not any("Unlock" in leaf for leaf in _leaf_names(block))
    assert _decode(_gz(MUTEX)).kind is ProfileKind.MUTEX
    assert _decode(_gz(BLOCK)).kind is ProfileKind.BLOCK


@pytest.mark.parametrize(
    ("name", "hint"),
    [(MUTEX, ProfileKind.BLOCK), (BLOCK, ProfileKind.MUTEX), (MUTEX, ProfileKind.MUTEX), (BLOCK, ProfileKind.BLOCK)],
)
def test_kind_hint_decides_mutex_or_block(name: str, hint: ProfileKind) -> None:
    summary = _decode(_gz(name), kind_hint=hint)
    assert summary.kind is hint
    # The hint only names the kind; the figures are the same.
    assert summary.total == _decode(_gz(name)).total


def test_kind_hint_is_honoured_for_a_mutex_profile_without_samples() -> None:
    # Before any contention a mutex profile has no samples, so nothing tells it from a block profile.
    profile = _profile(MUTEX)
    del profile.sample[:]
    summary = _decode(profile.SerializeToString(), kind_hint=ProfileKind.MUTEX)
    assert summary.kind is ProfileKind.MUTEX
    assert summary.total == 0
    assert summary.sites == ()
    assert summary.cumulative == 0


@pytest.mark.parametrize("hint", [ProfileKind.MUTEX, ProfileKind.BLOCK, ProfileKind.GOROUTINE])
def test_kind_hint_cannot_change_a_heap_or_goroutine_profile(hint: ProfileKind) -> None:
    assert _decode(_gz(HEAP), kind_hint=hint).kind is ProfileKind.HEAP
    assert _decode(_gz(GOROUTINELEAK), kind_hint=hint).kind is ProfileKind.GOROUTINELEAK


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        (["alloc_objects", "alloc_space", "inuse_objects", "inuse_space"], ProfileKind.HEAP),
        (["inuse_space"], ProfileKind.HEAP),
        (["goroutine"], ProfileKind.GOROUTINE),
        (["goroutines"], ProfileKind.GOROUTINE),
        (["goroutineleak"], ProfileKind.GOROUTINELEAK),
    ],
)
def test_classify_by_sample_types(types: list[str], expected: ProfileKind) -> None:
    # Sample types decide; the (block) profile's stacks and the hint do not.
    lazy = parse_pprof(_raw(BLOCK))
    assert classify(lazy, types, None) is expected
    assert classify(lazy, types, ProfileKind.MUTEX) is expected


def test_classify_contention_uses_stacks_then_hint() -> None:
    types = ["contentions", "delay"]
    assert classify(parse_pprof(_raw(MUTEX)), types, None) is ProfileKind.MUTEX
    assert classify(parse_pprof(_raw(BLOCK)), types, None) is ProfileKind.BLOCK
    assert classify(parse_pprof(_raw(BLOCK)), types, ProfileKind.MUTEX) is ProfileKind.MUTEX
    # A hint that is neither mutex nor block does not decide.
    assert classify(parse_pprof(_raw(MUTEX)), types, ProfileKind.HEAP) is ProfileKind.MUTEX
    with pytest.raises(InvalidProfileError) as info:
        classify(parse_pprof(_raw(BLOCK)), ["contentions"], ProfileKind.BLOCK)
    assert info.value.reason is RejectReason.UNSUPPORTED


# --- heap ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [HEAP, HEAP_BEFORE_RESTART, HEAP_AFTER_RESTART, HEAP_STEADY_LEAK])
def test_heap_totals_equal_the_profile_columns(name: str) -> None:
    profile = _profile(name)
    summary = _decode(_gz(name))
    assert summary.total == sum(_column(profile, "inuse_space"))
    assert summary.total_count == sum(_column(profile, "inuse_objects"))
    assert summary.cumulative == sum(_column(profile, "alloc_objects"))
    # Sanity of the test data itself: most heap samples are allocation-only.
    assert summary.total > 10 * MIB


@pytest.mark.parametrize("name", [HEAP, HEAP_STEADY_LEAK])
def test_heap_sites_are_user_functions_with_their_inuse_bytes(name: str) -> None:
    profile = _profile(name)
    expected = _user_totals(profile, "inuse_space")
    summary = _decode(_gz(name))
    user_sites = {site.function: site.value for site in summary.sites if site.function.startswith("main.")}
    assert user_sites == dict(expected)
    for site in summary.sites:
        # Allocation helpers are never named when the stack reaches user code.
        assert not site.function.startswith(("runtime.mallocgc", "runtime.newobject", "runtime.makeslice"))
        assert site.file


def test_heap_top_site_of_the_steady_leak_is_the_leaking_function() -> None:
    top = _decode(_gz(HEAP_STEADY_LEAK)).sites[0]
    assert top.function == "main.(*orderHistoryArchive).appendOrderSnapshot"
    assert top.file == "corpusgen/main.go"
    assert top.line == 851
    assert top.value == _user_totals(_profile(HEAP_STEADY_LEAK), "inuse_space")[top.function]
    assert top.count == _user_totals(_profile(HEAP_STEADY_LEAK), "inuse_objects")[top.function]


def test_heap_cumulative_drops_across_the_restart() -> None:
    before = _decode(_gz(HEAP_BEFORE_RESTART))
    after = _decode(_gz(HEAP_AFTER_RESTART))
    assert after.time_nanos - before.time_nanos == 60 * SECOND
    assert before.cumulative is not None
    assert after.cumulative is not None
    # alloc_objects only grows within one process; the fresh process starts again from a few.
    assert after.cumulative < before.cumulative / 5


def test_heap_alloc_cumulative_false_drops_cumulative_only() -> None:
    summary = _decode(_gz(HEAP), alloc_cumulative=False)
    assert summary.cumulative is None
    assert summary.total == _decode(_gz(HEAP)).total
    # alloc_cumulative is about heap alloc_* columns; contention counts stay cumulative.
    assert _decode(_gz(MUTEX), alloc_cumulative=False).cumulative == sum(_column(_profile(MUTEX), "contentions"))


@pytest.mark.parametrize("name", [HEAP, MUTEX, BLOCK])
def test_delta_profile_has_no_cumulative(name: str) -> None:
    profile = _profile(name)
    profile.duration_nanos = 60 * SECOND
    summary = _decode(profile.SerializeToString())
    assert summary.duration_nanos == 60 * SECOND
    assert summary.cumulative is None
    assert summary.total == _decode(_gz(name)).total


# --- mutex and block ----------------------------------------------------------------------------


def test_mutex_top_site_is_the_lock_holder() -> None:
    profile = _profile(MUTEX)
    summary = _decode(_gz(MUTEX))
    assert summary.total == sum(_column(profile, "delay"))
    assert summary.total_count == sum(_column(profile, "contentions"))
    assert summary.cumulative == sum(_column(profile, "contentions"))
    top = summary.sites[0]
    assert top.function == "main.stockReconciler.reconcileWarehouseCounts"
    assert top.leaf == "sync.(*RWMutex).Unlock"
    assert top.value == _user_totals(profile, "delay")[top.function] == 8_702_720_515
    assert top.count == 3815
    assert all(site.function.startswith("main.") for site in summary.sites)


def test_block_top_site_is_the_waiter() -> None:
    profile = _profile(BLOCK)
    summary = _decode(_gz(BLOCK))
    assert summary.total == sum(_column(profile, "delay"))
    assert summary.cumulative == sum(_column(profile, "contentions"))
    top = summary.sites[0]
    # The RLock frame carries the waiter inlined into the same location; the waiter is named.
    assert top.function == "main.stockReconciler.availableToPromise"
    assert top.leaf == "sync.(*RWMutex).RLock"
    assert top.value == 363_623_115_174
    assert {site.function: site.value for site in summary.sites} == dict(_user_totals(profile, "delay"))
    assert not any(site.function.startswith(("sync.", "runtime.")) for site in summary.sites)


# --- goroutines ---------------------------------------------------------------------------------


def test_goroutine_groups_have_state_and_blocking_frame() -> None:
    profile = _profile(GOROUTINE)
    summary = _decode(_gz(GOROUTINE))
    assert summary.total == sum(_column(profile, "goroutine")) == 56
    assert summary.cumulative is None
    assert sum(g.count for g in summary.groups) == 56
    readers = summary.groups[0]
    assert readers == _group(summary, 40)
    assert readers.state == "sync.RWMutex.RLock"
    assert readers.blocking == "sync.(*RWMutex).RLock"
    assert readers.function == "main.stockReconciler.availableToPromise"
    assert (readers.file, readers.line) == ("corpusgen/main.go", 1268)
    assert readers.leaked == 0
    workers = _group(summary, 9)
    assert (workers.state, workers.function) == ("select", "main.(*orderAPIServer).orderWorker")
    # The blocking frame is outside the runtime: here the user function itself (runtime.selectgo is skipped).
    assert workers.blocking == "main.(*orderAPIServer).orderWorker"
    counts = [g.count for g in summary.groups]
    assert counts == sorted(counts, reverse=True)


def test_goroutine_groups_are_bounded_by_top_groups() -> None:
    summary = _decode(_gz(GOROUTINE), DecodeLimits(top_groups=2))
    assert [g.count for g in summary.groups] == [40, 9]
    assert summary.total == 56


def test_goroutineleak_profile_marks_every_goroutine_leaked() -> None:
    summary = _decode(_gz(GOROUTINELEAK))
    assert summary.total == sum(_column(_profile(GOROUTINELEAK), "goroutineleak")) == 45
    assert summary.cumulative is None
    [group] = summary.groups
    assert (group.state, group.function, group.count, group.leaked) == ("chan receive", "main.awaitReply", 45, 45)
    assert group.blocking == "main.awaitReply"
    assert summary.sites[0].function == "main.awaitReply"


# --- options and input forms --------------------------------------------------------------------


@pytest.mark.parametrize("name", [HEAP, GOROUTINE, MUTEX, BLOCK, GOROUTINELEAK])
def test_raw_pprof_decodes_like_gzipped(name: str) -> None:
    raw = _raw(name)
    assert not is_gzip(raw)
    assert _decode(raw) == _decode(_gz(name))
    assert decode_profile(raw, LIMITS) == _decode(_gz(name))
    assert decode_profile(_gz(name), LIMITS) == _decode(_gz(name))


def test_summarize_accepts_a_parsed_profile_message() -> None:
    assert summarize_pprof(_profile(BLOCK), LIMITS) == _decode(_gz(BLOCK))
    assert summarize_pprof(_profile(HEAP), LIMITS) == _decode(_gz(HEAP))


@pytest.mark.parametrize(("name", "top"), [(MUTEX, 1), (HEAP_STEADY_LEAK, 2), (BLOCK, 3)])
def test_top_sites_limit_folds_the_rest_into_other(name: str, top: int) -> None:
    full = _decode(_gz(name))
    assert len(full.sites) > top
    limited = _decode(_gz(name), DecodeLimits(top_sites=top))
    assert limited.sites == full.sites[:top]
    assert limited.total == full.total
    assert limited.other == full.total - sum(site.value for site in full.sites[:top])
    assert limited.other == sum(site.value for site in full.sites[top:])
    assert limited.other > 0
    assert all(site.function != OTHER_SITE for site in limited.sites)


def test_top_sites_of_one_on_the_mutex_profile() -> None:
    limited = _decode(_gz(MUTEX), DecodeLimits(top_sites=1))
    assert [site.function for site in limited.sites] == ["main.stockReconciler.reconcileWarehouseCounts"]
    assert limited.other == 167_332_388 + 30_055 + 9_080


def test_only_session_label_is_kept() -> None:
    summary = _decode(_gz(HEAP), labels={"__session_id__": "s-1", "pod": "web-0", "service.name": "shop"})
    assert summary.labels == {"__session_id__": "s-1"}
    assert _decode(_gz(HEAP)).labels == {}


def test_time_fallback_is_used_only_when_the_profile_has_no_time() -> None:
    assert _decode(_gz(HEAP), time_fallback_nanos=123).time_nanos == _corpus_time(30)
    profile = _profile(HEAP)
    profile.time_nanos = 0
    assert _decode(profile.SerializeToString(), time_fallback_nanos=123).time_nanos == 123


# --- decode_profile dispatch ----------------------------------------------------------------------


def test_decode_profile_reads_goroutine_text_dumps() -> None:
    text = GOROUTINE_TEXT.read_bytes()
    for data in (text, gzip.compress(text)):
        summary = decode_profile(data, LIMITS, time_fallback_nanos=_corpus_time(30))
        assert summary.source_format == "goroutine-text"
        assert summary.kind is ProfileKind.GOROUTINE
        assert summary.time_nanos == _corpus_time(30)
        # Same instant as the proto goroutine profile: the same 56 goroutines and 40 blocked readers.
        assert summary.total == 56
        assert _group(summary, 40).function == "main.stockReconciler.availableToPromise"
    leak = decode_profile(text, LIMITS, time_fallback_nanos=1, kind_hint=ProfileKind.GOROUTINELEAK)
    assert leak.kind is ProfileKind.GOROUTINELEAK
    # A contention hint is meaningless for a text dump and is ignored.
    hinted = decode_profile(text, LIMITS, time_fallback_nanos=1, kind_hint=ProfileKind.MUTEX)
    assert hinted.kind is ProfileKind.GOROUTINE


def test_decode_profile_needs_a_time_for_a_text_dump() -> None:
    with pytest.raises(InvalidProfileError) as info:
        decode_profile(GOROUTINE_TEXT.read_bytes(), LIMITS)
    assert info.value.reason is RejectReason.BAD_VALUES
    assert "no timestamp" in str(info.value)


@pytest.mark.parametrize("body", [b"", gzip.compress(b"")], ids=["empty", "empty-gzip"])
def test_empty_body(body: bytes) -> None:
    with pytest.raises(InvalidProfileError) as info:
        decode_profile(body, LIMITS)
    assert info.value.reason is RejectReason.EMPTY
    assert str(info.value) == "profile: empty body"


def test_raw_body_over_the_size_limit() -> None:
    raw = _raw(HEAP)
    assert decode_profile(raw, DecodeLimits(max_decompressed_bytes=len(raw))).kind is ProfileKind.HEAP
    # A size bound, like the gzip bound: PayloadTooLargeError (HTTP 413), not a plain InvalidProfileError.
    with pytest.raises(PayloadTooLargeError) as info:
        decode_profile(raw, DecodeLimits(max_decompressed_bytes=len(raw) - 1))
    assert info.value.reason is RejectReason.TOO_LARGE
    assert str(info.value) == f"profile: size {len(raw)} exceeds the limit of {len(raw) - 1} bytes"


# --- malformed gzip -----------------------------------------------------------------------------


def test_truncated_gzip() -> None:
    gz = _gz(HEAP)
    for cut in (11, len(gz) // 2, len(gz) - 1):
        error = _reject(gz[:cut])
        assert error.reason is RejectReason.BAD_GZIP
        assert str(error) == "profile: truncated gzip stream"


def test_corrupt_gzip() -> None:
    body = bytearray(_gz(HEAP))
    body[12:40] = b"\xff" * 28
    error = _reject(bytes(body))
    assert error.reason is RejectReason.BAD_GZIP
    assert str(error).startswith("profile: corrupt gzip stream (")


def test_gzip_crc_mismatch() -> None:
    body = bytearray(_gz(MUTEX))
    body[-8] ^= 0xFF  # first byte of the CRC-32 in the gzip trailer
    error = _reject(bytes(body))
    assert error.reason is RejectReason.BAD_GZIP
    assert "incorrect checksum" in str(error).lower()  # ISA-L names the CRC-32 mismatch so


def test_gzip_trailing_garbage_and_padding() -> None:
    error = _reject(_gz(MUTEX) + b"junk")
    assert error.reason is RejectReason.BAD_GZIP
    assert str(error) == "profile: trailing garbage after gzip stream"
    # Zero padding after the stream is tolerated.
    assert _decode(_gz(MUTEX) + bytes(16)) == _decode(_gz(MUTEX))


def test_gzip_bomb_stops_at_the_limit_with_little_memory() -> None:
    bomb = _gzip_zeros(200 * MIB)
    assert len(bomb) < MIB  # the upload itself is small
    limits = DecodeLimits(max_decompressed_bytes=MIB)
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLargeError) as info:
            decode_profile(bomb, limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.reason is RejectReason.TOO_LARGE
    assert str(info.value) == f"profile: decompressed size exceeds the limit of {MIB} bytes"
    # Inflating it all would take 200 MiB; the bound keeps the peak near the limit.
    assert peak < 4 * MIB, peak


def test_gzip_bomb_of_many_members_stops_at_the_limit() -> None:
    member = gzip.compress(bytes(MIB))
    bomb = member * 200
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLargeError, match=r"exceeds the limit of 1048576 bytes$"):
            decode_profile(bomb, DecodeLimits(max_decompressed_bytes=MIB))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MIB, peak


# --- gunzip_bounded -----------------------------------------------------------------------------


def test_gunzip_bounded_limit_is_inclusive() -> None:
    raw = _raw(HEAP)
    assert gunzip_bounded(_gz(HEAP), len(raw)) == raw
    with pytest.raises(PayloadTooLargeError, match=rf"^body: decompressed size exceeds the limit of {len(raw) - 1} "):
        gunzip_bounded(_gz(HEAP), len(raw) - 1)


def test_gunzip_bounded_reads_every_member() -> None:
    raw = _raw(HEAP)
    members = gzip.compress(raw[:1000]) + gzip.compress(raw[1000:])
    assert gunzip_bounded(members, len(raw)) == raw
    # The limit applies to all members together.
    with pytest.raises(PayloadTooLargeError):
        gunzip_bounded(members, len(raw) - 1)
    with pytest.raises(InvalidProfileError, match=r"^x: truncated gzip stream$"):
        gunzip_bounded(members[:-3], len(raw), "x")


def test_inflate_body_bounds_raw_and_gzipped_bodies() -> None:
    raw = _raw(MUTEX)
    assert inflate_body(raw, len(raw)) is raw
    assert inflate_body(_gz(MUTEX), len(raw)) == raw
    with pytest.raises(PayloadTooLargeError, match=rf"^upload: size {len(raw)} exceeds the limit of 100 bytes$"):
        inflate_body(raw, 100, "upload")
    # A gzip body within the limit whose content is not.
    with pytest.raises(PayloadTooLargeError, match=r"^upload: decompressed size exceeds the limit of 700 bytes$"):
        inflate_body(_gz(MUTEX), 700, "upload")
    with pytest.raises(InvalidProfileError, match=r"^upload: empty body$") as info:
        inflate_body(gzip.compress(b""), 100, "upload")
    assert info.value.reason is RejectReason.EMPTY


def test_is_gzip() -> None:
    assert is_gzip(_gz(HEAP))
    assert not is_gzip(_raw(HEAP))
    assert not is_gzip(b"\x1f")
    assert not is_gzip(b"")


# --- malformed protobuf -------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"\xff" * 64, b"\x0a\x05ab", b"not a profile at all \x00\x01"])
def test_garbage_bytes(body: bytes) -> None:
    error = _reject(body)
    assert error.reason is RejectReason.BAD_PROTOBUF
    assert str(error).startswith("profile: not a valid pprof protobuf (")


def _first_valued_sample(profile: profile_pb2.Profile, sample_type: str) -> int:
    return next(i for i, value in enumerate(_column(profile, sample_type)) if value)


def test_function_name_string_index_out_of_range() -> None:
    profile = _profile(MUTEX)
    loc_index = _location_index(profile, profile.sample[0].location_id[0])
    fn_index = _function_index(profile, profile.location[loc_index].line[0].function_id)
    n_strings = len(profile.string_table)
    profile.function[fn_index].name = n_strings + 7
    error = _reject(profile.SerializeToString())
    assert error.reason is RejectReason.BAD_REFERENCE
    assert str(error) == (
        f"profile.function[{fn_index}]: string index {n_strings + 7} out of range "
        f"(string_table has {n_strings} entries)"
    )


def test_function_filename_string_index_negative() -> None:
    profile = _profile(BLOCK)
    loc_index = _location_index(profile, profile.sample[0].location_id[0])
    fn_index = _function_index(profile, profile.location[loc_index].line[0].function_id)
    profile.function[fn_index].filename = -1
    error = _reject(profile.SerializeToString())
    assert error.reason is RejectReason.BAD_REFERENCE
    assert str(error).startswith(f"profile.function[{fn_index}]: string index -1 out of range")


def test_sample_type_string_index_out_of_range() -> None:
    profile = _profile(HEAP)
    profile.sample_type[2].type = 100_000
    error = _reject(profile.SerializeToString())
    assert error.reason is RejectReason.BAD_REFERENCE
    assert str(error).startswith("profile.sample_type[2].type: string index 100000 out of range")


def test_location_id_that_does_not_exist() -> None:
    profile = _profile(HEAP)
    i = _first_valued_sample(profile, "inuse_space")
    profile.sample[i].location_id[0] = 4242
    error = _reject(profile.SerializeToString())
    assert error.reason is RejectReason.BAD_REFERENCE
    assert str(error) == f"profile.sample[{i}].location_id: 4242 is not a location id"


@pytest.mark.parametrize("missing", [999_999, 0, "one past the table"])
@pytest.mark.parametrize("fast_from", [0, 10**9], ids=["vectorised", "sample-by-sample"])
def test_missing_location_below_the_leaf_is_rejected(
    monkeypatch: pytest.MonkeyPatch, fast_from: int, missing: int | str
) -> None:
    """Attribution reads a stack only up to its user frame; an id past it must not slip through, in a
    sample with a value or without one, whichever path reads the profile."""
    monkeypatch.setattr(pprof_module, "FAST_PATH_MIN_SAMPLES", fast_from)
    profile = _large(HEAP) if fast_from == 0 else _profile(HEAP_STEADY_LEAK)
    bad_id = len(profile.location) + 1 if missing == "one past the table" else int(missing)
    valued = _first_valued_sample(profile, "inuse_space")
    unvalued = next(i for i, s in enumerate(profile.sample) if s.value[_types(profile).index("inuse_space")] == 0)
    for i in (valued, unvalued):
        broken = profile_pb2.Profile()
        broken.CopyFrom(profile)
        broken.sample[i].location_id.append(bad_id)
        error = _reject(broken.SerializeToString())
        assert error.reason is RejectReason.BAD_REFERENCE
        assert str(error) == f"profile.sample[{i}].location_id: {bad_id} is not a location id"


@pytest.mark.parametrize("spread", [3, 1000], ids=["ids-3-apart", "ids-1000-apart"])
def test_missing_location_below_the_leaf_with_ids_not_numbered_1_to_n(
    monkeypatch: pytest.MonkeyPatch, spread: int
) -> None:
    """Tables other writers number otherwise (gaps between ids): an id in a gap is rejected too."""
    monkeypatch.setattr(pprof_module, "FAST_PATH_MIN_SAMPLES", 0)
    profile = _large(HEAP)
    for loc in profile.location:
        loc.id *= spread
    for sample in profile.sample:
        sample.location_id[:] = [loc_id * spread for loc_id in sample.location_id]
    data = _encode(profile, values_first=True)
    assert isinstance(_decode(data), ProfileSummary)
    profile.sample[9].location_id.append(spread + 1)  # between the first two ids
    error = _reject(_encode(profile, values_first=True))
    assert error.reason is RejectReason.BAD_REFERENCE
    assert str(error) == f"profile.sample[9].location_id: {spread + 1} is not a location id"


def test_missing_location_below_the_leaf_of_a_parsed_profile_is_rejected() -> None:
    """A `Profile` message (what OTLP converts to) takes the message path: the same check."""
    profile = _profile(HEAP_STEADY_LEAK)
    profile.sample[5].location_id.insert(1, 4242)
    with pytest.raises(InvalidProfileError) as info:
        summarize_pprof(profile, LIMITS)
    assert info.value.reason is RejectReason.BAD_REFERENCE
    assert str(info.value) == "profile.sample[5].location_id: 4242 is not a location id"


def test_vectorised_check_of_location_ids_near_the_top_of_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every id of every sample is checked against a table numbered 1..N (not only the ids the walk reads):
    the table size itself passes, one more fails, whatever the width of the varint, and so does 0."""
    profile = _large(HEAP)
    n = len(profile.location)
    assert n >= 128  # two-byte ids
    data = _encode(profile, values_first=True)
    parsed = pprof_module._parse_parts(data)
    parts = pprof_fast.raw_parts(parsed, data)
    assert parts is not None
    scan = pprof_fast.scan_samples(parts, len(parsed.sample), len(parsed.sample_type))
    assert scan is not None
    tables = pprof_fast._tables(parsed, parts)
    assert tables is not None
    assert tables.dense
    assert pprof_fast._known_locations(scan, tables)
    for bad_id in (n + 1, n + 128, 128**2, 2**63, 0):
        broken = profile_pb2.Profile()
        broken.CopyFrom(profile)
        broken.sample[3].location_id.append(n)  # the largest valid id, then the bad one
        broken.sample[3].location_id.append(bad_id)
        data = _encode(broken, values_first=True)
        parsed = pprof_module._parse_parts(data)
        parts = pprof_fast.raw_parts(parsed, data)
        assert parts is not None
        scan = pprof_fast.scan_samples(parts, len(parsed.sample), len(parsed.sample_type))
        assert scan is not None
        tables = pprof_fast._tables(parsed, parts)
        assert tables is not None
        assert not pprof_fast._known_locations(scan, tables), bad_id


def test_location_with_id_zero() -> None:
    profile = _profile(MUTEX)
    profile.location[-1].id = 0
    profile.sample[0].location_id[0] = 4242  # forces the id lookup table to be built
    error = _reject(profile.SerializeToString())
    assert error.reason is RejectReason.BAD_REFERENCE
    assert str(error) == f"profile.location[{len(profile.location) - 1}].id: must be nonzero"


def test_function_id_that_does_not_exist() -> None:
    profile = _profile(MUTEX)
    loc_index = _location_index(profile, profile.sample[0].location_id[0])
    profile.location[loc_index].line[0].function_id = 4242
    error = _reject(profile.SerializeToString())
    assert error.reason is RejectReason.BAD_REFERENCE
    assert str(error) == f"profile.location[{loc_index}].line[0].function_id: 4242 is not a function id"


def test_ids_need_not_follow_table_order() -> None:
    # Go numbers ids 1..N in order; other writers may not. Reversed tables must decode the same.
    profile = _profile(BLOCK)
    locations = list(profile.location)
    functions = list(profile.function)
    del profile.location[:]
    del profile.function[:]
    profile.location.extend(reversed(locations))
    profile.function.extend(reversed(functions))
    assert _decode(profile.SerializeToString()) == _decode(_gz(BLOCK))


def test_sample_with_empty_stack_counts_in_the_total_under_other() -> None:
    # A real Go 1.27 goroutine profile: one goroutine sampled with no stack at all.
    data = (TESTDATA / "pprof" / "go127_goroutine_empty_stack.pb.gz").read_bytes()
    parsed = profile_pb2.Profile.FromString(gzip.decompress(data))
    empty = [s for s in parsed.sample if not s.location_id]
    assert len(empty) == 1
    summary = decode_profile(data, DecodeLimits())
    assert summary.kind is ProfileKind.GOROUTINE
    assert summary.total == sum(s.value[0] for s in parsed.sample)
    assert summary.other >= empty[0].value[0]
    assert sum(g.count for g in summary.groups) == summary.total - empty[0].value[0]
    # The same in a synthetic block profile: nothing rejected, the delay stays in the total.
    profile = _profile(BLOCK)
    lost = profile.sample[1].value[1]
    del profile.sample[1].location_id[:]
    block = _decode(profile.SerializeToString(), kind_hint=ProfileKind.BLOCK)
    assert block.total == _decode(_gz(BLOCK), kind_hint=ProfileKind.BLOCK).total
    assert block.other >= lost


@pytest.mark.parametrize(("change", "have"), [(-1, 3), (+1, 5)])
def test_sample_with_the_wrong_number_of_values(change: int, have: int) -> None:
    profile = _profile(HEAP)
    if change < 0:
        del profile.sample[3].value[-1]
    else:
        profile.sample[3].value.append(7)
    error = _reject(profile.SerializeToString())
    assert error.reason is RejectReason.BAD_VALUES
    assert str(error) == f"profile.sample[3].value: {have} values for 4 sample types"


@pytest.mark.parametrize("fast_from", [0, 10**9], ids=["vectorised", "sample-by-sample"])
def test_value_count_errors_that_cancel_out_are_still_rejected(monkeypatch: pytest.MonkeyPatch, fast_from: int) -> None:
    monkeypatch.setattr(pprof_module, "FAST_PATH_MIN_SAMPLES", fast_from)
    profile = _profile(HEAP)
    profile.sample[3].value.append(999_999_999)
    del profile.sample[4].value[-1]
    with pytest.raises(InvalidProfileError) as info:
        decode_profile(profile.SerializeToString(), LIMITS)
    assert str(info.value) == "profile.sample[3].value: 5 values for 4 sample types"


# --- the vectorised path (large profiles) gives exactly the sample-by-sample result ------------------


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _packed(field: int, numbers: list[int]) -> bytes:
    body = b"".join(_varint(x) for x in numbers)
    return _varint(field << 3 | 2) + _varint(len(body)) + body


def _encode_sample(sample: profile_pb2.Sample, values_first: bool, unpacked_locations: bool = False) -> bytes:
    """A Sample as runtime/pprof writes it (values first) or as the generated classes do (locations first)."""
    if unpacked_locations:
        locations = b"".join(_varint(1 << 3) + _varint(x) for x in sample.location_id)
    else:
        locations = _packed(1, list(sample.location_id))
    values = _packed(2, list(sample.value))
    labels = b"".join(
        _varint(3 << 3 | 2) + _varint(len(raw := label.SerializeToString())) + raw for label in sample.label
    )
    return (values + locations if values_first else locations + values) + labels


def _large(name: str, copies: int = 6, seed: int = 3) -> profile_pb2.Profile:
    """A real profile with its samples repeated `copies` times, values shuffled and some negative/huge."""
    profile = _profile(name)
    rng = random.Random(seed)
    originals = list(profile.sample)
    for _ in range(copies - 1):
        for sample in originals:
            extra = profile.sample.add()
            extra.CopyFrom(sample)
            for i in range(len(extra.value)):
                extra.value[i] = rng.choice([0, 0, 1, 7, 300, 20_000, 3_000_000, extra.value[i]])
    return profile


def _encode(profile: profile_pb2.Profile, values_first: bool, unpacked_every: int = 0) -> bytes:
    head = profile_pb2.Profile()
    head.CopyFrom(profile)
    del head.sample[:]
    samples = b"".join(
        _varint(2 << 3 | 2) + _varint(len(raw)) + raw
        for i, sample in enumerate(profile.sample)
        for raw in [_encode_sample(sample, values_first, bool(unpacked_every) and i % unpacked_every == 5)]
    )
    return head.SerializeToString() + samples


def _both_paths(
    monkeypatch: pytest.MonkeyPatch,
    data: bytes,
    kind_hint: ProfileKind | None = None,
    time_fallback_nanos: int | None = None,
) -> list[object]:
    """Vectorised (forced for every profile it can read), then sample by sample."""
    results: list[object] = []
    for fast_from in (0, 10**9):
        monkeypatch.setattr(pprof_module, "FAST_PATH_MIN_SAMPLES", fast_from)
        try:
            results.append(decode_profile(data, LIMITS, kind_hint=kind_hint, time_fallback_nanos=time_fallback_nanos))
        except InvalidProfileError as exc:
            results.append((type(exc).__name__, str(exc), exc.reason))
    return results


@pytest.mark.parametrize("values_first", [True, False], ids=["values-first", "locations-first"])
@pytest.mark.parametrize(
    ("name", "kind"),
    [(HEAP, None), (HEAP_STEADY_LEAK, None), (MUTEX, ProfileKind.MUTEX), (BLOCK, ProfileKind.BLOCK)],
)
def test_vectorised_path_equals_sample_by_sample(
    monkeypatch: pytest.MonkeyPatch, name: str, kind: ProfileKind | None, values_first: bool
) -> None:
    profile = _large(name)
    assert len(profile.sample) >= 1024 or name != HEAP
    fast, slow = _both_paths(monkeypatch, _encode(profile, values_first), kind)
    assert isinstance(fast, ProfileSummary)
    assert fast == slow
    assert fast.sites
    assert fast.total == sum(
        s.value[_types(profile).index("inuse_space" if kind is None else "delay")] for s in profile.sample
    )


def _types(profile: profile_pb2.Profile) -> list[str]:
    return [profile.string_table[t.type] for t in profile.sample_type]


def test_vectorised_path_takes_the_large_profiles_it_is_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path must actually run (not fall back) on runtime/pprof's layout, with labels, in either
    field order, and on unpacked values and ids too (protobuf merges them in order, and so does `_wire`)."""
    seen: list[bool] = []
    scan = pprof_fast.scan_samples
    monkeypatch.setattr(pprof_fast, "scan_samples", lambda *a: seen.append((r := scan(*a)) is not None) or r)
    profile = _large(HEAP)
    assert any(s.label for s in profile.sample)
    for data in (
        _encode(profile, values_first=True),
        _encode(profile, values_first=False),
        _encode(profile, values_first=True, unpacked_every=97),
    ):
        fast, slow = _both_paths(monkeypatch, data)
        assert isinstance(fast, ProfileSummary)
        assert fast == slow
    assert seen == [True, True, True]


@pytest.mark.parametrize(
    "breakage",
    ["unpacked", "empty-stack", "bad-location", "truncated-varint", "extra-value-field"],
)
def test_vectorised_path_rejects_like_sample_by_sample(monkeypatch: pytest.MonkeyPatch, breakage: str) -> None:
    profile = _large(HEAP)
    target = profile.sample[700]
    target.value[3] = 4096  # nonzero in-use, so the sample is attributed
    if breakage == "empty-stack":
        del target.location_id[:]
    elif breakage == "bad-location":
        target.location_id[1] = 999_999
        target.value[3] = 4096
    data = _encode(profile, values_first=True, unpacked_every=97 if breakage == "unpacked" else 0)
    if breakage == "truncated-varint":
        data = data[:-1] + b"\x80"
    elif breakage == "extra-value-field":
        data += _varint(2 << 3 | 2) + _varint(2) + _packed(2, [])
    fast, slow = _both_paths(monkeypatch, data)
    assert fast == slow
    if breakage in ("bad-location", "extra-value-field"):
        assert isinstance(fast, tuple)
    if breakage == "empty-stack":  # accepted by both paths: the value stays in the total, under (other)
        assert isinstance(fast, ProfileSummary)


def test_string_table_zero_must_be_empty() -> None:
    profile = _profile(GOROUTINE)
    profile.string_table[0] = "x"
    error = _reject(profile.SerializeToString())
    assert error.reason is RejectReason.BAD_REFERENCE
    assert str(error) == "profile.string_table[0]: must be the empty string"


@pytest.mark.parametrize(
    ("field", "limit_name"),
    [
        ("sample", "max_samples"),
        ("location", "max_locations"),
        ("function", "max_functions"),
        ("string_table", "max_strings"),
    ],
)
def test_too_many_items(field: str, limit_name: str) -> None:
    have = len(getattr(_profile(HEAP), field))
    assert _decode(_gz(HEAP), DecodeLimits(**{limit_name: have})).kind is ProfileKind.HEAP
    error = _reject(_gz(HEAP), DecodeLimits(**{limit_name: have - 1}))
    assert error.reason is RejectReason.TOO_MANY_ITEMS
    assert str(error) == f"profile.{field}: {have} entries exceed the limit of {have - 1}"


def test_cpu_profile_is_unsupported() -> None:
    profile = _profile(MUTEX)  # two sample types, relabelled as Go's CPU profile
    profile.string_table.extend(["samples", "count", "cpu", "nanoseconds"])
    n = len(profile.string_table)
    profile.sample_type[0].type, profile.sample_type[0].unit = n - 4, n - 3
    profile.sample_type[1].type, profile.sample_type[1].unit = n - 2, n - 1
    error = _reject(profile.SerializeToString())
    assert error.reason is RejectReason.UNSUPPORTED
    assert str(error) == (
        "profile.sample_type: [samples, cpu] (a CPU profile) is not a heap, goroutine, goroutineleak, "
        "mutex or block profile"
    )


def test_profile_without_sample_types_is_unsupported() -> None:
    profile = _profile(MUTEX)
    del profile.sample_type[:]
    error = _reject(profile.SerializeToString())
    assert error.reason is RejectReason.UNSUPPORTED
    assert "[none]" in str(error)


@pytest.mark.parametrize("time_nanos", [0, -5])
def test_missing_time_without_fallback(time_nanos: int) -> None:
    profile = _profile(HEAP)
    profile.time_nanos = time_nanos
    error = _reject(profile.SerializeToString())
    assert error.reason is RejectReason.BAD_VALUES
    assert str(error) == "profile.time_nanos: missing and no upload time given"


@pytest.mark.parametrize("name", [HEAP, MUTEX])
def test_corrupt_sample_message_is_bad_protobuf(name: str) -> None:
    lazy = parse_pprof(_raw(name))
    lazy.sample[0] = b"\x12\x05\x01"  # packed `value` claiming 5 bytes, holding 1
    with pytest.raises(InvalidProfileError) as info:
        decode_profile(lazy.SerializeToString(), LIMITS)
    assert info.value.reason is RejectReason.BAD_PROTOBUF


# --- fuzz -----------------------------------------------------------------------------------------

FUZZ_SEED = 20260115
FUZZ_ROUNDS = 120  # per source profile


def _mutate(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    match rng.randrange(5):
        case 0:  # truncate
            return bytes(data[: rng.randrange(len(data))])
        case 1:  # overwrite a few random bytes
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        case 2:  # flip one bit
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        case 3:  # delete a run
            start = rng.randrange(len(data))
            del data[start : start + rng.randint(1, 16)]
        case _:  # duplicate a run somewhere else
            start = rng.randrange(len(data))
            run = data[start : start + rng.randint(1, 32)]
            at = rng.randrange(len(data))
            data[at:at] = run
    return bytes(data)


@cache
def _fuzz_outcomes() -> tuple[tuple[str, ProfileSummary | BaseException], ...]:
    rng = random.Random(FUZZ_SEED)
    limits = DecodeLimits(max_decompressed_bytes=4 * MIB, top_sites=8, top_groups=8)
    outcomes: list[tuple[str, ProfileSummary | BaseException]] = []
    for name in (HEAP, GOROUTINE, MUTEX, GOROUTINELEAK):
        for round_ in range(FUZZ_ROUNDS):
            source = _gz(name) if round_ % 4 == 0 else _raw(name)  # mostly raw: gzip CRCs catch most mutations
            body = _mutate(rng, source)
            case = f"{name} round {round_}"
            try:
                outcomes.append((case, decode_profile(body, limits, time_fallback_nanos=1)))
            except Exception as exc:  # collected and checked by the tests below
                outcomes.append((case, exc))
    return tuple(outcomes)


def test_fuzzed_profiles_decode_or_are_rejected() -> None:
    outcomes = _fuzz_outcomes()
    summaries = [result for _, result in outcomes if isinstance(result, ProfileSummary)]
    rejections = Counter(result.reason for _, result in outcomes if isinstance(result, InvalidProfileError))
    # Anything else is a crash, except DecodeError, the known bug checked by the next test.
    crashes = [
        f"{case}: {type(result).__name__}: {result}"
        for case, result in outcomes
        if isinstance(result, BaseException) and not isinstance(result, InvalidProfileError | DecodeError)
    ]
    assert crashes == []
    # The mutations must exercise both outcomes and several rejection paths.
    assert len(summaries) >= len(outcomes) // 10
    assert {RejectReason.BAD_PROTOBUF, RejectReason.BAD_GZIP} <= set(rejections)
    assert len(rejections) >= 3, rejections
    for summary in summaries:
        assert len(summary.sites) <= 8
        assert len(summary.groups) <= 8
        assert summary.other == pytest.approx(summary.total - sum(site.value for site in summary.sites))


def test_fuzzed_profiles_raise_nothing_but_invalid_profile_error() -> None:
    escaped = [
        f"{case}: {type(result).__name__}"
        for case, result in _fuzz_outcomes()
        if isinstance(result, BaseException) and not isinstance(result, InvalidProfileError)
    ]
    assert escaped == []


def test_a_sample_value_equal_to_the_separator_sentinel_is_read_normally() -> None:
    profile = _profile(HEAP)
    inuse = _types(profile).index("inuse_space")
    alloc = _types(profile).index("alloc_objects")
    profile.sample[3].value[alloc] = pprof_module._SENTINEL
    summary = decode_profile(profile.SerializeToString(), LIMITS, alloc_cumulative=True)
    assert summary.total == sum(s.value[inuse] for s in profile.sample)
    assert summary.cumulative == float(sum(s.value[alloc] for s in profile.sample))


def test_counts_that_cancel_out_around_a_planted_sentinel_are_rejected() -> None:
    profile = _profile(HEAP)
    profile.sample[3].value.append(pprof_module._SENTINEL)  # where the separator would be expected
    del profile.sample[4].value[-1]
    with pytest.raises(InvalidProfileError) as info:
        decode_profile(profile.SerializeToString(), LIMITS)
    assert str(info.value) == "profile.sample[3].value: 5 values for 4 sample types"


# --- the vectorised path agrees with sample by sample on every test profile and on unusual tables -------

BENCH_PROFILES = Path(__file__).resolve().parents[3] / "benchmarks" / "out" / "large"


def test_vectorised_path_agrees_on_every_test_and_benchmark_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every .pb.gz under tests/testdata (and the benchmark's large profiles when built): same summary."""
    paths = sorted(TESTDATA.glob("**/*.pb.gz")) + sorted(BENCH_PROFILES.glob("*.pb.gz"))
    assert len(paths) > 300
    for path in paths:
        fast, slow = _both_paths(monkeypatch, path.read_bytes(), time_fallback_nanos=1)
        assert fast == slow, path


@pytest.mark.parametrize(
    "breakage",
    ["lineless-leaf", "missing-function", "bad-function-string", "ids-out-of-order", "folded"],
)
def test_vectorised_path_handles_unusual_tables_like_sample_by_sample(
    monkeypatch: pytest.MonkeyPatch, breakage: str
) -> None:
    profile = _large(HEAP)
    target = profile.sample[700]
    target.value[3] = 4096
    loc = next(item for item in profile.location if item.id == target.location_id[0])
    if breakage == "lineless-leaf":
        del loc.line[:]
        loc.address = 0x4A3F00
    elif breakage == "missing-function":
        loc.line[0].function_id = 10**6
    elif breakage == "bad-function-string":
        profile.function[loc.line[0].function_id - 1].filename = 10**6
    elif breakage == "ids-out-of-order":
        profile.location[0].id, profile.location[1].id = profile.location[1].id, profile.location[0].id
    elif breakage == "folded":
        loc.is_folded = True
    data = _encode(profile, values_first=True)
    fast, slow = _both_paths(monkeypatch, data)
    assert fast == slow
    if breakage in ("missing-function", "bad-function-string"):
        assert isinstance(fast, tuple)
    else:
        assert isinstance(fast, ProfileSummary)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_vectorised_path_reads_samples_whose_bytes_look_like_sample_starts(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Stacks full of location ids 18 and 10 (0x12 and 0x0A, the tags of a sample's values and ids) and values
    alike: the samples are found by their lengths, so the values still land on the right samples."""
    rng = random.Random(seed)
    profile = _forty_functions(runtime_every=7)
    for _ in range(1500):
        stack = [rng.choice([18, 18, 10, 2, 3, 7, 14, 21, 40]) for _ in range(rng.randrange(1, 12))]
        profile.sample.add(location_id=stack, value=[rng.choice([0, 1, 18, 10]), rng.choice([0, 18, 10, 300])])
    _assert_vectorised_equals_slow(monkeypatch, profile)


def _forty_functions(runtime_every: int = 0) -> profile_pb2.Profile:
    """A heap profile's tables: 40 functions at locations 1..40 (every `runtime_every`-th in the runtime)."""
    profile = profile_pb2.Profile()
    profile.string_table.extend(["", "inuse_objects", "count", "inuse_space", "bytes", "main.go", "runtime/malloc.go"])
    for type_index, unit in ((1, 2), (3, 4)):
        profile.sample_type.add(type=type_index, unit=unit)
    for i in range(1, 41):
        runtime = bool(runtime_every) and i % runtime_every == 0
        profile.string_table.append(f"runtime.f{i}" if runtime else f"main.f{i}")
        profile.function.add(id=i, name=len(profile.string_table) - 1, filename=6 if runtime else 5)
        profile.location.add(id=i, address=0x1000 + i).line.add(function_id=i, line=i)
    profile.time_nanos = 1
    return profile


def _assert_vectorised_equals_slow(monkeypatch: pytest.MonkeyPatch, profile: profile_pb2.Profile) -> None:
    """Both field orders of the samples: the vectorised path takes the profile and agrees with the slow one."""
    seen: list[bool] = []
    scan = pprof_fast.scan_samples
    monkeypatch.setattr(pprof_fast, "scan_samples", lambda *a: seen.append((r := scan(*a)) is not None) or r)
    for values_first in (True, False):
        fast, slow = _both_paths(monkeypatch, _encode(profile, values_first))
        assert isinstance(fast, ProfileSummary)
        assert fast == slow
    assert seen == [True, True]


@pytest.mark.parametrize("long_every", [1, 50])
def test_vectorised_path_frames_samples_of_128_bytes_and_more(monkeypatch: pytest.MonkeyPatch, long_every: int) -> None:
    """A sample of 128 bytes or more has a two-byte length, which the quick framing (one-byte lengths)
    does not match: the general search frames it, on the vectorised path still."""
    profile = _forty_functions()
    for k in range(1500):
        depth = 150 if k % long_every == 0 else 1 + k % 9
        profile.sample.add(location_id=[1 + (k + j) % 40 for j in range(depth)], value=[1 + k % 5, 100 * k])
    _assert_vectorised_equals_slow(monkeypatch, profile)


@pytest.mark.parametrize("bad_at", [None, 3, 12, 14])
def test_vectorised_path_reads_deep_system_stacks_like_sample_by_sample(
    monkeypatch: pytest.MonkeyPatch, bad_at: int | None
) -> None:
    """A few samples cross a dozen system frames to their user frame (read in one go once most samples
    are resolved): a bad location id rejects the profile, before the user frame or after it."""
    profile = profile_pb2.Profile()
    profile.string_table.extend(["", "inuse_objects", "count", "inuse_space", "bytes", "main.go", "runtime/x.go"])
    for type_index, unit in ((1, 2), (3, 4)):
        profile.sample_type.add(type=type_index, unit=unit)
    for i in range(1, 41):
        system = i > 20
        profile.string_table.append(f"runtime.f{i}" if system else f"main.f{i}")
        profile.function.add(id=i, name=len(profile.string_table) - 1, filename=6 if system else 5)
        profile.location.add(id=i, address=0x1000 + i).line.add(function_id=i, line=i)
    profile.time_nanos = 1
    for k in range(1500):
        if k % 40 == 7:  # deep: 13 system frames, then a user frame, then more
            stack = [21 + (k + j) % 20 for j in range(13)] + [1 + k % 20, 2, 3]
            if bad_at is not None and k == 47:
                stack[bad_at] = 999
        else:
            stack = [1 + k % 20, 21]
        profile.sample.add(location_id=stack, value=[1 + k % 3, 64 * (1 + k % 7)])
    fast, slow = _both_paths(monkeypatch, _encode(profile, values_first=True))
    assert fast == slow
    assert isinstance(fast, tuple) == (bad_at is not None)
    if bad_at is not None:
        assert fast == (
            "InvalidProfileError",
            "profile.sample[47].location_id: 999 is not a location id",
            RejectReason.BAD_REFERENCE,
        )


def test_vectorised_path_merges_a_function_name_found_in_two_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """A site is a function name: two functions of one name in different files (and the samples of
    both) make one site, whose file and line follow its largest sample, on both paths."""
    profile = profile_pb2.Profile()
    profile.string_table.extend(["", "inuse_objects", "count", "inuse_space", "bytes", "a.go", "b.go"])
    for type_index, unit in ((1, 2), (3, 4)):
        profile.sample_type.add(type=type_index, unit=unit)
    for i in range(1, 21):
        profile.string_table.append(f"main.f{i % 10}")  # f1..f9 and f0 twice each, in a.go then b.go
        profile.function.add(id=i, name=len(profile.string_table) - 1, filename=5 if i <= 10 else 6)
        profile.location.add(id=i, address=0x1000 + i).line.add(function_id=i, line=i)
    profile.time_nanos = 1
    for k in range(1500):
        profile.sample.add(location_id=[1 + k % 20], value=[1 + k % 3, 10 * (1 + k % 17)])
    fast, slow = _both_paths(monkeypatch, _encode(profile, values_first=True))
    assert isinstance(fast, ProfileSummary)
    assert fast == slow
    assert len(fast.sites) == 10


def _location_bytes_broken(raw: bytes, index: int, junk: bytes) -> bytes:
    """`raw` with `junk` (bytes protobuf rejects in a Location) appended to location `index`, the rest
    of the profile unchanged and in its order."""
    parts = profile_pb2.ProfileLazyParts.FromString(raw)
    parts.location[index] = parts.location[index] + junk
    return parts.SerializeToString()


@pytest.mark.parametrize(
    "junk",
    [b"\x00\x01", b"\x80\x80\x80\x80\x10\x01", b"\x22\x80\x80\x80\x80\x80\x00"],
    ids=["field-0", "tag-over-32-bits", "length-over-5-bytes"],
)
def test_locations_kept_as_bytes_report_the_full_parse_error(monkeypatch: pytest.MonkeyPatch, junk: bytes) -> None:
    """decode_profile parses large profiles with locations and functions left as bytes; a bad one must give
    the same error as a full parse, whether the vectorised path reads the tables or not."""
    raw = _location_bytes_broken(_raw(HEAP), 3, junk)
    with pytest.raises(DecodeError) as full:
        profile_pb2.ProfileLazySamples.FromString(raw)
    for threshold in (0, 10**9):
        monkeypatch.setattr(pprof_module, "FAST_PATH_MIN_SAMPLES", threshold)
        with pytest.raises(InvalidProfileError, match="not a valid pprof protobuf") as got:
            decode_profile(raw, LIMITS)
        assert str(full.value) in str(got.value)
        assert got.value.reason is RejectReason.BAD_PROTOBUF


def test_locations_kept_as_bytes_summarise_as_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The vectorised path over the one-parse layout (tables after the samples, up to the strings) gives
    the summary of the parsed profile (read sample by sample from its messages), for every top-K size."""
    monkeypatch.setattr(pprof_module, "FAST_PATH_MIN_SAMPLES", 0)
    for name in (HEAP, HEAP_STEADY_LEAK, HEAP_BEFORE_RESTART):
        raw = _raw(name)
        for top in (0, 1, 5, 64):
            limits = DecodeLimits(top_sites=top)
            assert decode_profile(raw, limits) == summarize_pprof(profile_pb2.Profile.FromString(raw), limits)
