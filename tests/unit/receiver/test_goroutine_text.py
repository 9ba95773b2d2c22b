"""Tests for the debug=2 goroutine dump decoder.

Real dumps in tests/testdata/goroutine-text/ are copies from the labelled corpus (Go 1.19 goroutine
dumps and a Go 1.27 goroutineleak dump); the edge cases are small hand-written dumps in Go's format.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from otel_leakproc.errors import InvalidProfileError, RejectReason
from otel_leakproc.model import GoroutineGroup, ProfileKind, ProfileSummary
from otel_leakproc.receiver.decode.goroutine_text import looks_like_goroutine_dump, parse_goroutine_dump
from otel_leakproc.receiver.decode.limits import DecodeLimits

TESTDATA = Path(__file__).resolve().parents[2] / "testdata" / "goroutine-text"
LIMITS = DecodeLimits()
T0 = 1_790_000_000 * 10**9


def _read(name: str) -> bytes:
    return (TESTDATA / name).read_bytes()


def _parse(text: str | bytes, limits: DecodeLimits = LIMITS, kind: ProfileKind | None = None) -> ProfileSummary:
    data = text.encode() if isinstance(text, str) else text
    return parse_goroutine_dump(data, limits, time_nanos=T0, kind=kind)


def _only_group(text: str) -> GoroutineGroup:
    summary = _parse(text)
    assert len(summary.groups) == 1
    return summary.groups[0]


def _group(summary: ProfileSummary, function: str) -> GoroutineGroup:
    matches = [g for g in summary.groups if g.function == function]
    assert len(matches) == 1, summary.groups
    return matches[0]


def _reject(text: str | bytes, limits: DecodeLimits = LIMITS) -> InvalidProfileError:
    with pytest.raises(InvalidProfileError) as info:
        _parse(text, limits)
    return info.value


# A user goroutine blocked in a channel receive; the header line is substituted per test.
ONE = """{header}
main.(*Client).awaitAck(0xc00001a090, 0x0?)
\t/src/app/client.go:147 +0x2c
created by main.(*Client).request in goroutine 1
\t/src/app/client.go:137 +0xaa
"""


# --- sniffing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"goroutine 1 [running]:\nmain.main()\n", True),
        (b"\r\n\n  \tgoroutine 42 [chan receive]:\n", True),
        (b"\xef\xbb\xbfgoroutine 7 [select]:\n", True),
        (b"goroutine profile: total 12\n", False),  # debug=1 text
        (b"goroutine x [running]:\n", False),
        (b"goroutine ", False),
        (b"", False),
        (b"\x1f\x8b\x08\x00", False),
        (b"panic: boom\n\ngoroutine 1 [running]:\n", False),
    ],
)
def test_looks_like_goroutine_dump(data: bytes, expected: bool) -> None:
    assert looks_like_goroutine_dump(data) is expected


def test_sniff_accepts_every_bundled_dump() -> None:
    for path in TESTDATA.glob("*.txt"):
        assert looks_like_goroutine_dump(path.read_bytes()), path.name


# --- real dumps -----------------------------------------------------------------------------------


def test_go119_goroutine_leak_dump() -> None:
    summary = _parse(_read("goroutine_leak_0059.txt"))

    assert summary.kind is ProfileKind.GOROUTINE
    assert summary.total == 321
    assert summary.total_count == 321
    assert summary.time_nanos == T0
    assert summary.source_format == "goroutine-text"
    assert summary.has_wait_times is True
    assert summary.labels == {}
    assert sum(g.count for g in summary.groups) == 321

    top = summary.groups[0]
    assert top == GoroutineGroup(
        state="chan receive",
        blocking="main.(*supplierQuoteClient).awaitQuoteAck",
        function="main.(*supplierQuoteClient).awaitQuoteAck",
        file="corpusgen/main.go",
        line=1147,
        creator="main.(*supplierQuoteClient).requestSupplierQuotes",
        count=305,
        max_wait_minutes=0,
        leaked=0,
    )
    # time.Sleep lives in runtime/time.go but is package time: it is the blocking frame.
    janitor = _group(summary, "main.(*orderPageCache).janitor")
    assert (janitor.state, janitor.blocking, janitor.line) == ("sleep", "time.Sleep", 624)
    # The goroutine writing the dump stays, attributed to the user frame that asked for it.
    writer = _group(summary, "main.(*snapshotter).write")
    assert (writer.state, writer.blocking, writer.creator) == (
        "running",
        "runtime/pprof.writeGoroutineStacks",
        "",
    )

    site = summary.sites[0]
    assert (site.function, site.file, site.line, site.value, site.count) == (
        "main.(*supplierQuoteClient).awaitQuoteAck",
        "corpusgen/main.go",
        1147,
        305,
        305,
    )
    assert sum(s.value for s in summary.sites) + summary.other == summary.total


def test_go119_lock_contention_dump_names_the_lock_not_the_semaphore() -> None:
    summary = _parse(_read("lock_contention_0030.txt"))

    assert summary.total == 56
    readers = summary.groups[0]
    assert readers.count == 40
    assert readers.state == "semacquire"
    # sync.runtime_SemacquireMutex is a runtime hook: the caller is where the goroutine blocks.
    assert readers.blocking == "sync.(*RWMutex).RLock"
    assert readers.function == "main.stockReconciler.availableToPromise"
    assert readers.line == 1268
    assert readers.creator == "main.bootStockReconciliation"
    # Same stack in two states is two groups.
    workers = [g for g in summary.groups if g.function == "main.(*orderAPIServer).orderWorker"]
    assert sorted((g.state, g.count) for g in workers) == [("runnable", 1), ("select", 8)]
    assert summary.sites[0].leaf == "sync.runtime_SemacquireMutex"


def test_go127_goroutineleak_dump_infers_kind_and_counts_only_leaked() -> None:
    summary = _parse(_read("goroutineleak_go127_0010.txt"))

    assert summary.kind is ProfileKind.GOROUTINELEAK
    assert summary.total == 45  # leaked goroutines only
    assert summary.total_count == 96  # every goroutine in the dump
    leak = summary.groups[0]
    assert (leak.state, leak.blocking, leak.function, leak.line, leak.creator) == (
        "chan receive",
        "main.awaitReply",
        "main.awaitReply",
        18,
        "main.fanOutLookups",
    )
    assert (leak.count, leak.leaked) == (45, 45)
    # The idle pool is listed (frames without "+0x" offsets) but is not leaked.
    pool = _group(summary, "main.worker")
    assert (pool.count, pool.leaked, pool.file, pool.line, pool.creator) == (
        50,
        0,
        "leakgen/main.go",
        29,
        "main.main",
    )
    # Sites carry leaked goroutines only, so the pool and the dumping goroutine are not sites.
    assert [(s.function, s.value) for s in summary.sites] == [("main.awaitReply", 45)]
    assert summary.other == 0


def test_go127_goroutineleak_dump_read_as_goroutine_profile() -> None:
    summary = _parse(_read("goroutineleak_go127_0010.txt"), kind=ProfileKind.GOROUTINE)

    assert summary.kind is ProfileKind.GOROUTINE
    assert summary.total == 96
    # Ranked by count now: the pool of 50 comes before the 45 leaked goroutines.
    assert [(g.function, g.count, g.leaked) for g in summary.groups[:2]] == [
        ("main.worker", 50, 0),
        ("main.awaitReply", 45, 45),
    ]
    assert [(s.function, s.value) for s in summary.sites[:2]] == [("main.worker", 50), ("main.awaitReply", 45)]


def test_goroutineleak_kind_ranks_leaked_groups_first_even_when_smaller() -> None:
    dump = "\n".join(
        [ONE.format(header=f"goroutine {i} [select]:") for i in range(10, 15)]
        + [
            "goroutine 99 [chan send (leaked)]:\nmain.orphan()\n\t/src/app/o.go:3 +0x1\n",
        ]
    )
    summary = _parse(dump, kind=ProfileKind.GOROUTINELEAK)

    assert summary.total == 1
    assert summary.total_count == 6
    assert [(g.function, g.count, g.leaked) for g in summary.groups] == [
        ("main.orphan", 1, 1),
        ("main.(*Client).awaitAck", 5, 0),
    ]
    assert [(s.function, s.value) for s in summary.sites] == [("main.orphan", 1)]


def test_goroutineleak_kind_without_leaks_has_zero_total() -> None:
    summary = _parse(ONE.format(header="goroutine 3 [select]:"), kind=ProfileKind.GOROUTINELEAK)
    assert (summary.kind, summary.total, summary.total_count, summary.sites) == (
        ProfileKind.GOROUTINELEAK,
        0,
        1,
        (),
    )
    assert summary.groups[0].count == 1


# --- headers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "state", "leaked", "minutes"),
    [
        ("goroutine 18 [chan receive, 37 minutes]:", "chan receive", 0, 37),
        ("goroutine 6 [chan send (leaked)]:", "chan send", 1, 0),
        ("goroutine 7 [chan receive (nil chan), 5 minutes, locked to thread]:", "chan receive (nil chan)", 0, 5),
        ("goroutine 8 [select (no cases)]:", "select (no cases)", 0, 0),
        ("goroutine 9 [chan receive (durable), synctest bubble 3]:", "chan receive (durable)", 0, 0),
        ("goroutine 10 [sleep (scan) (durable), 3 minutes, synctest bubble 12]:", "sleep (durable)", 0, 3),
        ("goroutine 11 [sync.Mutex.Lock (leaked) (scan), 1 minutes]:", "sync.Mutex.Lock", 1, 1),
        ("goroutine 12 [syscall, 90 minutes, locked to thread]:", "syscall", 0, 90),
        ("goroutine 5 [chan receive] {job: ingest, tenant: acme}:", "chan receive", 0, 0),
        # Quoted label values may contain the header's own delimiters.
        ('goroutine 5 [IO wait, 2 minutes] {"job]": "a, b: 3 minutes]", env: prod}:', "IO wait", 0, 2),
        ("goroutine 1 gp=0xc000002380 m=0 mp=0x5a1b20 [running]:", "running", 0, 0),
        ("goroutine 23 gp=0xc0000a2000 m=nil [IO wait, 12 minutes]:", "IO wait", 0, 12),
        ("goroutine 5 [select] gp=0xc0000a2000 m=nil:", "select", 0, 0),  # suffix order, tolerated
        ("goroutine 4 [leaked (leaked)]:", "leaked", 1, 0),
    ],
)
def test_header_variants(header: str, state: str, leaked: int, minutes: int) -> None:
    group = _only_group(ONE.format(header=header))
    assert group.state == state
    assert group.leaked == leaked
    assert group.max_wait_minutes == minutes
    assert group.function == "main.(*Client).awaitAck"
    assert group.creator == "main.(*Client).request"


def test_wait_minutes_take_the_maximum_within_a_group() -> None:
    dump = "\n".join(
        ONE.format(header=h)
        for h in (
            "goroutine 20 [chan receive, 3 minutes]:",
            "goroutine 21 [chan receive, 41 minutes]:",
            "goroutine 22 [chan receive]:",
        )
    )
    group = _only_group(dump)
    assert (group.count, group.max_wait_minutes) == (3, 41)


# --- frames ---------------------------------------------------------------------------------------

# GOTRACEBACK=system style: runtime frames shown, fp/sp/pc after the offsets, a Windows path with a
# drive colon, a frame without "+0x", stdlib frames between the blocking and the user frame.
SYSTEM_TRACEBACK = """goroutine 35 gp=0xc000184000 m=nil [sync.Mutex.Lock, 7 minutes]:
runtime.gopark(0x0?, 0x0?, 0x0?, 0x0?, 0x0?)
\tC:/Program Files/Go/src/runtime/proc.go:435 +0xce fp=0xc00005de18 sp=0xc00005ddf8 pc=0x43b2ae
runtime.goparkunlock(...)
\tC:/Program Files/Go/src/runtime/proc.go:441
sync.runtime_SemacquireMutex(0xc0000140a4, 0x0, 0x1)
\tC:/Program Files/Go/src/runtime/sema.go:95 +0x25 fp=0xc00005de50 sp=0xc00005de18 pc=0x46e6a5
sync.(*Mutex).lockSlow(0xc0000140a0)
\tC:/Program Files/Go/src/sync/mutex.go:173 +0x15d
sync.(*Mutex).Lock(...)
\tC:/Program Files/Go/src/sync/mutex.go:92
net/http.HandlerFunc.ServeHTTP(0x0?, {0x7a2f40?, 0xc0001a40e0?}, 0x0?)
\tC:/Program Files/Go/src/net/http/server.go:2294 +0x29
github.com/acme/shop/internal/cart.(*Store).Reserve(0xc000014090, {0x6f1a2b, 0x3})
\tC:/work/shop:v2/internal/cart/store.go:88 +0x6a
github.com/acme/shop/internal/cart.Handler.func1({0x7a2f40, 0xc0001a40e0}, 0xc0001b2000)
\tC:/work/shop:v2/internal/cart/handler.go:31 +0x3d
created by net/http.(*Server).Serve in goroutine 1
\tC:/Program Files/Go/src/net/http/server.go:3454 +0x485
"""


def test_system_traceback_frames() -> None:
    group = _only_group(SYSTEM_TRACEBACK)
    assert group == GoroutineGroup(
        state="sync.Mutex.Lock",
        blocking="sync.(*Mutex).lockSlow",
        function="github.com/acme/shop/internal/cart.(*Store).Reserve",
        file="C:/work/shop:v2/internal/cart/store.go",
        line=88,
        creator="net/http.(*Server).Serve",
        count=1,
        max_wait_minutes=7,
    )
    summary = _parse(SYSTEM_TRACEBACK)
    assert summary.sites[0].leaf == "runtime.gopark"


def test_crlf_line_ends() -> None:
    summary = _parse(SYSTEM_TRACEBACK.replace("\n", "\r\n") + "\r\n" + ONE.format(header="goroutine 2 [select]:"))
    assert summary.total == 2
    group = _group(summary, "github.com/acme/shop/internal/cart.(*Store).Reserve")
    assert (group.file, group.line, group.creator) == (
        "C:/work/shop:v2/internal/cart/store.go",
        88,
        "net/http.(*Server).Serve",
    )
    assert _group(summary, "main.(*Client).awaitAck").state == "select"


def test_elided_frames_keep_innermost_frames_and_creator() -> None:
    inner = "main.recurse(0x3e8)\n\t/app/main.go:5 +0x25\n" * 3
    dump = (
        "goroutine 7 [chan receive, 2 minutes]:\n"
        "main.waitDeep(...)\n\t/app/main.go:12\n"
        + inner
        + "...1000 frames elided...\n"
        + "main.recurse(...)\n\t/app/main.go:5 +0x25\n"
        + "created by main.start in goroutine 1\n\t/app/main.go:20 +0x3c\n"
    )
    group = _only_group(dump)
    assert (group.blocking, group.function, group.line, group.creator, group.max_wait_minutes) == (
        "main.waitDeep",
        "main.waitDeep",
        12,
        "main.start",
        2,
    )


def test_ancestor_sections_are_ignored() -> None:
    dump = """goroutine 6 [chan receive]:
