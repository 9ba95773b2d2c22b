"""Malformed uploads: each is rejected as a whole, with a reason and a message naming the field.

Bodies start from real profiles (tests/testdata/pprof/) and real captured requests
(tests/testdata/uploads/) and break one thing.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)
from opentelemetry.proto.profiles.v1development import profiles_pb2 as otlp

from otel_leakproc.errors import InvalidProfileError, PayloadTooLargeError, RejectReason
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.labels import parse_label_set
from otel_leakproc.receiver.proto import push_pb2
from otel_leakproc.receiver.uploads import UploadRequest, process_upload

TESTDATA = Path(__file__).resolve().parents[2] / "testdata"
HEAP = (TESTDATA / "pprof" / "go_heap_steady_leak_0059.pb.gz").read_bytes()
MUTEX = (TESTDATA / "pprof" / "go_mutex_lock_contention_0030.pb.gz").read_bytes()
TEXT = (TESTDATA / "goroutine-text" / "lock_contention_0030.txt").read_bytes()
CAPTURED_PUSH = (TESTDATA / "uploads" / "pyroscope-io-1.4.0" / "push_001.body").read_bytes()
LIMITS = DecodeLimits()
RECEIVED = 1_800_000_000_000_000_000
BOUNDARY = "f00dfeed"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def ingest(body: bytes = HEAP, content_type: str = "", encoding: str = "", **query: str) -> UploadRequest:
    query.setdefault("name", "checkout")
    return UploadRequest("ingest", body, content_type, encoding, tuple(query.items()), RECEIVED)


def part(name: str, content: bytes) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="x"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
    )


def form(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def push(message: push_pb2.PushRequest) -> UploadRequest:
    return UploadRequest("push", message.SerializeToString(), "application/proto", received_nanos=RECEIVED)


def one_series(labels: dict[str, str], *profiles: bytes) -> push_pb2.PushRequest:
    message = push_pb2.PushRequest()
    series = message.series.add()
    for key, value in labels.items():
        series.labels.add(name=key, value=value)
    for raw in profiles:
        series.samples.add(raw_profile=raw)
    return message


def rejected(request: UploadRequest, reason: RejectReason, *fragments: str, max_profiles: int = 64) -> str:
    with pytest.raises(InvalidProfileError) as info:
        process_upload(request, LIMITS, max_profiles)
    message = str(info.value)
    assert info.value.reason is reason, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --------------------------------------------------------------------------------------------------
# Transport-level


def test_unknown_content_encoding() -> None:
    rejected(ingest(encoding="br", format="pprof"), RejectReason.UNSUPPORTED, "Content-Encoding", "'br'", "gzip")


def test_gzip_content_encoding_on_a_plain_body() -> None:
    raw = gzip.decompress(HEAP)
    rejected(ingest(raw, encoding="gzip", format="pprof"), RejectReason.BAD_GZIP, "Content-Encoding: gzip")


def test_truncated_gzip_content_encoding() -> None:
    rejected(ingest(HEAP[: len(HEAP) // 2], encoding="gzip", format="pprof"), RejectReason.BAD_GZIP, "gzip")


def test_gzip_bomb_stops_at_the_decompressed_bound() -> None:
    bomb = gzip.compress(b"\0" * (2 * 1024 * 1024))
    with pytest.raises(PayloadTooLargeError, match="body"):
        process_upload(ingest(bomb, encoding="gzip", format="pprof"), DecodeLimits(max_decompressed_bytes=1024 * 1024))


def test_body_larger_than_the_bound() -> None:
    with pytest.raises(PayloadTooLargeError, match="body: size"):
        process_upload(ingest(format="pprof"), DecodeLimits(max_decompressed_bytes=len(HEAP) - 1))


def test_nested_profiles_share_one_decompressed_budget() -> None:
    size = len(gzip.decompress(HEAP))
    message = one_series({"__name__": "memory", "service_name": "a"}, HEAP, HEAP)
    with pytest.raises(PayloadTooLargeError, match=r"series\[0\]\.samples\[1\]\.raw_profile: .*together"):
        process_upload(push(message), DecodeLimits(max_decompressed_bytes=size + size // 2))


def test_unknown_dialect() -> None:
    request = UploadRequest("parca", HEAP)  # type: ignore[arg-type]
    rejected(request, RejectReason.UNSUPPORTED, "dialect", "'parca'")


# --------------------------------------------------------------------------------------------------
# /ingest


def test_ingest_missing_name() -> None:
    request = UploadRequest("ingest", HEAP, query=(("format", "pprof"),))
    rejected(request, RejectReason.BAD_VALUES, "name:", "required")


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("checkout{instance=pod-1", "not closed"),
        ("checkout{instance}", "'instance' has no '=value'"),
        ("{instance=pod-1}", "application name"),
        ("check out", "invalid character ' '"),
        ("checkout{in stance=1}", "label key 'in stance'"),
        ("checkout{a=1}x", "after the label set"),
        ("checkout{a=1,,b=2}", "empty label"),
        ("checkout}", "'}' without"),
        ("checkout{a={b}", "nested"),
    ],
)
def test_ingest_malformed_name(name: str, fragment: str) -> None:
    rejected(ingest(name=name, format="pprof"), RejectReason.BAD_VALUES, "name:", fragment)


def test_label_set_parsing_keeps_session_and_skips_reserved() -> None:
    parsed = parse_label_set(" app.v2 { __name__ = x , __session_id__ = 7f , k8s.pod.name = p-1 ,} ")
    assert parsed.app == "app.v2"
    assert parsed.labels == {"__session_id__": "7f", "k8s.pod.name": "p-1"}
    assert parse_label_set("app{}").labels == {}


@pytest.mark.parametrize(
    ("param", "value", "fragment"),
    [
        ("from", "123", "3 digits"),
        ("until", "20261340", "YYYYMMDD"),
        ("from", "yesterday", "not a time"),
        ("from", "now-1fortnight", "not a time"),
        ("until", "0000000000", "epoch"),
    ],
)
def test_ingest_bad_from_until(param: str, value: str, fragment: str) -> None:
    rejected(ingest(format="pprof", **{param: value}), RejectReason.BAD_VALUES, f"{param}:", fragment)


def test_ingest_until_before_from() -> None:
    request = ingest(format="pprof", **{"from": "1790000600", "until": "1790000000"})
    rejected(request, RejectReason.BAD_VALUES, "until:", "before from")


def test_ingest_relative_time_without_receive_time() -> None:
    request = UploadRequest("ingest", HEAP, query=(("name", "a"), ("format", "pprof"), ("from", "now-1h")))
    rejected(request, RejectReason.BAD_VALUES, "from:", "receive time")


@pytest.mark.parametrize("fmt", ["jfr", "trie", "tree", "lines", "speedscope", "groups"])
def test_ingest_other_pyroscope_formats_are_unsupported(fmt: str) -> None:
    rejected(ingest(b"whatever", format=fmt), RejectReason.UNSUPPORTED, "format:", repr(fmt))


def test_ingest_trie_content_type_is_unsupported() -> None:
    rejected(ingest(b"\x00\x01", "binary/octet-stream+trie"), RejectReason.UNSUPPORTED, "format:", "'trie'")


def test_ingest_unknown_format_lists_the_accepted_ones() -> None:
    rejected(ingest(format="pprofx"), RejectReason.UNSUPPORTED, "format: 'pprofx'", "pprof, goroutine, text")


def test_ingest_unknown_kind() -> None:
    rejected(ingest(format="pprof", kind="cpu"), RejectReason.BAD_VALUES, "kind: 'cpu'", "goroutineleak")


def test_ingest_collapsed_text_without_format_is_unsupported() -> None:
    body = b"main;handler;alloc 12\nmain;idle 3\n"
    rejected(ingest(body, "text/plain"), RejectReason.UNSUPPORTED, "format: missing", "groups", "format=pprof")


def test_ingest_format_text_with_a_pprof_body() -> None:
    rejected(ingest(HEAP, format="goroutine"), RejectReason.BAD_TEXT, "body: format=goroutine", "debug=2")


def test_ingest_format_pprof_with_garbage() -> None:
    rejected(ingest(b"\x07not a profile", format="pprof"), RejectReason.BAD_PROTOBUF, "body: profile")


def test_ingest_empty_body() -> None:
    rejected(ingest(b"", format="pprof"), RejectReason.EMPTY, "body", "empty")


def test_ingest_multipart_without_boundary() -> None:
    rejected(ingest(form(part("profile", HEAP)), "multipart/form-data"), RejectReason.BAD_VALUES, "boundary")


def test_ingest_multipart_with_a_different_boundary() -> None:
    request = ingest(form(part("profile", HEAP)), "multipart/form-data; boundary=other")
    rejected(request, RejectReason.BAD_VALUES, "boundary", "does not occur")


def test_ingest_multipart_truncated() -> None:
    body = form(part("profile", HEAP))
    rejected(ingest(body[: len(body) - 40], MULTIPART), RejectReason.BAD_VALUES, "multipart part 0", "not terminated")


def test_ingest_multipart_without_profile_part() -> None:
    body = form(part("sample_type_config", b"{}"))
    rejected(ingest(body, MULTIPART), RejectReason.BAD_VALUES, "multipart part 'profile' is required")


def test_ingest_multipart_prev_profile_is_unsupported() -> None:
    body = form(part("profile", HEAP), part("prev_profile", HEAP))
    rejected(ingest(body, MULTIPART), RejectReason.UNSUPPORTED, "prev_profile", "upgrade")


def test_ingest_multipart_duplicate_part() -> None:
    body = form(part("profile", HEAP), part("profile", HEAP))
    rejected(ingest(body, MULTIPART), RejectReason.BAD_VALUES, "'profile' appears twice")


def test_ingest_multipart_part_without_name() -> None:
    body = f"--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\n\r\n".encode() + HEAP + b"\r\n"
    rejected(ingest(form(body), MULTIPART), RejectReason.BAD_VALUES, "multipart part 0", "name")


def test_ingest_multipart_corrupt_profile_names_the_part() -> None:
    body = form(part("profile", HEAP[: len(HEAP) // 2]))
    rejected(ingest(body, MULTIPART), RejectReason.BAD_GZIP, "multipart part 'profile'", "gzip")


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"delay": 5}', "must be a JSON object"),
        (b'{"delay": {"display-name": 5}}', "delay.display-name"),
        (b'{"alloc_space": {"cumulative": "no"}}', "alloc_space.cumulative"),
    ],
)
def test_ingest_bad_sample_type_config(config: bytes, fragment: str) -> None:
    body = form(part("profile", MUTEX), part("sample_type_config", config))
    rejected(ingest(body, MULTIPART), RejectReason.BAD_VALUES, "sample_type_config", fragment)


def test_ingest_goroutine_text_with_a_broken_header() -> None:
    broken = TEXT.replace(b"goroutine 1 [", b"goroutine x1 [", 1)
    assert broken != TEXT
    rejected(ingest(broken, format="text"), RejectReason.BAD_TEXT, "body")


# --------------------------------------------------------------------------------------------------
# push


def test_push_unknown_content_type_lists_the_accepted_ones() -> None:
    request = UploadRequest("push", b"", "application/grpc")
    rejected(
        request, RejectReason.UNSUPPORTED, "Content-Type: 'application/grpc'", "application/proto", "application/json"
    )


def test_push_missing_content_type() -> None:
    rejected(UploadRequest("push", b""), RejectReason.UNSUPPORTED, "Content-Type: ''")


def test_push_body_not_a_push_request() -> None:
    request = UploadRequest("push", b"\xff\xff\xff\xff", "application/proto")
    rejected(request, RejectReason.BAD_PROTOBUF, "PushRequest", "not a valid protobuf")


def test_push_gzipped_body_without_content_encoding() -> None:
    # The real pyroscope-io body, but the transport lost the Content-Encoding header.
    request = UploadRequest("push", CAPTURED_PUSH, "application/proto")
    rejected(request, RejectReason.BAD_PROTOBUF, "PushRequest")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"series": [{"labels": [{"name": "__name__", "value": "memory"}], "bogus": 1}]}', "bogus"),
        (b'{"series": [{"samples": [{"rawProfile": "%%% not base64"}]}]}', "rawProfile"),
        (b'{"series": 3}', "series"),
        (b"[]", "must be an object"),
        (b"{", "proto3 JSON"),
        (b"\xff\xfe", "UTF-8"),
    ],
)
def test_push_json_that_is_not_valid_proto3_json(body: bytes, fragment: str) -> None:
    request = UploadRequest("push", body, "application/json")
    rejected(request, RejectReason.BAD_PROTOBUF, "PushRequest", fragment)


def test_push_too_many_profiles() -> None:
    message = one_series({"__name__": "memory", "service_name": "a"}, *[HEAP] * 5)
    rejected(push(message), RejectReason.TOO_MANY_ITEMS, "5 profiles", "limit of 4", max_profiles=4)


def test_push_one_bad_profile_rejects_the_whole_request() -> None:
    message = one_series({"__name__": "memory", "service_name": "a"}, HEAP, b"\x08\x01\x12garbage", HEAP)
    rejected(push(message), RejectReason.BAD_PROTOBUF, "series[0].samples[1].raw_profile")


def test_push_empty_raw_profile() -> None:
    message = one_series({"__name__": "memory", "service_name": "a"}, b"")
    rejected(push(message), RejectReason.EMPTY, "series[0].samples[0].raw_profile", "empty")


def test_push_duplicate_label() -> None:
    message = one_series({"__name__": "memory"}, HEAP)
    message.series[0].labels.add(name="__name__", value="mutex")
    rejected(push(message), RejectReason.BAD_VALUES, "series[0].labels[1].name", "duplicate")


def test_push_empty_label_name() -> None:
    message = one_series({"": "x"}, HEAP)
    rejected(push(message), RejectReason.BAD_VALUES, "series[0].labels[0].name: empty")


# --------------------------------------------------------------------------------------------------
# OTLP


def test_otlp_unknown_content_type() -> None:
    request = UploadRequest("otlp", b"", "text/plain")
    rejected(request, RejectReason.UNSUPPORTED, "'text/plain'", "application/x-protobuf", "application/json")


def test_otlp_bad_protobuf() -> None:
    request = UploadRequest("otlp", b"\xff\xff\xff", "application/x-protobuf")
    rejected(request, RejectReason.BAD_PROTOBUF, "ExportProfilesServiceRequest")


def test_otlp_bad_json() -> None:
    body = json.dumps({"resourceProfiles": [{"scopeProfiles": [{"profiles": [{"sampleType": "x"}]}]}]}).encode()
    rejected(UploadRequest("otlp", body, "application/json"), RejectReason.BAD_PROTOBUF, "OTLP JSON")


def test_otlp_too_many_profiles() -> None:
    request = ExportProfilesServiceRequest()
    request.dictionary.string_table.append("")
    scope = request.resource_profiles.add().scope_profiles.add()
    for _ in range(3):
        scope.profiles.append(otlp.Profile(original_payload_format="pprof", original_payload=HEAP))
    # Identical payloads are deduplicated by the converter; make them differ.
    for n, profile in enumerate(scope.profiles):
        profile.original_payload = gzip.compress(gzip.decompress(HEAP), mtime=n)
    body = request.SerializeToString()
    rejected(
        UploadRequest("otlp", body, "application/x-protobuf"), RejectReason.TOO_MANY_ITEMS, "3 profiles", max_profiles=2
    )


def test_otlp_bad_original_payload_names_the_profile() -> None:
    request = ExportProfilesServiceRequest()
    request.dictionary.string_table.append("")
    scope = request.resource_profiles.add().scope_profiles.add()
    scope.profiles.append(otlp.Profile(original_payload_format="pprof", original_payload=HEAP[:-20]))
    body = request.SerializeToString()
    rejected(UploadRequest("otlp", body, "application/x-protobuf"), RejectReason.BAD_GZIP, "original_payload")
