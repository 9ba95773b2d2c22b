"""A lock wait in library code only is named after the lock's user, not after `sync.(*Mutex).Lock`.

The fixed inventory (tests/testdata/inventory/v2-fixed, real Go block profiles) has one lock wait left that
no user frame is on: net/http's connection reader waiting for its own mutex. Attribution names the first
frame a human would change; for stacks of runtime and standard library frames only, it names the innermost
frame outside the runtime and the `sync` primitives: the caller of the lock.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_leakproc.model import ProfileKind
from otel_leakproc.receiver.decode import DecodeLimits, decode_profile
from otel_leakproc.receiver.decode import pprof as pprof_module
from otel_leakproc.receiver.decode.frames import is_primitive_frame

INVENTORY = Path(__file__).resolve().parents[2] / "testdata" / "inventory"
NOW = 1_790_000_000 * 10**9


@pytest.mark.parametrize("fast_from", [0, 10**9])  # the vectorised path and the sample-by-sample one
def test_net_http_waiting_for_its_own_mutex_is_named_after_the_caller(
    monkeypatch: pytest.MonkeyPatch, fast_from: int
) -> None:
    monkeypatch.setattr(pprof_module, "FAST_PATH_MIN_SAMPLES", fast_from)
    data = sorted((INVENTORY / "v2-fixed" / "block").glob("*.pb.gz"))[-1].read_bytes()
    summary = decode_profile(data, DecodeLimits())
    names = {site.function: site for site in summary.sites}
    assert "sync.(*Mutex).Lock" not in names
    site = names["net/http.(*connReader).lock"]
    assert site.leaf == "sync.(*Mutex).Lock"  # the leaf still says what it waited in (lock-wait filtering)
    assert site.file.endswith("net/http/server.go")


def test_text_profiles_name_the_same_frame() -> None:
    text = (
        "--- contention:\n"
        "cycles/second=2793435633\n"
        "21199 1 @ 0x1 0x2 0x3\n"
        "#\t0x1\tsync.(*Mutex).Lock+0xf\t/go/src/sync/mutex.go:46\n"
        "#\t0x2\tnet/http.(*connReader).lock+0x2a\t/go/src/net/http/server.go:686\n"
        "#\t0x3\tnet/http.(*connReader).backgroundRead+0x3e\t/go/src/net/http/server.go:693\n"
        "\n"
        "5000 2 @ 0x4 0x5\n"
        "#\t0x4\tinternal/sync.(*Mutex).lockSlow+0x1a\t/go/src/internal/sync/mutex.go:149\n"
        "#\t0x5\tsync.(*Mutex).Lock+0x2b\t/go/src/sync/mutex.go:46\n"
    )
    summary = decode_profile(text.encode(), DecodeLimits(), kind_hint=ProfileKind.BLOCK, time_fallback_nanos=NOW)
    names = [site.function for site in summary.sites]
    # The second stack has nothing but primitives: its leaf is named, as before.
    assert names == ["net/http.(*connReader).lock", "internal/sync.(*Mutex).lockSlow"]


def test_which_frames_are_primitives() -> None:
    for name in ("sync.(*Mutex).Lock", "sync.(*RWMutex).RLock", "internal/sync.(*Mutex).lockSlow", "runtime.unlock"):
        assert is_primitive_frame(name), name
    for name in ("net/http.(*connReader).lock", "main.(*LockedStockMap).Get", "syncmap.Get", "sync/atomic.AddInt64"):
        assert not is_primitive_frame(name), name
