"""`process_upload` on every dialect with real profiles (receiver/uploads/).

Inputs are real: requests captured from pyroscope-io 1.4.0 and 0.8.16 (tests/testdata/uploads/, see
its README), Go profiles from tests/testdata/pprof/ and tests/testdata/corpus/ and goroutine debug=2
dumps from tests/testdata/goroutine-text/, wrapped in the envelopes each client uses. Expected values
are read from the inputs themselves (protobuf fields, dump text), not from the code under test.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import pickle
import pickletools
import re
from pathlib import Path

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.profiles.v1development import profiles_pb2 as otlp

from otel_leakproc.model import UNKNOWN_SERVICE, ProfileKind
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.decode.otlp_profiles import PROTOBUF_CONTENT_TYPES
from otel_leakproc.receiver.proto import profile_pb2, push_pb2
from otel_leakproc.receiver.uploads import (
    DecodedProfile,
    UploadRequest,
    UploadResult,
    parse_time,
    process_upload,
)
from otel_leakproc.receiver.uploads.media import MESSAGE_TYPES
from otel_leakproc.receiver.value_caps import ValueCaps, cap_upload

TESTDATA = Path(__file__).resolve().parents[2] / "testdata"
UPLOADS = TESTDATA / "uploads"
PPROF = TESTDATA / "pprof"
CORPUS = TESTDATA / "corpus"
TEXT = TESTDATA / "goroutine-text"
LIMITS = DecodeLimits()
RECEIVED = 1_800_000_000_000_000_000
SESSION = "5d2a0e7f1c9b3a48"
GODELTAPROF_NAME = (
    "checkout{__session_id__=" + SESSION + ",otel.scope.name=com.grafana.pyroscope/godeltaprof/heap,"
    "otel.scope.version=1.3.0,process.runtime.name=go,process.runtime.version=go1.27.3,"
    "pod=checkout-7f9c,namespace=shop,k8s.node.name=node-3}"
)


def pprof_bytes(name: str) -> bytes:
    return (PPROF / name).read_bytes()


def parsed(name: str) -> profile_pb2.Profile:
    return profile_pb2.Profile.FromString(gzip.decompress(pprof_bytes(name)))


def captured(folder: str) -> list[UploadRequest]:
    """The captured requests of one client, as a transport would hand them over."""
    out = []
    for meta_file in sorted((UPLOADS / folder).glob("*.json")):
        meta = json.loads(meta_file.read_text())
        headers = {k.lower(): v for k, v in meta["headers"]}
        out.append(
            UploadRequest(
                dialect="push" if meta["path"].endswith("/Push") else "ingest",
                body=(UPLOADS / folder / meta["body_file"]).read_bytes(),
                content_type=headers.get("content-type", ""),
                content_encoding=headers.get("content-encoding", ""),
                query=tuple((k, v) for k, v in meta["query"]),
                received_nanos=RECEIVED,
            )
        )
    return out


def ingest(body: bytes, content_type: str = "", encoding: str = "", **query: str) -> UploadRequest:
    return UploadRequest("ingest", body, content_type, encoding, tuple(query.items()), RECEIVED)


def multipart(parts: dict[str, tuple[str, bytes]], boundary: str = "b0undary7c1e") -> tuple[bytes, str]:
    """A body written the way Go's mime/multipart.Writer.CreateFormFile does (pyroscope-go)."""
    chunks = []
    for name, (filename, content) in parts.items():
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
    return b"".join(chunks) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def one(result: UploadResult) -> DecodedProfile:
    assert len(result.profiles) == 1, result
    return result.profiles[0]


def sample_type_total(profile: profile_pb2.Profile, type_name: str) -> int:
    strings = profile.string_table
    index = [strings[vt.type] for vt in profile.sample_type].index(type_name)
    return sum(s.value[index] for s in profile.sample)


# --------------------------------------------------------------------------------------------------
# Real uploaders


