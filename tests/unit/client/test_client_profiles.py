"""The profiles the client produces, read back with the service's own decoders."""

from __future__ import annotations

import gzip
import threading
import tracemalloc
from collections.abc import Iterator

import pytest

from otel_leakproc.client._capture import HeapCapture, raw_traces, thread_profile
from otel_leakproc.client._client import Client
from otel_leakproc.client._config import ClientConfig
from otel_leakproc.client._pprof import ProfileBuilder, push_request
from otel_leakproc.client._resolve import FunctionResolver
from otel_leakproc.model import ProfileKind
from otel_leakproc.receiver.decode import DecodeLimits, decode_profile
from otel_leakproc.receiver.proto import profile_pb2, push_pb2

RETAINED: list[bytes] = []


def retain_snapshots(n: int) -> None:
    # The "leak" the tests look for: 64 KiB blocks kept alive from here.
    for i in range(n):
        RETAINED.append(bytes(65536) + str(i).encode())


class OrderCache:
    def __init__(self) -> None:
        self.rows: list[bytearray] = []

    def remember(self, n: int) -> None:
        self.rows.extend(bytearray(32768) for _ in range(n))


@pytest.fixture
def tracing() -> Iterator[None]:
    was = tracemalloc.is_tracing()
    if not was:
        tracemalloc.start(16)
    try:
        yield
    finally:
        RETAINED.clear()
        if not was:
            tracemalloc.stop()


def test_builder_writes_a_valid_pprof() -> None:
    builder = ProfileBuilder([("inuse_objects", "count"), ("inuse_space", "bytes")], ("space", "bytes"), 1)
    builder.add([("leaf", "/app/a.py", 3), ("caller", "/app/b.py", 9)], (2, 2048))
    builder.add([("leaf", "/app/a.py", 3)], (1, 10))
    profile = profile_pb2.Profile.FromString(builder.encode(time_nanos=1_700_000_000_000_000_000, duration_nanos=5))
    strings = list(profile.string_table)
    assert strings[0] == ""
    assert [(strings[t.type], strings[t.unit]) for t in profile.sample_type] == [
        ("inuse_objects", "count"),
        ("inuse_space", "bytes"),
    ]
    assert [list(s.value) for s in profile.sample] == [[2, 2048], [1, 10]]
    assert [list(s.location_id) for s in profile.sample] == [[1, 2], [1]]
    functions = {f.id: (strings[f.name], strings[f.filename]) for f in profile.function}
    assert [functions[loc.line[0].function_id] + (loc.line[0].line,) for loc in profile.location] == [
        ("leaf", "/app/a.py", 3),
        ("caller", "/app/b.py", 9),
    ]
    assert profile.time_nanos == 1_700_000_000_000_000_000
    assert profile.duration_nanos == 5
    assert (strings[profile.period_type.type], profile.period) == ("space", 1)


def test_builder_refuses_a_wrong_number_of_values() -> None:
    builder = ProfileBuilder([("goroutine", "count")], ("goroutine", "count"), 1)
    with pytest.raises(ValueError, match="2 values for 1 sample types"):
        builder.add([("f", "a.py", 1)], (1, 2))


@pytest.mark.usefixtures("tracing")
def test_heap_profile_names_the_retaining_function_and_totals_match_tracemalloc() -> None:
    retain_snapshots(40)
    cache = OrderCache()
    cache.remember(30)
    traces = raw_traces()
    raw, objects, size = HeapCapture(FunctionResolver(), max_tracebacks=2000).profile(traces, 1_000, 0)
    summary = decode_profile(raw, DecodeLimits())
    assert summary.kind is ProfileKind.HEAP
    assert summary.total == size
    assert summary.total_count == objects
    sites = {s.function: s for s in summary.sites}
    assert sites["retain_snapshots"].value >= 40 * 65536
    assert sites["retain_snapshots"].file == __file__
    assert sites["OrderCache.remember"].value >= 30 * 32768  # the generator expression is folded in
    assert summary.sites[0].function == "retain_snapshots"


@pytest.mark.usefixtures("tracing")
def test_tracebacks_past_the_cap_are_merged_by_leaf_and_totals_stay_exact() -> None:
    retain_snapshots(5)
    traces = raw_traces()
    full_raw, full_objects, full_size = HeapCapture(FunctionResolver(), max_tracebacks=100000).profile(traces, 1, 0)
    capped_raw, objects, size = HeapCapture(FunctionResolver(), max_tracebacks=3).profile(traces, 1, 0)
    assert (objects, size) == (full_objects, full_size)
    full = decode_profile(full_raw, DecodeLimits())
    capped = decode_profile(capped_raw, DecodeLimits())
    assert capped.total == full.total
    assert capped.total_count == full.total_count
    assert capped.sites[0].function == "retain_snapshots"
    assert len(profile_pb2.Profile.FromString(capped_raw).sample) < len(profile_pb2.Profile.FromString(full_raw).sample)


@pytest.mark.usefixtures("tracing")
def test_the_clients_own_allocations_are_left_out() -> None:
    client = Client(ClientConfig(service="self-test", url="http://127.0.0.1:9"))
    for _ in range(3):
        client.capture_into_buffer()  # the buffered profiles are the client's own memory
    summary = decode_profile(client.capture().profiles[0][1], DecodeLimits())
    assert all("/otel_leakproc/client/" not in s.file for s in summary.sites)


def park(ready: threading.Barrier, release: threading.Event) -> None:
    ready.wait()
    release.wait(30)


def test_thread_profile_counts_threads_per_stack_as_goroutines() -> None:
    release = threading.Event()
    ready = threading.Barrier(4)
    workers = [threading.Thread(target=park, args=(ready, release), daemon=True) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        ready.wait(10)
        raw, threads = thread_profile(64, 2_000, skip_thread=threading.get_ident())
    finally:
        release.set()
        for worker in workers:
            worker.join(10)
    summary = decode_profile(raw, DecodeLimits())
    assert summary.kind is ProfileKind.GOROUTINE
    assert threads == summary.total
    parked = [g for g in summary.groups if g.function == "park"]
    assert sum(g.count for g in parked) == 3
    assert parked[0].file == __file__


@pytest.mark.usefixtures("tracing")
def test_capture_is_a_push_request_the_service_parses() -> None:
    client = Client(
        ClientConfig(service="orders", instance="pod-1", url="http://127.0.0.1:9", attributes={"region": "eu-1"})
    )
    retain_snapshots(3)
    capture = client.capture()
    message = push_pb2.PushRequest.FromString(
        push_request([(labels, [(raw, sid)]) for labels, raw, sid in capture.profiles])
    )
    assert len(message.series) == 2
    labels = [{p.name: p.value for p in s.labels} for s in message.series]
    assert [lab["__name__"] for lab in labels] == ["memory", "goroutine"]
    for lab in labels:
        assert lab["service_name"] == "orders"
        assert lab["service.instance.id"] == "pod-1"
        assert lab["region"] == "eu-1"
        assert lab["__session_id__"] == client.session_id
        assert lab["process.runtime.name"] == "cpython"
    heap = message.series[0].samples[0]
    assert heap.raw_profile[:2] == b"\x1f\x8b"
    assert profile_pb2.Profile.FromString(gzip.decompress(heap.raw_profile)).time_nanos == capture.time_nanos
    assert len(heap.ID) == 32
