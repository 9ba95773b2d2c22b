"""Go's `?debug=1` text profiles: the same summary as the protobuf of the same moment, and clear errors.

The pairs in tests/testdata/go-text were fetched back to back from a real, idle Go program (see its README).
"""

from __future__ import annotations

import gzip
import math
import random
import struct
from pathlib import Path

import pytest

from otel_leakproc.errors import InvalidProfileError, PayloadTooLargeError, RejectReason
from otel_leakproc.model import ProfileKind, ProfileSummary
from otel_leakproc.receiver.decode import DecodeLimits, decode_profile
from otel_leakproc.receiver.decode.go_text import looks_like_go_text, scale_heap_sample

GO_TEXT = Path(__file__).resolve().parents[2] / "testdata" / "go-text"
NOW = 1_765_000_000 * 10**9
LIMITS = DecodeLimits()
PROFILES = ("heap", "mutex", "block", "goroutine", "goroutineleak")
HINTS = {"mutex": ProfileKind.MUTEX, "block": ProfileKind.BLOCK, "goroutineleak": ProfileKind.GOROUTINELEAK}


def _pair(name: str) -> tuple[ProfileSummary, ProfileSummary]:
    proto = decode_profile(
        (GO_TEXT / f"snapshot_{name}.pb.gz").read_bytes(), LIMITS, kind_hint=HINTS.get(name), time_fallback_nanos=NOW
    )
    text = decode_profile((GO_TEXT / f"snapshot_{name}.txt").read_bytes(), LIMITS, time_fallback_nanos=NOW)
    return proto, text


def _reject(data: bytes | str, limits: DecodeLimits = LIMITS) -> InvalidProfileError:
    raw = data.encode() if isinstance(data, str) else data
    with pytest.raises(InvalidProfileError) as info:
        decode_profile(raw, limits, time_fallback_nanos=NOW)
    assert "\n" not in str(info.value)  # one line
    return info.value


@pytest.mark.parametrize("name", PROFILES)
def test_text_summary_matches_the_protobuf_of_the_same_moment(name: str) -> None:
    proto, text = _pair(name)
    assert text.kind is proto.kind is ProfileKind(name)
    assert text.source_format == "go-text"
    assert text.time_nanos == NOW
    assert (text.total, text.total_count, text.cumulative) == (proto.total, proto.total_count, proto.cumulative)
    # The program's own sites are identical; the HTTP server's goroutines may differ by the request serving
    # each form (its background reader), which is not part of the program.
    own = [(s.function, s.file, s.line, s.value, s.count) for s in proto.sites if s.function.startswith("main.")]
    assert own
    assert own == [(s.function, s.file, s.line, s.value, s.count) for s in text.sites if s.function.startswith("main.")]
    assert text.other == pytest.approx(text.total - sum(s.value for s in text.sites))


def test_heap_text_is_scaled_and_names_the_leaking_function() -> None:
    proto, text = _pair("heap")
    assert text.sample_period == proto.sample_period > 0  # MemProfileRate: the sampling model needs it
    top = text.sites[0]
    assert top.function == "main.retainReports"
    assert top.file.endswith("snapshot/main.go")
    assert top.line == 26
    # 48 KiB buffers sampled at 64 KiB (`heap/131072`): each stands for 1 / (1 - exp(-0.75)) = 1.9 of them.
    assert top.value == pytest.approx(top.count * 48 * 1024, rel=0.02)
    assert top.count > 16
    assert text.cumulative is not None


def test_goroutine_groups_match_the_protobuf_where_the_text_shows_the_frames() -> None:
    proto, text = _pair("goroutine")
    leak = next(g for g in text.groups if g.function == "main.awaitAck")
    twin = next(g for g in proto.groups if g.function == "main.awaitAck")
    assert (leak.count, leak.blocking, leak.file, leak.line) == (twin.count, twin.blocking, twin.file, twin.line)
    assert twin.state == "chan receive"
    assert leak.state == ""  # Go hides runtime.chanrecv in debug=1 text: the state cannot be told
    _, leaked = _pair("goroutineleak")
    (group,) = leaked.groups
    assert (group.function, group.count, group.leaked) == ("main.awaitAck", 12, 12)


def test_visible_wait_states_are_named() -> None:
    text = (
        "goroutine profile: total 5\n"
        "4 @ 0x1 0x2 0x3 0x4\n"
        '# labels: {"job":"ledger"}\n'
        "#\t0x2\tinternal/sync.runtime_SemacquireMutex+0x24\t/go/src/runtime/sema.go:95\n"
        "#\t0x3\tsync.(*Mutex).Lock+0x17\t\t/go/src/sync/mutex.go:46\n"
        "#\t0x4\tmain.deduct+0x4a\t\t/app/main.go:54\n"
        "\n"
        "1 @\n"
    )
    summary = decode_profile(text.encode(), LIMITS, time_fallback_nanos=NOW)
    (group,) = summary.groups
    assert (group.state, group.blocking, group.function, group.line) == (
        "sync.Mutex.Lock",
        "sync.(*Mutex).Lock",
        "main.deduct",
        54,
    )
    assert summary.total == 5  # the empty stack counts, under "(other)"
    assert summary.other == 1