time.Sleep(0x3b9aca00)
\t/usr/lib/go/src/runtime/time.go:300 +0x10
main.child()
\t/app/main.go:10 +0x25
created by main.parent in goroutine 5
\t/app/main.go:20 +0x3c
[originating from goroutine 5]:
main.parent(...)
\t/app/main.go:20 +0x3c
created by main.main
\t/app/main.go:30 +0x44
[originating from goroutine 1]:
main.main(...)
\t/app/main.go:30 +0x44
...additional frames elided...
"""
    group = _only_group(dump)
    assert (group.blocking, group.function, group.line, group.creator) == (
        "time.Sleep",
        "main.child",
        10,
        "main.parent",
    )


def test_old_created_by_form_and_main_goroutine_without_creator() -> None:
    dump = """goroutine 1 [chan receive (nil chan)]:
main.main()
\t/app/main.go:9 +0x1e

goroutine 8 [select (no cases)]:
main.forever()
\t/app/main.go:14 +0x11
created by main.main
\t/app/main.go:8 +0x2a
"""
    summary = _parse(dump)
    assert _group(summary, "main.main").creator == ""
    assert _group(summary, "main.main").state == "chan receive (nil chan)"
    assert _group(summary, "main.forever").creator == "main.main"


def test_all_runtime_stack_falls_back_to_the_innermost_frame() -> None:
    dump = """goroutine 2 [force gc (idle)]:
runtime.gopark(0x0?, 0x0?, 0x0?, 0x0?, 0x0?)
\t/usr/lib/go/src/runtime/proc.go:435 +0xce
runtime.forcegchelper()
\t/usr/lib/go/src/runtime/proc.go:348 +0xb3
created by runtime.init.7 in goroutine 1
\t/usr/lib/go/src/runtime/proc.go:336 +0x1a
"""
    group = _only_group(dump)
    assert (group.state, group.blocking, group.function, group.file, group.line, group.creator) == (
        "force gc (idle)",
        "",
        "runtime.gopark",
        "/usr/lib/go/src/runtime/proc.go",
        435,
        "runtime.init.7",
    )


def test_stdlib_only_stack_falls_back_to_the_blocking_frame() -> None:
    dump = """goroutine 9 [IO wait]:
internal/poll.runtime_pollWait(0x7f, 0x72)
\t/usr/lib/go/src/runtime/netpoll.go:351 +0x85
internal/poll.(*pollDesc).wait(0xc0000a0000?, 0x0?, 0x0)
\t/usr/lib/go/src/internal/poll/fd_poll_runtime.go:84 +0x27
net/http.(*conn).serve(0xc0000b2000, {0x7a2f40, 0xc0000a4000})
\t/usr/lib/go/src/net/http/server.go:2102 +0x625
created by net/http.(*Server).Serve in goroutine 1
\t/usr/lib/go/src/net/http/server.go:3454 +0x485
"""
    group = _only_group(dump)
    assert (group.blocking, group.function, group.line) == (
        "internal/poll.(*pollDesc).wait",
        "internal/poll.(*pollDesc).wait",
        84,
    )


def test_user_function_named_like_a_runtime_hook_is_user_code() -> None:
    dump = "goroutine 4 [select]:\nmain.runtime_loop()\n\t/app/main.go:3 +0x1\n"
    group = _only_group(dump)
    assert (group.blocking, group.function) == ("main.runtime_loop", "main.runtime_loop")


def test_group_location_is_that_of_its_largest_variant() -> None:
    # Same function, blocked at two lines: one group (the key has no line), two sites.
    at_40 = "main.poll(0x1)\n\t/app/p.go:40 +0x10\ncreated by main.start\n\t/app/p.go:9 +0x2\n"
    at_52 = at_40.replace("p.go:40", "p.go:52")
    dump = "\n".join(f"goroutine {i} [select]:\n{at_52 if i % 3 else at_40}" for i in range(3, 9))
    summary = _parse(dump)
    assert len(summary.groups) == 1
    assert (summary.groups[0].count, summary.groups[0].line) == (6, 52)
    assert [(s.line, s.value) for s in summary.sites] == [(52, 4), (40, 2)]


def test_panic_preamble_and_trailer_are_tolerated() -> None:
    dump = "panic: send on closed channel\n\n" + ONE.format(header="goroutine 1 [running]:") + "\nexit status 2\n"
    summary = _parse(dump)
    assert summary.total == 1
    assert summary.groups[0].function == "main.(*Client).awaitAck"


def test_indented_first_header() -> None:
    summary = _parse("\n  " + ONE.format(header="goroutine 3 [select]:"))
    assert summary.total == 1
    assert summary.groups[0].state == "select"


def test_panicking_goroutine_is_attributed_to_the_panicking_caller() -> None:
    dump = """goroutine 12 [running]:
panic({0x4a0b40?, 0x4d2b40?})
\t/usr/lib/go/src/runtime/panic.go:792 +0x132
main.(*Parser).mustParse(0xc0000a2000)
\t/app/parse.go:61 +0x8b
created by main.serve in goroutine 1
\t/app/main.go:33 +0x45
"""
    group = _only_group(dump)
    assert (group.blocking, group.function, group.line) == (
        "main.(*Parser).mustParse",
        "main.(*Parser).mustParse",
        61,
    )


def test_goroutine_without_stack() -> None:
    dump = "goroutine 17 [running]:\n\tgoroutine running on other thread; stack unavailable\n"
    group = _only_group(dump)
    assert (group.state, group.blocking, group.function, group.line, group.count) == ("running", "", "", 0, 1)
    assert _parse(dump).sites == ()
    assert _parse(dump).other == 1


# --- bounds ---------------------------------------------------------------------------------------


def _many(n: int) -> str:
    # Goroutine j blocks in main.f{j % 5}: five groups of n / 5.
    return "\n".join(f"goroutine {j} [select]:\nmain.f{j % 5}()\n\t/app/f.go:{10 + j % 5} +0x1\n" for j in range(n))


def test_top_groups_and_top_sites_bound_the_output() -> None:
    dump = (
        _many(20)
        + "\n"
        + "\n".join(f"goroutine {100 + j} [chan receive]:\nmain.hot()\n\t/app/h.go:7 +0x1\n" for j in range(9))
    )
    summary = _parse(dump, DecodeLimits(top_groups=2, top_sites=3))
    assert summary.total == 29
    assert [(g.function, g.count) for g in summary.groups] == [("main.hot", 9), ("main.f0", 4)]
    assert [(s.function, s.value) for s in summary.sites] == [("main.hot", 9), ("main.f0", 4), ("main.f1", 4)]
    assert summary.other == 29 - 17


def test_too_many_goroutines() -> None:
    err = _reject(_many(11), DecodeLimits(max_samples=10))
    assert err.reason is RejectReason.TOO_MANY_ITEMS
    assert "10" in str(err)
    assert _parse(_many(10), DecodeLimits(max_samples=10)).total == 10


# --- errors ---------------------------------------------------------------------------------------


def test_invalid_utf8_names_the_line() -> None:
    data = ONE.format(header="goroutine 3 [select]:").encode() + b"main.f\xff\xfe()\n"
    err = _reject(data)
    assert err.reason is RejectReason.BAD_TEXT
    assert "line 6" in str(err)
    assert "UTF-8" in str(err)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("hello\nworld\n", 1),
        ("\n\nheap profile: 1: 2 [3: 4] @ heap/1048576\n", 3),
        ("\n \n  panic: boom\n", 3),
        ("", 1),
        (" \n\t\n", 1),
    ],
)
def test_no_goroutine_header(text: str, line: int) -> None:
    err = _reject(text)
    assert err.reason is RejectReason.BAD_TEXT
    assert f"line {line}" in str(err)
    assert "goroutine <id>" in str(err)


@pytest.mark.parametrize(
    "header",
    [
        "goroutine x [running]:",
        "goroutine 5 running:",
        "goroutine 5 [running:",
        "goroutine 5 [running]",
        "goroutine 5 []:",
        "goroutine 5 [ (leaked)]:",
        "goroutine 5 [chan receive, many minutes]:",
        "goroutine 123456789012345678901234567890 [running]:",
        "goroutine  [running]:",
    ],
)
def test_malformed_header_names_line_and_shows_it(header: str) -> None:
    dump = ONE.format(header="goroutine 3 [select]:") + "\n" + ONE.format(header=header)
    err = _reject(dump)
    assert err.reason is RejectReason.BAD_TEXT
    assert "line 7" in str(err)
    assert header[:20] in str(err)


def test_malformed_header_is_truncated_in_the_message() -> None:
    header = "goroutine 5 [" + "x" * 5000
    err = _reject(header + "\n")
    assert "line 1" in str(err)
    assert len(str(err)) < 300


def test_non_goroutine_kind_is_unsupported() -> None:
    with pytest.raises(InvalidProfileError) as info:
        _parse(ONE.format(header="goroutine 3 [select]:"), kind=ProfileKind.HEAP)
    assert info.value.reason is RejectReason.UNSUPPORTED


def test_oversized_dump_is_too_large() -> None:
    err = _reject(ONE.format(header="goroutine 3 [select]:"), DecodeLimits(max_decompressed_bytes=50))
    assert err.reason is RejectReason.TOO_LARGE


# --- robustness -----------------------------------------------------------------------------------


def _parse_or_reject(data: bytes) -> None:
    try:
        summary = parse_goroutine_dump(data, DecodeLimits(max_samples=5000), time_nanos=0)
    except InvalidProfileError:
        return
    assert summary.total_count >= 1
    assert summary.total_count >= summary.total >= 0
    assert summary.other >= 0


def test_fuzz_random_bytes_truncations_and_mutations() -> None:
    rng = random.Random(20260101)
    real = [p.read_bytes() for p in sorted(TESTDATA.glob("*.txt"))]
    real.append(SYSTEM_TRACEBACK.encode())
    alphabet = b"goroutine [](){}:,.+0x\t\n\r 0123456789minutesleakedcreatedby...\xff"
    for _ in range(300):
        _parse_or_reject(rng.randbytes(rng.randrange(0, 400)))
        _parse_or_reject(b"goroutine 1 [" + bytes(rng.choice(alphabet) for _ in range(rng.randrange(200))))
    for dump in real:
        for _ in range(40):
            _parse_or_reject(dump[: rng.randrange(len(dump) + 1)])
            mutated = bytearray(dump)
            for _ in range(rng.randrange(1, 20)):
                mutated[rng.randrange(len(mutated))] = rng.choice(alphabet)
            _parse_or_reject(bytes(mutated))
            lines = dump.split(b"\n")
            rng.shuffle(lines)
            _parse_or_reject(b"\n".join(lines))


def test_adversarial_long_lines_parse_in_linear_time() -> None:
    # A quadratic scan over these lines would take minutes; a linear one takes milliseconds.
    n = 200_000
    dump = (
        "goroutine 1 [select]:\n"
        "main.f" + "(" * n + ")\n"
        "\t" + ":1x" * n + "\n"
        "main.g()\n"
        "\t" + "a:" * n + "\n"
        "goroutine 2 [select" + ", 1 minutes" * (n // 10) + "]" + " {k: v}" * (n // 10) + ":\n"
    )
    started = time.perf_counter()
    summary = _parse(dump)
    assert time.perf_counter() - started < 2.0
    assert summary.total == 2


def test_ten_thousand_goroutines_parse_quickly() -> None:
    records = [
        record
        for path in sorted(TESTDATA.glob("*.txt"))
        for record in path.read_text().strip().split("\n\n")
        if "(leaked)" not in record
    ]
    dump = "\n\n".join(records[i % len(records)] for i in range(10_000)).encode()
    started = time.perf_counter()
    summary = _parse(dump)
    elapsed = time.perf_counter() - started
    assert summary.total == 10_000
    assert sum(g.count for g in summary.groups) == 10_000
    # Generous bound for slow CI machines; typically ~0.1 s.
    assert elapsed < 3.0