def test_pyroscope_io_140_memory_profile_names_the_leaking_python_function() -> None:
    requests = captured("pyroscope-io-1.4.0")
    assert len(requests) == 4
    totals = []
    for request in requests:
        assert request.content_encoding == "gzip"
        result = process_upload(request, LIMITS)
        profile = one(result)
        # The CPU series of the same request carries no leak signal and is reported as skipped.
        assert len(result.ignored) == 1
        assert "process_cpu" in result.ignored[0]
        summary = profile.summary
        assert summary.kind is ProfileKind.HEAP
        assert profile.service == "leaky-py"
        assert profile.instance == "pod-7"
        assert profile.resource["service.namespace"] == "shop"
        assert profile.resource["region"] == "eu-1"
        assert profile.resource["process.runtime.name"] == "cpython"
        assert "__name__" not in profile.resource
        assert "service_name" not in profile.resource
        top = summary.sites[0]
        assert top.function == "cache_order_snapshot"
        assert top.file.endswith("leaky_app.py")
        assert top.value / summary.total > 0.9
        # alloc_* of pyroscope-io are per-interval deltas: no restart signal from them.
        assert summary.cumulative is None
        # The profile's own time (the end of the upload window) is used, not the receive time.
        raw = push_pb2.PushRequest.FromString(gzip.decompress(request.body)).series[0].samples[0].raw_profile
        own = profile_pb2.Profile.FromString(raw)
        assert summary.time_nanos == own.time_nanos != RECEIVED
        assert summary.total == sample_type_total(own, "inuse_space")
        totals.append(summary.total)
    assert totals == sorted(totals)
    assert totals[-1] > 3 * totals[0]


def test_pyroscope_io_0816_sends_cpu_only_via_ingest_and_it_is_skipped() -> None:
    requests = captured("pyroscope-io-0.8.16")
    assert requests
    for request in requests:
        query = dict(request.query)
        assert query["format"] == "pprof"
        assert query["spyName"] == "pyspy"
        result = process_upload(request, LIMITS)
        assert result.profiles == ()
        assert len(result.ignored) == 1
        assert "[cpu]" in result.ignored[0]


# --------------------------------------------------------------------------------------------------
# /ingest


def test_ingest_raw_pprof_heap_with_curl_style_query() -> None:
    body = pprof_bytes("go_heap_steady_leak_0059.pb.gz")
    result = process_upload(
        ingest(body, "application/octet-stream", name="checkout{instance=pod-1}", format="pprof"), LIMITS
    )
    profile = one(result)
    assert (profile.service, profile.instance) == ("checkout", "pod-1")
    assert profile.resource == {"service.name": "checkout", "service.instance.id": "pod-1", "instance": "pod-1"}
    summary = profile.summary
    source = parsed("go_heap_steady_leak_0059.pb.gz")
    assert summary.kind is ProfileKind.HEAP
    assert summary.total == sample_type_total(source, "inuse_space")
    assert summary.time_nanos == source.time_nanos
    assert summary.sites[0].function == "main.(*orderHistoryArchive).appendOrderSnapshot"
    # A raw runtime/pprof heap profile is cumulative: alloc_objects can reveal restarts.
    assert summary.cumulative == sample_type_total(source, "alloc_objects")


def test_ingest_gzip_content_encoding_over_a_raw_pprof_body() -> None:
    raw = gzip.decompress(pprof_bytes("go_heap_steady_leak_0059.pb.gz"))
    request = ingest(gzip.compress(raw), "binary/octet-stream", "gzip", name="checkout", format="pprof")
    profile = one(process_upload(request, LIMITS))
    assert profile.instance == ""
    assert profile.resource == {"service.name": "checkout"}
    assert profile.summary.sites[0].function == "main.(*orderHistoryArchive).appendOrderSnapshot"