def test_heap_values_are_scaled_like_gos_tooling() -> None:
    # `heap/1048576` is twice Go's MemProfileRate: each record is divided by 1 - exp(-size / 524288).
    text = (
        "heap profile: 2: 2048 [3: 3072] @ heap/1048576\n"
        "2: 2048 [3: 3072] @ 0x4a 0x4b\n"
        "#\t0x49\tmain.keep+0x9\t/app/main.go:7\n"
        "#\t0x4a\tmain.main+0x1\t/app/main.go:3\n"
    )
    summary = decode_profile(gzip.compress(text.encode()), LIMITS, time_fallback_nanos=NOW)
    scale = 1 / (1 - math.exp(-1024 / 524288))
    assert summary.total == int(2048 * scale)
    assert summary.total_count == int(2 * scale)
    assert summary.cumulative == int(3 * scale)
    assert summary.sites[0].function == "main.keep"
    assert summary.sites[0].leaf == "main.keep"
    unscaled = decode_profile(text.replace("heap/1048576", "heap/2").encode(), LIMITS, time_fallback_nanos=NOW)
    assert (unscaled.total, unscaled.total_count) == (2048, 2)
    assert decode_profile(text.encode(), LIMITS, time_fallback_nanos=NOW, alloc_cumulative=False).cumulative is None


@pytest.mark.parametrize(
    ("count", "size", "rate", "expected"),
    [
        (0, 0, 524288, (0, 0)),
        (5, 500, 1, (5, 500)),  # every allocation recorded
        (5, 500, 0, (5, 500)),  # rate unknown: no scaling
        (1, 524288, 524288, (1, 829411)),  # 1 / (1 - e^-1) = 1.5819767
        (10, 10 << 20, 524288, (11, 12126966)),  # 1 MiB objects: 1 / (1 - e^-2) = 1.1565
        (10, 640 << 20, 524288, (10, 671088640)),  # 64 MiB objects are always sampled
    ],
)
def test_scale_heap_sample(count: int, size: int, rate: int, expected: tuple[int, int]) -> None:
    assert scale_heap_sample(count, size, rate) == expected


def test_scale_stays_finite_when_one_minus_exp_rounds_to_zero() -> None:
    objects, size = scale_heap_sample(3, 1, 10**18)  # average size 1/3 byte against a rate of 10^18
    assert (objects, size) == (pytest.approx(9e18, rel=1e-9), pytest.approx(3e18, rel=1e-9))


def test_mutex_delay_is_converted_with_cycles_per_second() -> None:
    text = (
        "--- mutex:\ncycles/second=2000000000\nsampling period=5\n3000 7 @ 0x10 0x20\n#\t0x1f\tmain.put+0x1\t/a.go:9\n"
    )
    summary = decode_profile(text.encode(), LIMITS, time_fallback_nanos=NOW)
    assert summary.kind is ProfileKind.MUTEX
    # The runtime already scaled the record by the sampling period: only cycles -> ns is applied.
    assert (summary.total, summary.total_count, summary.cumulative) == (1500, 7, 7)
    block = decode_profile(text.replace("mutex", "contention").encode(), LIMITS, time_fallback_nanos=NOW)
    assert block.kind is ProfileKind.BLOCK


def test_sniff() -> None:
    for name in PROFILES:
        assert looks_like_go_text((GO_TEXT / f"snapshot_{name}.txt").read_bytes())
    assert not looks_like_go_text(b"goroutine 1 [running]:\nmain.main()\n")
    assert not looks_like_go_text(gzip.decompress((GO_TEXT / "snapshot_heap.pb.gz").read_bytes()))
    assert not looks_like_go_text(b"not a profile at all\n")


def test_gperftools_heap_text_is_named() -> None:
    error = _reject(
        "heap profile:    2:   262144 [     4:   524288] @ heapprofile\n     1:   131072 [ 2: 262144] @ 0x1\n"
    )
    assert error.reason is RejectReason.BAD_TEXT
    assert "this is a gperftools heap profile, not one Go writes" in str(error)
    assert "accepted: pprof protobuf" in str(error)
    assert "debug=1 text of heap, allocs, goroutine, goroutineleak, mutex and block" in str(error)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("--- contentionz \ncycles/second=3000000000\n  3 2 @ 0x1\n", "contention profile"),
        ("--- contention:\ncycles/second=3000000000\nformat = systemtime\n3 2 @ 0x1\n", "gperftools contention"),
        ("heap profile: 1: 2 [3: 4] @ heap_v2/524288\n", "C++ heap_v2 heap profile"),
        ("heap profile: 1: 2 [3: 4] @ growthz\n", "C++ growthz heap profile"),
    ],
)
def test_other_legacy_text_formats_are_named(text: str, named: str) -> None:
    error = _reject(text)
    assert error.reason is RejectReason.BAD_TEXT
    assert named in str(error)
    assert "not one Go writes" in str(error)


