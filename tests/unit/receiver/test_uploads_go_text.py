"""`POST /ingest` with Go's debug=1 text profiles: read without `format` (sniffed) or with `format=text`."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from otel_leakproc.errors import InvalidProfileError, RejectReason
from otel_leakproc.model import ProfileKind
from otel_leakproc.receiver.decode import decode_profile
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.uploads import UploadRequest, process_upload

GO_TEXT = Path(__file__).resolve().parents[2] / "testdata" / "go-text"
LIMITS = DecodeLimits()
RECEIVED = 1_800_000_000_000_000_000


def ingest(body: bytes, encoding: str = "", **query: str) -> UploadRequest:
    return UploadRequest("ingest", body, "", encoding, tuple(query.items()), RECEIVED)


@pytest.mark.parametrize("name", ["heap", "mutex", "block", "goroutine", "goroutineleak"])
def test_text_profile_without_format_is_read_like_analyze_reads_it(name: str) -> None:
    body = (GO_TEXT / f"snapshot_{name}.txt").read_bytes()
    result = process_upload(ingest(body, name="checkout{instance=pod-1}", until="1800000060"), LIMITS)
    (profile,) = result.profiles
    assert (profile.service, profile.instance) == ("checkout", "pod-1")
    summary = profile.summary
    assert summary.kind is ProfileKind(name)
    assert summary.source_format == "go-text"
    assert summary.time_nanos == 1_800_000_060 * 10**9  # `until`: the text carries no time of its own
    assert summary == decode_profile(body, LIMITS, time_fallback_nanos=summary.time_nanos)


def test_text_profile_with_format_text_and_gzip_content_encoding() -> None:
    body = gzip.compress((GO_TEXT / "snapshot_mutex.txt").read_bytes())
    result = process_upload(ingest(body, "gzip", name="checkout", format="text"), LIMITS)
    (profile,) = result.profiles
    assert profile.summary.kind is ProfileKind.MUTEX
    assert profile.summary.time_nanos == RECEIVED
    assert profile.summary.sites[0].function == "main.postEntry"


def test_gperftools_text_is_rejected_naming_it() -> None:
    body = b"heap profile:    1:   262144 [     1:   262144] @ heapprofile\n     1:   262144 [ 1: 262144] @ 0x1\n"
    with pytest.raises(InvalidProfileError) as info:
        process_upload(ingest(body, name="checkout"), LIMITS)
    assert info.value.reason is RejectReason.BAD_TEXT
    assert "body: text profile: line 1: this is a gperftools heap profile" in str(info.value)


def test_threadcreate_text_carries_no_leak_signal_and_is_skipped() -> None:
    body = (GO_TEXT / "snapshot_threadcreate.txt").read_bytes()
    result = process_upload(ingest(body, name="checkout", format="text"), LIMITS)
    assert result.profiles == ()
    (reason,) = result.ignored
    assert "Go threadcreate profile" in reason
    assert reason.endswith("(no leak signal, skipped)")


def test_format_text_on_a_protobuf_body_is_rejected() -> None:
    body = (GO_TEXT / "snapshot_heap.pb.gz").read_bytes()
    with pytest.raises(InvalidProfileError) as info:
        process_upload(ingest(body, name="checkout", format="text"), LIMITS)
    assert info.value.reason is RejectReason.BAD_TEXT
    assert "format=text but the body is neither a goroutine debug=2 dump nor a Go debug=1 text profile" in str(
        info.value
    )