def test_ingest_pyroscope_go_godeltaprof_heap_multipart() -> None:
    config = json.dumps(
        {
            "alloc_objects": {"units": "objects", "cumulative": False},
            "alloc_space": {"units": "bytes", "cumulative": False},
            "inuse_space": {"units": "bytes", "aggregation": "average", "cumulative": False},
            "inuse_objects": {"units": "objects", "aggregation": "average", "cumulative": False},
        }
    ).encode()
    body, content_type = multipart(
        {
            "profile": ("profile.pprof", pprof_bytes("go_heap_restart_after_0036.pb.gz")),
            "sample_type_config": ("sample_type_config.json", config),
        }
    )
    request = ingest(
        body,
        content_type,
        name=GODELTAPROF_NAME,
        **{"from": str(RECEIVED - 15 * 10**9), "until": str(RECEIVED - 5 * 10**9)},
        spyName="gospy",
        sampleRate="100",
        units="",
        aggregationType="",
    )
    profile = one(process_upload(request, LIMITS))
    assert profile.service == "checkout"
    assert profile.instance == "checkout-7f9c"
    assert profile.resource["service.namespace"] == "shop"
    assert profile.resource["k8s.node.name"] == "node-3"
    assert "__session_id__" not in profile.resource
    summary = profile.summary
    assert summary.kind is ProfileKind.HEAP
    assert summary.labels == {"__session_id__": SESSION}
    assert summary.cumulative is None  # godeltaprof: alloc_* are deltas
    assert summary.time_nanos == parsed("go_heap_restart_after_0036.pb.gz").time_nanos


def test_ingest_cumulative_false_from_sample_type_config_alone() -> None:
    config = b'{"alloc_objects": {"cumulative": false}, "inuse_space": {"units": "bytes"}}'
    body, content_type = multipart(
        {
            "profile": ("profile.pprof", pprof_bytes("go_heap_steady_leak_0059.pb.gz")),
            "sample_type_config": ("c", config),
        }
    )
    profile = one(process_upload(ingest(body, content_type, name="checkout"), LIMITS))
    assert profile.summary.cumulative is None


@pytest.mark.parametrize(
    ("pprof_file", "prefix", "kind"),
    [
        ("go_mutex_lock_contention_0030.pb.gz", "mutex", ProfileKind.MUTEX),
        ("go_block_lock_contention_0030.pb.gz", "block", ProfileKind.BLOCK),
        # The display names decide even against the stacks: mutex and block share sample types.
        ("go_mutex_lock_contention_0030.pb.gz", "block", ProfileKind.BLOCK),
        ("go_block_lock_contention_0030.pb.gz", "mutex", ProfileKind.MUTEX),
    ],
)
def test_ingest_sample_type_config_display_names_tell_mutex_from_block(
    pprof_file: str, prefix: str, kind: ProfileKind
) -> None:
    config = json.dumps(
        {
            "contentions": {"display-name": f"{prefix}_count", "units": "lock_samples", "cumulative": False},
            "delay": {"display-name": f"{prefix}_duration", "units": "lock_nanoseconds", "cumulative": False},
        }
    ).encode()
    body, content_type = multipart(
        {
            "profile": ("profile.pprof", pprof_bytes(pprof_file)),
            "sample_type_config": ("sample_type_config.json", config),
        }
    )
    profile = one(process_upload(ingest(body, content_type, name="inventory{pod=inv-0}"), LIMITS))
    assert profile.summary.kind is kind
    assert profile.summary.total == sample_type_total(parsed(pprof_file), "delay")


def test_ingest_pyroscope_go_goroutine_profile_with_units_and_average() -> None:
    config = b'{"goroutine": {"display-name": "goroutines", "units": "goroutines", "aggregation": "average"}}'
    body, content_type = multipart(
        {
            "profile": ("profile.pprof", pprof_bytes("go_goroutine_lock_contention_0030.pb.gz")),
            "sample_type_config": ("sample_type_config.json", config),
        }
    )
    request = ingest(body, content_type, name="inventory", units="goroutines", aggregationType="average")
    summary = one(process_upload(request, LIMITS)).summary
    assert summary.kind is ProfileKind.GOROUTINE
    assert summary.total == sample_type_total(parsed("go_goroutine_lock_contention_0030.pb.gz"), "goroutine")