def test_cpu_profiles_are_named() -> None:
    pprof = _reject((GO_TEXT / "snapshot_cpu.pb.gz").read_bytes())
    assert pprof.reason is RejectReason.UNSUPPORTED
    assert "[samples, cpu] (a CPU profile) is not a heap" in str(pprof)
    for header in (struct.pack("<5Q", 0, 3, 0, 10000, 0), struct.pack(">5I", 0, 3, 0, 10000, 0)):
        legacy = _reject(header + struct.pack("<3Q", 1, 1, 0x401000))
        assert legacy.reason is RejectReason.UNSUPPORTED
        assert "this is a legacy binary CPU profile" in str(legacy)
    trace = _reject(b"go 1.23 trace\x00\x00\x00" + bytes(32))
    assert "Go execution trace" in str(trace)
    threads = _reject((GO_TEXT / "snapshot_threadcreate.txt").read_bytes())
    assert threads.reason is RejectReason.UNSUPPORTED
    assert "this is a Go threadcreate profile (no leak signal); accepted:" in str(threads)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("heap profile: 1: 2 [3: 4] @ heap/1024\n1: x [1: 2] @ 0x1\n", "line 2: in-use bytes is not a non-neg"),
        ("heap profile: 1: 2 [3: 4] @ heap/1024\n0: 2 [1: 2] @ 0x1\n", "line 2: in-use objects are 0 but"),
        ("heap profile: 1: 2 [3: 4] @ heap/1024\n1: -9 [1: 2] @ 0x1\n", "line 2: in-use bytes is not a non-negative"),
        ("heap profile: 1: 2 [3: 4] @ heap/1024\n1: 2 [1: 2] @ 0xZZ\n", "line 2: '0xZZ' is not a hex address"),
        ("heap profile: 1: 2 [3: 4] @ heap/1024\nhello\n", "line 2: expected a record '<values> @ 0x...'"),
        ("heap profile: 1: 2 [3: 4] @ heap/x\n", "line 1: the sampling rate is not a number"),
        ("--- mutex:\n3000 7 @ 0x10\n", "line 2: no 'cycles/second=' line before the first record"),
        ("--- mutex:\ncycles/second=1\ncolour=blue\n", "line 3: unknown attribute 'colour'"),
        ("--- mutex:\ncycles/second=1\n1 2 3 @ 0x1\n", "line 3: expected a record"),
        ("goroutine profile: total 5\n4 @ 0x1\n", "line 1: the header says 5 but the records add up to 4"),
        ("goroutine profile: total 1\n1 @ 0x1\n#\tmain.f\n", "line 3: expected a frame"),
        ("--- weird:\n", "line 1: not a Go '--- mutex:' or '--- contention:' header"),
    ],
)
def test_malformed_text_names_the_line(text: str, message: str) -> None:
    error = _reject(text)
    assert error.reason is RejectReason.BAD_TEXT
    assert message in str(error), str(error)


def test_not_utf8_names_the_line() -> None:
    error = _reject(b"goroutine profile: total 1\n1 @ 0x1\n#\t0x1\tmain.\xff+0x1\t/a.go:1\n")
    assert error.reason is RejectReason.BAD_TEXT
    assert "line 3: not valid UTF-8" in str(error)


def test_text_needs_a_time() -> None:
    with pytest.raises(InvalidProfileError) as info:
        decode_profile((GO_TEXT / "snapshot_mutex.txt").read_bytes(), LIMITS)
    assert info.value.reason is RejectReason.BAD_VALUES
    assert "carries no timestamp" in str(info.value)


def test_bounds() -> None:
    data = (GO_TEXT / "snapshot_heap.txt").read_bytes()
    records = DecodeLimits(max_samples=3)
    error = _reject(data, records)
    assert error.reason is RejectReason.TOO_MANY_ITEMS
    assert "more than 3 records (max_samples)" in str(error)
    frames = _reject(data, DecodeLimits(max_locations=5))
    assert frames.reason is RejectReason.TOO_MANY_ITEMS
    assert "more than 5 frames (max_locations)" in str(frames)
    with pytest.raises(PayloadTooLargeError):
        decode_profile(data, DecodeLimits(max_decompressed_bytes=1000), time_fallback_nanos=NOW)
    top = decode_profile(data, DecodeLimits(top_sites=1), time_fallback_nanos=NOW)
    assert len(top.sites) == 1
    assert top.other == top.total - top.sites[0].value


def test_mutated_profiles_give_a_summary_or_a_clear_error() -> None:
    """Byte-level mutations of real captures: never an exception other than InvalidProfileError."""
    rng = random.Random(19)
    originals = [(GO_TEXT / f"snapshot_{name}.txt").read_bytes() for name in PROFILES]
    outcomes = {"summary": 0, "error": 0}
    messages: list[str] = []
    for i in range(3000):
        data = bytearray(originals[i % len(originals)])
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            data[at] = rng.choice(b"0123456789 :@[]#-x\t\n\xff")
        try:
            decode_profile(bytes(data), LIMITS, time_fallback_nanos=NOW)
            outcomes["summary"] += 1
        except InvalidProfileError as exc:
            messages.append(str(exc))
            outcomes["error"] += 1
    assert not [m for m in messages if "\n" in m]
    assert outcomes["summary"] > 100
    assert outcomes["error"] > 100
