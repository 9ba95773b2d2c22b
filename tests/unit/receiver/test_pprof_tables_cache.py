"""Small profiles share what resolving their tables found with earlier uploads carrying the same tables
(`pprof.TablesCache`): the summary and the errors must be those of a profile decoded on its own."""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

import pytest

from otel_leakproc.errors import InvalidProfileError, RejectReason
from otel_leakproc.model import ProfileKind
from otel_leakproc.receiver.decode import decode_profile
from otel_leakproc.receiver.decode import pprof as pprof_module
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.decode.pprof import summarize_pprof
from otel_leakproc.receiver.decode.pprof_sites import Tables, TablesCache
from otel_leakproc.receiver.proto import profile_pb2

PPROF = Path(__file__).resolve().parents[2] / "testdata" / "pprof"
LIMITS = DecodeLimits()
KINDS = {
    "go_heap_steady_leak_0059.pb.gz": ProfileKind.HEAP,
    "go_goroutine_lock_contention_0030.pb.gz": ProfileKind.GOROUTINE,
    "go127_goroutineleak_0010.pb.gz": ProfileKind.GOROUTINELEAK,
    "go_mutex_lock_contention_0030.pb.gz": ProfileKind.MUTEX,
    "go_block_lock_contention_0030.pb.gz": ProfileKind.BLOCK,
}


@pytest.fixture
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> TablesCache:
    cache = TablesCache(max_entries=1024, max_bytes=8 << 20)
    monkeypatch.setattr(pprof_module, "_TABLES", cache)
    return cache


def _raw(name: str) -> bytes:
    return gzip.decompress((PPROF / name).read_bytes())


@pytest.mark.parametrize("name", sorted(KINDS))
def test_a_second_upload_with_the_same_tables_summarises_as_the_first(fresh_cache: TablesCache, name: str) -> None:
    """The first upload fills an entry, the next ones (other times and values, the same tables) use it;
    every summary equals that of the parsed message read on its own."""
    raw = _raw(name)
    assert len(raw) <= pprof_module.TABLES_CACHE_MAX_BYTES
    first = decode_profile(raw, LIMITS)
    assert first.kind is KINDS[name]
    assert len(fresh_cache) == 1
    profile = profile_pb2.Profile.FromString(raw)
    for step in range(1, 4):
        profile.time_nanos += 60 * 10**9
        for i, sample in enumerate(profile.sample):  # other values: other sites may lead
            sample.value[-1] = sample.value[-1] * (1 + (i + step) % 3)
        again = decode_profile(profile.SerializeToString(), LIMITS)
        assert len(fresh_cache) == 1  # the same tables: no new entry
        assert again == summarize_pprof(profile_pb2.Profile.FromString(profile.SerializeToString()), LIMITS)
        assert again.time_nanos == profile.time_nanos


def test_other_tables_get_their_own_entry(fresh_cache: TablesCache) -> None:
    raw = _raw("go_heap_steady_leak_0059.pb.gz")
    decode_profile(raw, LIMITS)
    profile = profile_pb2.Profile.FromString(raw)
    profile.string_table[-1] += "x"  # one string differs: frames named from it must not be reused
    renamed = decode_profile(profile.SerializeToString(), LIMITS)
    assert len(fresh_cache) == 2
    assert renamed == summarize_pprof(profile, LIMITS)


def test_a_bad_location_id_is_named_with_cached_tables(fresh_cache: TablesCache) -> None:
    """A sample referencing a location the (cached) tables lack is rejected, naming the sample, as without
    the cache."""
    raw = _raw("go_heap_steady_leak_0059.pb.gz")
    decode_profile(raw, LIMITS)
    profile = profile_pb2.Profile.FromString(raw)
    missing = max(loc.id for loc in profile.location) + 7
    profile.sample[5].location_id.append(missing)
    with pytest.raises(InvalidProfileError) as cached:
        decode_profile(profile.SerializeToString(), LIMITS)
    assert cached.value.reason is RejectReason.BAD_REFERENCE
    assert f"profile.sample[5].location_id: {missing} is not a location id" in str(cached.value)
    with pytest.raises(InvalidProfileError) as alone:
        summarize_pprof(profile, LIMITS)
    assert str(alone.value) == str(cached.value)


def test_bad_sample_bytes_are_a_bad_protobuf_with_cached_tables(fresh_cache: TablesCache) -> None:
    raw = _raw("go_heap_steady_leak_0059.pb.gz")
    decode_profile(raw, LIMITS)
    profile = profile_pb2.ProfileLazySamples.FromString(raw)
    profile.sample[3] = profile.sample[3] + b"\x00\x01"  # field 0: invalid
    with pytest.raises(InvalidProfileError, match="not a valid pprof") as got:
        decode_profile(profile.SerializeToString(), LIMITS)
    assert got.value.reason is RejectReason.BAD_PROTOBUF


def test_the_cache_is_bounded_by_entries_and_bytes() -> None:
    cache = TablesCache(max_entries=3, max_bytes=100)
    keys = [((bytes([i]),), (), ("",)) for i in range(6)]
    for key in keys[:4]:
        cache.put(key, Tables(), 10)
    assert len(cache) == 3
    assert cache.bytes == 30
    assert cache.get(keys[0]) is None  # the oldest went first
    assert cache.get(keys[1]) is not None  # now the most recent
    cache.put(keys[4], Tables(), 80)  # 30 + 80 > 100: the least recent go until it fits
    assert cache.get(keys[2]) is None
    assert all(cache.get(key) is not None for key in (keys[1], keys[3], keys[4]))
    assert cache.bytes == 100
    cache.put(keys[5], Tables(), 200)  # larger than the bound on its own: nothing is kept
    assert len(cache) == 0
    assert cache.bytes == 0


def test_profiles_over_the_size_bound_get_no_entry(fresh_cache: TablesCache, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _raw("go_heap_steady_leak_0059.pb.gz")
    monkeypatch.setattr(pprof_module, "TABLES_CACHE_MAX_BYTES", len(raw) - 1)
    summary = decode_profile(raw, LIMITS)
    assert len(fresh_cache) == 0
    assert summary == summarize_pprof(profile_pb2.Profile.FromString(raw), LIMITS)


@pytest.mark.parametrize("name", ["go_heap_steady_leak_0059.pb.gz", "go_goroutine_lock_contention_0030.pb.gz"])
def test_an_entry_takes_no_more_memory_than_it_is_counted_for(fresh_cache: TablesCache, name: str) -> None:
    """The cache's byte bound holds for what entries really take: 20 table sets (one string differs in each)
    grow the traced memory by less than the sizes the cache counts for them."""
    profile = profile_pb2.Profile.FromString(_raw(name))
    bodies = []
    for i in range(21):
        profile.string_table[-1] = f"{profile.string_table[-1][:40]}{i}"
        bodies.append(profile.SerializeToString())
    decode_profile(bodies[0], LIMITS)
    counted = fresh_cache.bytes
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for body in bodies[1:]:
            decode_profile(body, LIMITS)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(fresh_cache) == 21
    assert 0 < grown < fresh_cache.bytes - counted