def test_ingest_corpus_goroutine_series_in_order() -> None:
    files = sorted((CORPUS / "goroutine_leak" / "goroutine").glob("*.pb.gz"))[:3]
    assert len(files) == 3
    times = []
    for file in files:
        request = ingest(file.read_bytes(), name="quotes{instance=q-1}", format="pprof")
        summary = one(process_upload(request, LIMITS)).summary
        assert summary.kind is ProfileKind.GOROUTINE
        times.append(summary.time_nanos)
    assert times == sorted(times)
    assert len(set(times)) == 3


def test_ingest_goroutineleak_pprof() -> None:
    request = ingest(pprof_bytes("go127_goroutineleak_0010.pb.gz"), name="replies", format="pprof")
    summary = one(process_upload(request, LIMITS)).summary
    assert summary.kind is ProfileKind.GOROUTINELEAK
    assert summary.sites[0].function == "main.awaitReply"


def test_ingest_goroutine_text_dump_sniffed_uses_until_as_time() -> None:
    text = (TEXT / "goroutine_leak_0059.txt").read_bytes()
    until = "1790003540"  # 10 digits: seconds
    request = ingest(text, "text/plain", name="quotes{instance=q-1}", until=until)
    summary = one(process_upload(request, LIMITS)).summary
    assert summary.kind is ProfileKind.GOROUTINE
    assert summary.source_format == "goroutine-text"
    assert summary.time_nanos == int(until) * 10**9
    headers = re.findall(rb"^goroutine \d+ \[", text, flags=re.MULTILINE)
    assert summary.total == len(headers)


def test_ingest_goroutine_text_gzipped_without_times_uses_receive_time() -> None:
    text = (TEXT / "lock_contention_0030.txt").read_bytes()
    request = ingest(gzip.compress(text), name="inventory", format="goroutine")
    summary = one(process_upload(request, LIMITS)).summary
    assert summary.time_nanos == RECEIVED


def test_ingest_kind_goroutineleak_selects_the_leak_kind_for_a_text_dump() -> None:
    text = (TEXT / "goroutineleak_go127_0010.txt").read_bytes()
    leaked = text.count(b"(leaked)")
    assert leaked > 0
    request = ingest(text, name="replies", format="text", kind="goroutineleak", **{"from": "1790000600"})
    summary = one(process_upload(request, LIMITS)).summary
    assert summary.kind is ProfileKind.GOROUTINELEAK
    assert summary.total == leaked
    assert summary.time_nanos == 1790000600 * 10**9
    as_goroutine = one(process_upload(ingest(text, name="replies", format="text", kind="goroutine"), LIMITS))
    assert as_goroutine.summary.kind is ProfileKind.GOROUTINE


def test_ingest_profile_time_prefers_the_profile_own_time_over_until() -> None:
    request = ingest(pprof_bytes("go_heap_lock_contention_0030.pb.gz"), name="a", format="pprof", until="1700000000")
    assert (
        one(process_upload(request, LIMITS)).summary.time_nanos
        == parsed("go_heap_lock_contention_0030.pb.gz").time_nanos
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20260102", 1767312000 * 10**9),
        ("1790000000", 1790000000 * 10**9),
        ("1790000000123", 1790000000123 * 10**6),
        ("1790000000123456", 1790000000123456 * 10**3),
        ("1790000000123456789", 1790000000123456789),
        ("now", RECEIVED),
        ("now-1h", RECEIVED - 3600 * 10**9),
        ("now-30m", RECEIVED - 1800 * 10**9),
        ("now-10s", RECEIVED - 10 * 10**9),
        ("now-2d", RECEIVED - 2 * 86400 * 10**9),
        (" now+1min ", RECEIVED + 60 * 10**9),
        ("", 0),
    ],
)
def test_parse_time_units(value: str, expected: int) -> None:
    assert parse_time("from", value, RECEIVED) == expected


