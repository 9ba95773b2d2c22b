"""A goroutine debug=2 dump becomes bounded evidence: largest groups, wait minutes, stacks."""

from __future__ import annotations

from otel_leakproc.receiver.scrape.evidence import cut_at_goroutine, dump_evidence


def goroutine(ident: int, header: str, frames: str) -> str:
    return f"goroutine {ident} [{header}]:\n{frames}\n"


LEAKED = (
    "main.waitForReply(0xc000112000)\n\t/src/leaky/main.go:44 +0x1d\n"
    "created by main.main.func1 in goroutine 7\n\t/src/leaky/main.go:83 +0x7a"
)
LOCKED = (
    "sync.runtime_SemacquireMutex(0xc00001c0a4, 0x0, 0x1)\n\t/go/src/runtime/sema.go:95 +0x25\n"
    "sync.(*Mutex).lockSlow(0x5f1a20)\n\t/go/src/sync/mutex.go:173 +0x15d\n"
    "main.deductBatch(0x64)\n\t/src/leaky/main.go:55 +0x3c\n"
    "created by main.main.func2.1 in goroutine 9\n\t/src/leaky/main.go:93 +0x25"
)
DUMP = "\n".join(
    [goroutine(1, "IO wait", "internal/poll.runtime_pollWait(0x7f, 0x72)\n\t/go/src/runtime/netpoll.go:351 +0x85")]
    + [goroutine(10 + i, f"chan receive (leaked), {i} minutes", LEAKED) for i in range(5)]
    + [goroutine(40 + i, "sync.Mutex.Lock", LOCKED) for i in range(3)]
)


def test_groups_counts_wait_minutes_and_stacks() -> None:
    evidence = dump_evidence(DUMP, max_groups=10, max_frames=24)
    assert evidence["goroutines"] == 9
    assert evidence["groups_total"] == 3
    assert evidence["max_wait_minutes"] == 4
    top, second = evidence["groups"][:2]
    assert top == {
        "count": 5,
        "state": "chan receive",
        "max_wait_minutes": 4,
        "leaked": 5,
        "function": "main.waitForReply",
        "creator": "main.main.func1",
        "stack": ["main.waitForReply /src/leaky/main.go:44"],
    }
    assert second["function"] == "main.deductBatch"  # the first frame outside sync/runtime
    assert second["stack"][0] == "sync.runtime_SemacquireMutex /go/src/runtime/sema.go:95"
    assert second["leaked"] == 0


def test_bounds() -> None:
    evidence = dump_evidence(DUMP, max_groups=1, max_frames=2)
    assert len(evidence["groups"]) == 1
    assert evidence["groups_total"] == 3
    small = dump_evidence(DUMP, max_groups=3, max_frames=1)
    assert all(len(g["stack"]) <= 1 for g in small["groups"])


def test_cut_keeps_whole_goroutines() -> None:
    cut = cut_at_goroutine(DUMP[: len(DUMP) // 2])
    assert cut.endswith("\n")
    assert dump_evidence(cut, 10, 24)["goroutines"] == cut.count("goroutine ") - cut.count("in goroutine ")
    assert cut_at_goroutine("goroutine 1 [running]:\nmain.main()") == ""
