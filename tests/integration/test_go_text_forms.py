"""Go's `?debug=1` text profiles against their protobuf twins, fetched from real Go programs.

`snapshot` (tests/testdata/go/snapshot) changes only on `GET /step` and is idle in between, so the two forms
of a profile fetched back to back describe the same moment. `leaky` leaks continuously; the scraper pulls
its text forms (`scrape.format: text`) and must flag what it flags from the protobuf.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_support import FAST_PROCESSOR, go_program, make_settings, running_service, series

from otel_leakproc.analyze import AnalyzeOptions, analyze_paths
from otel_leakproc.model import ProfileKind, ProfileSummary
from otel_leakproc.receiver.decode import DecodeLimits, decode_profile

pytestmark = pytest.mark.gotool

LIMITS = DecodeLimits()
GO = Path(__file__).resolve().parents[1] / "testdata" / "go"
HINTS = {"mutex": ProfileKind.MUTEX, "block": ProfileKind.BLOCK, "goroutineleak": ProfileKind.GOROUTINELEAK}
FLAGGED = ("suspected", "confirmed")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("go")


@pytest.fixture(scope="module")
def snapshot(work: Path) -> Iterator[str]:
    with go_program(GO / "snapshot", work) as url:
        yield url


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as reply:
        body: bytes = reply.read()
    return body


def both_forms(base: str, profile: str) -> tuple[bytes, bytes]:
    """The protobuf and the debug=1 text of one profile, fetched back to back."""
    return get(f"{base}/debug/pprof/{profile}"), get(f"{base}/debug/pprof/{profile}?debug=1")


def decode_both(profile: str, proto: bytes, text: bytes, now: int) -> tuple[ProfileSummary, ProfileSummary]:
    return (
        decode_profile(proto, LIMITS, kind_hint=HINTS.get(profile), time_fallback_nanos=now),
        decode_profile(text, LIMITS, time_fallback_nanos=now),
    )


def own_sites(summary: ProfileSummary) -> list[tuple[str, str, int, float, float]]:
    """The program's own sites (package main), which the HTTP server serving each request cannot change."""
    return [(s.function, s.file, s.line, s.value, s.count) for s in summary.sites if s.function.startswith("main.")]


@pytest.mark.parametrize("profile", ["heap", "allocs", "mutex", "block", "goroutine", "goroutineleak"])
def test_text_and_protobuf_of_the_same_moment_give_the_same_summary(snapshot: str, profile: str) -> None:
    get(f"{snapshot}/step")
    proto, text = decode_both(profile, *both_forms(snapshot, profile), time.time_ns())
    assert text.source_format == "go-text"
    assert text.kind is proto.kind
    assert own_sites(text) == own_sites(proto)
    assert own_sites(text), text
    if profile == "goroutine":
        # Each request is served by its own connection goroutines; the program's own are the same.
        assert abs(text.total - proto.total) <= 2
        leak = {g.function: g.count for g in text.groups}["main.awaitAck"]
        assert leak == {g.function: g.count for g in proto.groups}["main.awaitAck"]
        return
    # Heap values are scaled with exp() on both sides (Go's and Python's): at most a unit per record apart.
    assert text.total == pytest.approx(proto.total, rel=1e-6)
    assert text.total_count == pytest.approx(proto.total_count, rel=1e-6)
    if proto.cumulative is None:
        assert text.cumulative is None
    else:
        assert text.cumulative == pytest.approx(proto.cumulative, rel=1e-6)


def test_a_series_of_text_profiles_flags_the_same_leak_as_the_protobuf_series(snapshot: str, tmp_path: Path) -> None:
    profiles = ("heap", "goroutine", "goroutineleak", "mutex")
    text_times: dict[Path, int] = {}
    for i in range(30):
        get(f"{snapshot}/step")
        for profile in profiles:
            proto, text = both_forms(snapshot, profile)
            fetched = time.time_ns()
            for form, body in (("pb", proto), ("text", text)):
                path = tmp_path / form / "ledger" / profile / f"{i:03d}.{form}"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(body)
                text_times[path] = fetched  # the text carries no time of its own
        time.sleep(0.5)

    config = make_settings(tmp_path / "state", processor=FAST_PROCESSOR).processor
    from_proto = {
        r.report.key.kind: r.report for r in analyze_paths([str(tmp_path / "pb")], config, LIMITS, AnalyzeOptions())
    }
    from_text = {
        r.report.key.kind: r.report
        for r in analyze_paths(
            [str(tmp_path / "text")], config, LIMITS, AnalyzeOptions(time_of=lambda path: text_times[Path(path)])
        )
    }
    assert set(from_text) == set(from_proto) == {ProfileKind(p) for p in profiles}
    for kind in (ProfileKind.HEAP, ProfileKind.GOROUTINE, ProfileKind.GOROUTINELEAK):
        text, proto = from_text[kind], from_proto[kind]
        assert text.profiles == proto.profiles == 30
        assert proto.status.flagged, proto
        assert text.status is proto.status, (kind, text.status, proto.status)
        assert text.top_growers[0].function == proto.top_growers[0].function, kind
        assert text.growth_per_hour == pytest.approx(proto.growth_per_hour, rel=0.05)
    assert from_text[ProfileKind.HEAP].top_growers[0].function == "main.retainReports"
    assert from_text[ProfileKind.GOROUTINE].top_growers[0].function == "main.awaitAck"
    assert from_text[ProfileKind.MUTEX].top_growers[0].function == from_proto[ProfileKind.MUTEX].top_growers[0].function


def test_the_scraper_reads_the_text_form_when_configured(work: Path, tmp_path: Path) -> None:
    with go_program(GO / "leaky", work, LEAK_INTERVAL_MS="20") as leaky_url:
        settings = make_settings(
            tmp_path / "state",
            processor=FAST_PROCESSOR,
            scrape={
                "enabled": True,
                "interval_seconds": 0.5,
                "jitter": 0.2,
                "timeout_seconds": 3,
                "format": "text",
                "profiles": ["heap", "goroutineleak"],
                "static_targets": [{"url": f"{leaky_url}/debug/pprof", "service": "inventory", "instance": "inv-0"}],
                "dump_on_suspect": {"enabled": False},
            },
        )
        with running_service(settings) as svc:
            deadline = time.monotonic() + 90
            found: dict[str, dict[str, object]] = {}
            while time.monotonic() < deadline:
                found = {s["kind"]: s for s in series(svc.url, service="inventory")}
                if found.get("heap", {}).get("status") in FLAGGED and "goroutineleak" in found:
                    break
                time.sleep(0.5)
    heap = found["heap"]
    assert heap["status"] in FLAGGED, heap
    assert heap["top_growers"][0]["function"] == "main.(*sessionCache).rememberSession"  # type: ignore[index]
    leak = found["goroutineleak"]
    assert leak["status"] == "confirmed", leak
    grower = leak["top_growers"][0]  # type: ignore[index]
    assert grower["function"] == "main.waitForReply"
    # Only the protobuf form names the wait state (Go hides runtime.chanrecv in the text): this came as text.
    assert grower["state"] == ""