# --------------------------------------------------------------------------------------------------
# push.v1.PusherService/Push


def push_request(*series: tuple[dict[str, str], list[bytes]]) -> push_pb2.PushRequest:
    message = push_pb2.PushRequest()
    for n, (labels, profiles) in enumerate(series):
        out = message.series.add()
        for key, value in labels.items():
            out.labels.add(name=key, value=value)
        for k, raw in enumerate(profiles):
            out.samples.add(raw_profile=raw, ID=f"00000000-0000-4000-8000-{n:06d}{k:06d}")
    return message


def go_push() -> push_pb2.PushRequest:
    common = {"service_name": "inventory", "k8s.pod.name": "inventory-5d8", "k8s.namespace.name": "shop"}
    heap_raw = gzip.decompress(pprof_bytes("go_heap_lock_contention_0030.pb.gz"))  # raw and gzipped both occur
    return push_request(
        ({"__name__": "memory", **common}, [heap_raw]),
        ({"__name__": "goroutine", **common}, [pprof_bytes("go_goroutine_lock_contention_0030.pb.gz")]),
        ({"__name__": "mutex", **common}, [pprof_bytes("go_mutex_lock_contention_0030.pb.gz")]),
        ({"__name__": "block", **common}, [pprof_bytes("go_block_lock_contention_0030.pb.gz")]),
        ({"__name__": "process_cpu", **common}, [b"never decoded"]),
    )


def check_go_push(result: UploadResult) -> None:
    kinds = [p.summary.kind for p in result.profiles]
    assert kinds == [ProfileKind.HEAP, ProfileKind.GOROUTINE, ProfileKind.MUTEX, ProfileKind.BLOCK]
    for profile in result.profiles:
        assert profile.service == "inventory"
        assert profile.instance == "inventory-5d8"
        assert profile.resource["k8s.namespace.name"] == "shop"
        assert profile.resource["k8s.pod.name"] == "inventory-5d8"
    assert len(result.ignored) == 1
    assert "series[4]" in result.ignored[0]
    assert "process_cpu" in result.ignored[0]
    heap = result.profiles[0].summary
    assert heap.total == sample_type_total(parsed("go_heap_lock_contention_0030.pb.gz"), "inuse_space")


@pytest.mark.parametrize("content_type", ["application/proto", "application/x-protobuf", "Application/Protobuf"])
def test_push_protobuf_every_go_kind(content_type: str) -> None:
    body = go_push().SerializeToString()
    check_go_push(process_upload(UploadRequest("push", body, content_type, received_nanos=RECEIVED), LIMITS))


def test_the_media_type_table_agrees_with_the_otlp_decoder() -> None:
    """The HTTP server answers 415 from `MESSAGE_TYPES`; what it lets through, the decoders must read."""
    otlp = MESSAGE_TYPES["otlp"]
    assert {m for m, codec in otlp.items() if codec == "protobuf"} == PROTOBUF_CONTENT_TYPES
    assert [m for m, codec in otlp.items() if codec == "json"] == ["application/json"]
    assert set(MESSAGE_TYPES["push"]) == {"application/proto", *otlp}


def test_push_protobuf_gzip_content_encoding() -> None:
    body = gzip.compress(go_push().SerializeToString())
    request = UploadRequest("push", body, "application/proto", "gzip", received_nanos=RECEIVED)
    check_go_push(process_upload(request, LIMITS))


def test_push_proto3_json() -> None:
    text = json_format.MessageToJson(go_push())
    assert '"rawProfile"' in text
    assert '"ID"' in text
    request = UploadRequest("push", text.encode(), "application/json; charset=utf-8", received_nanos=RECEIVED)
    check_go_push(process_upload(request, LIMITS))


def test_push_corpus_heap_series_and_goroutine_leak_aliases() -> None:
    heaps = [f.read_bytes() for f in sorted((CORPUS / "steady_leak" / "heap").glob("*.pb.gz"))[:3]]
    message = push_request(
        ({"__name__": "memory", "service_name": "orders", "instance": "orders-1"}, heaps),
        ({"__name__": "goroutine_leak", "service_name": "replies"}, [pprof_bytes("go127_goroutineleak_0010.pb.gz")]),
    )
    result = process_upload(UploadRequest("push", message.SerializeToString(), "application/proto"), LIMITS)
    assert [p.summary.kind for p in result.profiles] == [ProfileKind.HEAP] * 3 + [ProfileKind.GOROUTINELEAK]
    times = [p.summary.time_nanos for p in result.profiles[:3]]
    assert times == sorted(times)
    assert result.profiles[3].instance == ""
    assert result.ignored == ()


def test_push_without_service_name_is_unknown_service() -> None:
    message = push_request(({"__name__": "memory"}, [pprof_bytes("go_heap_steady_leak_0059.pb.gz")]))
    profile = one(process_upload(UploadRequest("push", message.SerializeToString(), "application/proto"), LIMITS))
    assert profile.service == UNKNOWN_SERVICE
    assert profile.resource == {"service.name": UNKNOWN_SERVICE}


def test_push_unknown_profile_type_with_cpu_samples_is_skipped_not_rejected() -> None:
    cpu = gzip.decompress((UPLOADS / "pyroscope-io-0.8.16" / "ingest_001.body").read_bytes())
    message = push_request(({"__name__": "itimer_like", "service_name": "a"}, [cpu]))
    result = process_upload(UploadRequest("push", message.SerializeToString(), "application/proto"), LIMITS)
    assert result.profiles == ()
    assert len(result.ignored) == 1
    assert "series[0].samples[0].raw_profile" in result.ignored[0]


def test_push_resource_is_bounded() -> None:
    labels = {"__name__": "memory", "service_name": "a", "namespace": "n"}
    labels.update({f"tag{i:02d}": "v" * 1000 for i in range(60)})
    message = push_request((labels, [pprof_bytes("go_heap_steady_leak_0059.pb.gz")]))
    result = process_upload(UploadRequest("push", message.SerializeToString(), "application/proto"), LIMITS)
    assert len(one(result).resource) == 32
    # Lengths are cut at the decoder boundary (receiver.value_caps), counted.
    capped, cuts = cap_upload(result, ValueCaps())
    profile = one(capped)
    assert profile.resource["service.namespace"] == "n"
    assert all(len(v) <= 256 for v in profile.resource.values())
    assert cuts == {"label_value": 30}  # the 30 tags kept beside service.name and service.namespace
    assert "tag00" in profile.resource


def test_empty_push_request_is_accepted_with_nothing() -> None:
    result = process_upload(UploadRequest("push", b"", "application/proto"), LIMITS)
    assert result == UploadResult((), ())


# --------------------------------------------------------------------------------------------------
# OTLP profiles


def otlp_request(payloads: list[bytes], attributes: dict[str, str]) -> ExportProfilesServiceRequest:
    """A request that carries real pprof as original_payload (how converters forward pprof)."""
    request = ExportProfilesServiceRequest()
    request.dictionary.string_table.append("")
    resource_profiles = request.resource_profiles.add()
    for key, value in attributes.items():
        resource_profiles.resource.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    scope = resource_profiles.scope_profiles.add()
    scope.scope.name = "go.opentelemetry.io/test"
    for payload in payloads:
        scope.profiles.append(
            otlp.Profile(original_payload_format="pprof", original_payload=payload, profile_id=bytes(range(1, 17)))
        )
    return request


OTLP_ATTRIBUTES = {
    "service.name": "payments",
    "service.instance.id": "payments-0",
    "service.namespace": "billing",
    "k8s.pod.name": "payments-6c7",
    "host.name": "node-1",
}


def check_otlp(result: UploadResult) -> None:
    assert [p.summary.kind for p in result.profiles] == [ProfileKind.HEAP, ProfileKind.GOROUTINE]
    for profile in result.profiles:
        assert (profile.service, profile.instance) == ("payments", "payments-0")
        assert profile.resource["service.namespace"] == "billing"
        assert profile.resource["k8s.pod.name"] == "payments-6c7"
        assert profile.summary.source_format == "otlp"
    assert result.profiles[0].summary.sites[0].function == "main.(*orderHistoryArchive).appendOrderSnapshot"


def otlp_payloads() -> list[bytes]:
    return [pprof_bytes("go_heap_steady_leak_0059.pb.gz"), pprof_bytes("go_goroutine_lock_contention_0030.pb.gz")]


@pytest.mark.parametrize("content_type", ["application/x-protobuf", "application/protobuf"])
def test_otlp_protobuf(content_type: str) -> None:
    body = otlp_request(otlp_payloads(), OTLP_ATTRIBUTES).SerializeToString()
    check_otlp(process_upload(UploadRequest("otlp", body, content_type, received_nanos=RECEIVED), LIMITS))


def test_otlp_protobuf_gzip() -> None:
    body = gzip.compress(otlp_request(otlp_payloads(), OTLP_ATTRIBUTES).SerializeToString())
    check_otlp(process_upload(UploadRequest("otlp", body, "application/x-protobuf", "gzip"), LIMITS))


def test_otlp_json() -> None:
    text = json_format.MessageToJson(otlp_request(otlp_payloads(), OTLP_ATTRIBUTES))
    assert '"resourceProfiles"' in text
    check_otlp(process_upload(UploadRequest("otlp", text.encode(), "application/json"), LIMITS))


def test_otlp_instance_falls_back_to_k8s_pod_name_and_cpu_is_skipped() -> None:
    attributes = {"service.name": "payments", "k8s.pod.name": "payments-6c7", "host.name": "node-1"}
    cpu = gzip.decompress((UPLOADS / "pyroscope-io-0.8.16" / "ingest_001.body").read_bytes())
    body = otlp_request([pprof_bytes("go_heap_steady_leak_0059.pb.gz"), cpu], attributes).SerializeToString()
    result = process_upload(UploadRequest("otlp", body, "application/x-protobuf"), LIMITS)
    assert one(result).instance == "payments-6c7"
    assert len(result.ignored) == 1
    assert "[cpu]" in result.ignored[0]


# --------------------------------------------------------------------------------------------------
# Workers


def test_results_and_requests_pickle() -> None:
    request = captured("pyroscope-io-1.4.0")[0]
    assert pickle.loads(pickle.dumps(request)) == request
    result = process_upload(request, LIMITS)
    again = pickle.loads(pickle.dumps(result))
    assert again == result
    assert again.profiles[0].summary.sites == result.profiles[0].summary.sites


def test_summaries_pickle_as_their_fields() -> None:
    """A summary crosses from a decoder worker as its fields (no state dict per site or group), and comes
    back equal, goroutine groups and labels included."""
    body = (PPROF / "go127_goroutineleak_0010.pb.gz").read_bytes()
    request = UploadRequest("ingest", body, query=(("name", "app{__session_id__=s1}"), ("format", "pprof")))
    summary = process_upload(request, LIMITS).profiles[0].summary
    assert summary.groups
    assert summary.sites
    assert summary.labels
    data = pickle.dumps(summary)
    assert "BUILD" not in {op.name for op, _arg, _pos in pickletools.genops(data)}  # (no state set afterwards)
    again = pickle.loads(data)
    assert again == summary
    assert again.groups == summary.groups
    assert again.labels == summary.labels
    # Rebuilt without __init__ (each slot set directly): still frozen, hashed and compared by its fields.
    site = again.sites[0]
    assert type(site) is type(summary.sites[0])
    assert hash(site) == hash(summary.sites[0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        site.value = 0.0  # type: ignore[misc]
    assert [s.leaf for s in again.sites] == [s.leaf for s in summary.sites]
