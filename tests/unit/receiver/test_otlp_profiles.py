"""OTLP profiles -> pprof conversion (otel_leakproc.receiver.decode.otlp_profiles)."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.profiles.v1development import profiles_pb2 as otlp

from otel_leakproc.errors import InvalidProfileError, PayloadTooLargeError, RejectReason
from otel_leakproc.model import ProfileKind
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.decode.otlp_profiles import (
    otlp_to_pprof,
    parse_export_request,
)
from otel_leakproc.receiver.proto import profile_pb2
from otel_leakproc.receiver.uploads import UploadRequest, UploadResult, process_upload

GO_HEAP = Path(__file__).resolve().parents[2] / "testdata" / "pprof" / "go_heap_steady_leak_0059.pb.gz"
PB = "application/x-protobuf"
T0 = 1_790_000_000_000_000_000
LIMITS = DecodeLimits()
HEAP_TYPES = (
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
)


class Dict:
    """Builds a ProfilesDictionary with the mandatory zero entry at index 0 of every table."""

    def __init__(self) -> None:
        self.d = otlp.ProfilesDictionary()
        self.d.string_table.append("")
        self.d.mapping_table.add()
        self.d.location_table.add()
        self.d.function_table.add()
        self.d.link_table.add(trace_id=bytes(16), span_id=bytes(8))
        self.d.attribute_table.add()
        self.d.stack_table.add()
        self._strings = {"": 0}

    def s(self, text: str) -> int:
        if text not in self._strings:
            self._strings[text] = len(self.d.string_table)
            self.d.string_table.append(text)
        return self._strings[text]

    def fn(self, name: str, file: str, start_line: int = 0) -> int:
        self.d.function_table.add(
            name_strindex=self.s(name), system_name_strindex=self.s(name), filename_strindex=self.s(file),
            start_line=start_line,
        )  # fmt: skip
        return len(self.d.function_table) - 1

    def mapping(self, filename: str, build_id: str = "") -> int:
        attrs = [self.attr("process.executable.build_id.gnu", build_id)] if build_id else []
        self.d.mapping_table.add(
            memory_start=0x400000, memory_limit=0x800000, filename_strindex=self.s(filename), attribute_indices=attrs
        )
        return len(self.d.mapping_table) - 1

    def loc(self, fn: int, line: int, mapping: int = 0, address: int = 0) -> int:
        self.d.location_table.add(
            mapping_index=mapping, address=address, lines=[otlp.Line(function_index=fn, line=line)]
        )
        return len(self.d.location_table) - 1

    def stack(self, *locs: int) -> int:
        self.d.stack_table.add(location_indices=locs)
        return len(self.d.stack_table) - 1

    def attr(self, key: str, value: str | int, unit: str = "") -> int:
        any_value = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
        self.d.attribute_table.add(key_strindex=self.s(key), value=any_value, unit_strindex=self.s(unit))
        return len(self.d.attribute_table) - 1

    def vt(self, type_: str, unit: str) -> otlp.ValueType:
        return otlp.ValueType(type_strindex=self.s(type_), unit_strindex=self.s(unit))


def kv(key: str, **value: object) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))


RESOURCE = [
    kv("service.name", string_value="checkout"),
    kv("service.instance.id", string_value="pod-7f9c-1"),
    kv("k8s.pod.name", string_value="checkout-7f9c"),
    kv("process.pid", int_value=4242),
    kv("host.arm", bool_value=False),
    kv("cpu.ratio", double_value=0.5),
    kv("empty"),  # no value: not flattened
]


def heap_request(*, extra: list[otlp.Profile] | None = None) -> tuple[ExportProfilesServiceRequest, dict[str, int]]:
    """A Go heap profile split into 4 single-type Profiles (as OTLP requires), plus what inuse_space sums to."""
    d = Dict()
    binary = d.mapping("/app/checkout", build_id="abc123")
    leak = d.fn("main.(*Cache).Put", "/src/cache.go", start_line=40)
    main = d.fn("main.main", "/src/main.go", start_line=5)
    alloc = d.fn("main.alloc", "/src/alloc.go")
    stack_a = d.stack(d.loc(leak, 42, binary, 0x401000), d.loc(main, 10, binary, 0x402000))
    stack_b = d.stack(d.loc(alloc, 7, binary, 0x403000), d.loc(main, 11, binary, 0x402010))
    thread = d.attr("thread.name", "worker")
    # Per stack: (alloc_objects, alloc_space, inuse_objects, inuse_space); stack B was freed (no inuse rows).
    values = {stack_a: (10, 10240, 4, 4096), stack_b: (5, 640, 0, 0)}
    profiles = []
    for column, (type_, unit) in enumerate(HEAP_TYPES):
        samples = [
            otlp.Sample(stack_index=stack, values=[vals[column]], attribute_indices=[thread])
            for stack, vals in values.items()
            if vals[column]
        ]
        if column % 2:  # sample order must not matter
            samples.reverse()
        profiles.append(
            otlp.Profile(
                sample_type=d.vt(type_, unit), samples=samples, time_unix_nano=T0, period_type=d.vt("space", "bytes"),
                period=524288,
            )
        )  # fmt: skip
    profiles.extend(extra or [])
    request = ExportProfilesServiceRequest(dictionary=d.d)
    rp = request.resource_profiles.add()
    rp.resource.attributes.extend(RESOURCE)
    sp = rp.scope_profiles.add()
    sp.scope.name = "go.opentelemetry.io/heap"
    sp.profiles.extend(profiles)
    return request, {"stack_a": stack_a, "stack_b": stack_b}


def single_request(d: Dict, samples: list[otlp.Sample], **profile_fields: object) -> ExportProfilesServiceRequest:
    profile = otlp.Profile(sample_type=d.vt("inuse_space", "bytes"), samples=samples, time_unix_nano=T0)
    for name, value in profile_fields.items():
        setattr(profile, name, value)
    request = ExportProfilesServiceRequest(dictionary=d.d)
    request.resource_profiles.add().scope_profiles.add().profiles.append(profile)
    return request


def pprof_rows(p: profile_pb2.Profile) -> dict[tuple[str, ...], list[int]]:
    """Samples keyed by leaf-first function names."""
    strings = p.string_table
    functions = {f.id: strings[f.name] for f in p.function}
    locations = {loc.id: loc for loc in p.location}
    rows = {}
    for sample in p.sample:
        names = tuple(functions[locations[i].line[0].function_id] for i in sample.location_id)
        rows[names] = list(sample.value)
    return rows


def types_of(p: profile_pb2.Profile) -> list[tuple[str, str]]:
    return [(p.string_table[t.type], p.string_table[t.unit]) for t in p.sample_type]


# --------------------------------------------------------------------------------------------------
# Conversion


def test_heap_split_into_four_profiles_merges_into_one_pprof() -> None:
    request, _ = heap_request()
    [converted] = otlp_to_pprof(request, LIMITS)
    p = converted.profile
    assert types_of(p) == list(HEAP_TYPES)
    assert pprof_rows(p) == {
        ("main.(*Cache).Put", "main.main"): [10, 10240, 4, 4096],
        ("main.alloc", "main.main"): [5, 640, 0, 0],
    }
    assert p.time_nanos == T0
    assert (p.string_table[p.period_type.type], p.string_table[p.period_type.unit]) == ("space", "bytes")
    assert p.period == 524288
    assert p.string_table[0] == ""
    assert converted.scope == "go.opentelemetry.io/heap"


def test_frames_keep_function_file_line_and_mapping() -> None:
    request, _ = heap_request()
    p = otlp_to_pprof(request, LIMITS)[0].profile
    s = p.string_table
    functions = {f.id: f for f in p.function}
    locations = {loc.id: loc for loc in p.location}
    assert 0 not in locations
    assert 0 not in functions
    assert len(locations) == len(p.location) == 4  # main.main on two locations (lines 10 and 11)

    def frame(loc_id: int) -> tuple[str, str, int, int, int]:
        loc = locations[loc_id]
        fn = functions[loc.line[0].function_id]
        return s[fn.name], s[fn.filename], loc.line[0].line, fn.start_line, loc.address

    live = next(x for x in p.sample if x.value[3] == 4096)
    freed = next(x for x in p.sample if x.value[3] == 0)
    # Leaf first, as in pprof.
    assert [frame(i) for i in live.location_id] == [
        ("main.(*Cache).Put", "/src/cache.go", 42, 40, 0x401000),
        ("main.main", "/src/main.go", 10, 5, 0x402000),
    ]
    assert [frame(i) for i in freed.location_id] == [
        ("main.alloc", "/src/alloc.go", 7, 0, 0x403000),
        ("main.main", "/src/main.go", 11, 5, 0x402010),
    ]
    [mapping] = p.mapping
    assert mapping.id != 0
    assert {loc.mapping_id for loc in p.location} == {mapping.id}
    assert (s[mapping.filename], s[mapping.build_id], mapping.memory_start) == ("/app/checkout", "abc123", 0x400000)


def test_two_heap_profiles_at_the_same_time_stay_two_pprofs() -> None:
    request, _ = heap_request()
    profiles = request.resource_profiles[0].scope_profiles[0].profiles
    profiles.extend(list(profiles))  # e.g. two processes' heaps batched into one scope
    out = otlp_to_pprof(request, LIMITS)
    assert len(out) == 2
    assert out[0].profile == out[1].profile
    assert types_of(out[1].profile) == list(HEAP_TYPES)


def test_sample_attributes_become_labels() -> None:
    d = Dict()
    stack = d.stack(d.loc(d.fn("main.f", "f.go"), 1))
    thread = d.attr("thread.name", "worker")
    size = d.attr("alloc.size", 512, unit="bytes")
    request = single_request(d, [otlp.Sample(stack_index=stack, values=[7], attribute_indices=[thread, size])])
    p = otlp_to_pprof(request, LIMITS)[0].profile
    s = p.string_table
    labels = {s[lb.key]: (s[lb.str], lb.num, s[lb.num_unit]) for lb in p.sample[0].label}
    assert labels == {"thread.name": ("worker", 0, ""), "alloc.size": ("", 512, "bytes")}


def test_samples_differing_in_attributes_stay_apart_and_duplicates_sum() -> None:
    d = Dict()
    stack = d.stack(d.loc(d.fn("main.f", "f.go"), 1))
    a, b = d.attr("thread.name", "a"), d.attr("thread.name", "b")
    request = single_request(
        d,
        [
            otlp.Sample(stack_index=stack, values=[1], attribute_indices=[a]),
            otlp.Sample(stack_index=stack, values=[2], attribute_indices=[b]),
            otlp.Sample(stack_index=stack, values=[4, 8], attribute_indices=[a]),  # same identity as #0
        ],
    )
    p = otlp_to_pprof(request, LIMITS)[0].profile
    s = p.string_table
    assert sorted((s[x.label[0].str], list(x.value)) for x in p.sample) == [("a", [13]), ("b", [2])]


def test_timestamps_only_count_one_each_and_values_with_timestamps_sum() -> None:
    d = Dict()
    stack = d.stack(d.loc(d.fn("main.f", "f.go"), 1))
    other = d.stack(d.loc(d.fn("main.g", "g.go"), 2))
    request = single_request(
        d,
        [
            otlp.Sample(stack_index=stack, timestamps_unix_nano=[T0, T0 + 1, T0 + 2]),
            otlp.Sample(stack_index=other, values=[5, 6], timestamps_unix_nano=[T0, T0 + 1]),
        ],
    )
    assert pprof_rows(otlp_to_pprof(request, LIMITS)[0].profile) == {("main.f",): [3], ("main.g",): [11]}


def test_profiles_with_other_time_or_period_are_not_merged() -> None:
    d = Dict()
    stack = d.stack(d.loc(d.fn("main.f", "f.go"), 1))
    sample = otlp.Sample(stack_index=stack, values=[1])
    cpu = d.vt("cpu", "nanoseconds")
    profiles = [
        otlp.Profile(sample_type=d.vt("samples", "count"), samples=[sample], time_unix_nano=T0, period_type=cpu),
        otlp.Profile(sample_type=d.vt("cpu", "nanoseconds"), samples=[sample], time_unix_nano=T0, period_type=cpu),
        otlp.Profile(sample_type=d.vt("samples", "count"), samples=[sample], time_unix_nano=T0 + 1, period_type=cpu),
        # Same time and period but a sample type the first group already has: a separate profile.
        otlp.Profile(sample_type=d.vt("samples", "count"), samples=[sample], time_unix_nano=T0, period_type=cpu),
        otlp.Profile(sample_type=d.vt("goroutine", "count"), samples=[sample], time_unix_nano=T0),
    ]
    request = ExportProfilesServiceRequest(dictionary=d.d)
    request.resource_profiles.add().scope_profiles.add().profiles.extend(profiles)
    out = [converted.profile for converted in otlp_to_pprof(request, LIMITS)]
    assert [types_of(p) for p in out] == [
        [("samples", "count"), ("cpu", "nanoseconds")],
        [("samples", "count")],
        [("samples", "count")],
        [("goroutine", "count")],
    ]
    assert [p.time_nanos for p in out] == [T0, T0 + 1, T0, T0]


def test_resource_attributes_are_flattened() -> None:
    request, _ = heap_request()
    # v1.10 reference-based attributes: key and string value in the dictionary string table.
    strings = request.dictionary.string_table
    strings.extend(["k8s.namespace.name", "shop"])
    request.resource_profiles[0].resource.attributes.append(
        KeyValue(key_strindex=len(strings) - 2, value=AnyValue(string_value_strindex=len(strings) - 1))
    )
    # Profile-level attributes apply too, but never override the resource.
    d_attrs = request.dictionary.attribute_table
    strings.extend(["service.name", "ignored", "__session_id__", "s-1"])
    n = len(strings)
    d_attrs.add(key_strindex=n - 4, value=AnyValue(string_value_strindex=n - 3))
    d_attrs.add(key_strindex=n - 2, value=AnyValue(string_value="s-1"))
    request.resource_profiles[0].scope_profiles[0].profiles[0].attribute_indices.extend(
        [len(d_attrs) - 2, len(d_attrs) - 1]
    )
    [converted] = otlp_to_pprof(request, LIMITS)
    assert converted.resource == {
        "service.name": "checkout",
        "service.instance.id": "pod-7f9c-1",
        "k8s.pod.name": "checkout-7f9c",
        "process.pid": "4242",
        "host.arm": "false",
        "cpu.ratio": "0.5",
        "k8s.namespace.name": "shop",
        "__session_id__": "s-1",
    }


def test_json_round_trip_gives_the_same_pprof() -> None:
    request, _ = heap_request()
    text = json_format.MessageToJson(request)
    assert '"resourceProfiles"' in text
    assert '"stackIndex"' in text  # lowerCamelCase keys, as OTLP JSON requires
    via_json = otlp_to_pprof(parse_export_request(text.encode(), "application/json; charset=utf-8", LIMITS), LIMITS)
    via_pb = otlp_to_pprof(parse_export_request(request.SerializeToString(), PB, LIMITS), LIMITS)
    assert len(via_json) == len(via_pb) == 1
    assert via_json[0].profile == via_pb[0].profile
    assert via_json[0].resource == via_pb[0].resource
    assert pprof_rows(via_json[0].profile)[("main.(*Cache).Put", "main.main")] == [10, 10240, 4, 4096]


def test_protobuf_content_types_and_profiles_data() -> None:
    request, _ = heap_request()
    body = request.SerializeToString()
    for content_type in ("application/x-protobuf", "application/protobuf", "Application/X-Protobuf; proto=x"):
        assert parse_export_request(body, content_type, LIMITS) == request
    data = otlp.ProfilesData.FromString(body)  # same field numbers as the export request
    assert otlp_to_pprof(data, LIMITS)[0].profile == otlp_to_pprof(request, LIMITS)[0].profile


def test_empty_request_gives_no_profiles() -> None:
    assert otlp_to_pprof(parse_export_request(b"", PB, LIMITS), LIMITS) == []
    assert otlp_to_pprof(parse_export_request(b"{}", "application/json", LIMITS), LIMITS) == []
    request = ExportProfilesServiceRequest()
    request.resource_profiles.add().scope_profiles.add()
    assert otlp_to_pprof(request, LIMITS) == []


def go_heap_bytes() -> bytes:
    return GO_HEAP.read_bytes()


def payload_request(payload: bytes, copies: int = 1, *, time_unix_nano: int = 0) -> ExportProfilesServiceRequest:
    request = ExportProfilesServiceRequest()
    request.dictionary.string_table.append("")
    rp = request.resource_profiles.add()
    rp.resource.attributes.append(kv("service.name", string_value="go-app"))
    sp = rp.scope_profiles.add()
    for _ in range(copies):
        sp.profiles.add(original_payload_format="pprof", original_payload=payload, time_unix_nano=time_unix_nano)
    return request


def upload(request: ExportProfilesServiceRequest, limits: DecodeLimits = LIMITS) -> UploadResult:
    body = request.SerializeToString()
    return process_upload(UploadRequest("otlp", body, content_type=PB, received_nanos=T0 + 99), limits)


def test_original_pprof_payload_is_used_as_is() -> None:
    raw_pprof = gzip.decompress(go_heap_bytes())
    # A converter may attach the same payload to each single-type Profile: it is used once.
    out = otlp_to_pprof(payload_request(go_heap_bytes(), copies=4), LIMITS)
    assert len(out) == 1
    # The bytes are handed on unparsed, for the pprof decoder to parse once like any pprof upload.
    assert out[0].profile is None
    assert out[0].payload == raw_pprof
    assert out[0].payload_where == "resource_profiles[0].scope_profiles[0].profiles[0].original_payload"
    assert out[0].resource == {"service.name": "go-app"}
    [decoded] = upload(payload_request(go_heap_bytes(), copies=4)).profiles
    assert decoded.summary.total == 31873270  # the inuse_space sum
    assert decoded.summary.source_format == "otlp"
    # Uncompressed payloads work too, and a payload without time_nanos takes the OTLP time.
    expected = profile_pb2.Profile.FromString(raw_pprof)
    expected.time_nanos = 0
    assert otlp_to_pprof(payload_request(expected.SerializeToString(), time_unix_nano=T0), LIMITS)[0].time_nanos == T0
    [untimed] = upload(payload_request(expected.SerializeToString(), time_unix_nano=T0)).profiles
    assert untimed.summary.time_nanos == T0
    [received] = upload(payload_request(expected.SerializeToString())).profiles
    assert received.summary.time_nanos == T0 + 99  # neither: the receive time


def test_bad_original_payload_is_rejected() -> None:
    with pytest.raises(
        InvalidProfileError, match=r"profiles\[0\]\.original_payload: profile: not a valid pprof"
    ) as bad:
        upload(payload_request(b"\xff\xff\xff\xff"))
    assert bad.value.reason is RejectReason.BAD_PROTOBUF
    with pytest.raises(InvalidProfileError) as truncated:
        otlp_to_pprof(payload_request(go_heap_bytes()[:100]), LIMITS)
    assert truncated.value.reason is RejectReason.BAD_GZIP
    with pytest.raises(PayloadTooLargeError):
        otlp_to_pprof(payload_request(go_heap_bytes()), DecodeLimits(max_decompressed_bytes=1000))
    # Distinct payloads share one decompression budget per request.
    size = len(gzip.decompress(go_heap_bytes()))
    request = payload_request(go_heap_bytes())
    second = profile_pb2.Profile.FromString(gzip.decompress(go_heap_bytes()))
    second.time_nanos += 1
    request.resource_profiles[0].scope_profiles[0].profiles.add(
        original_payload_format="pprof", original_payload=gzip.compress(second.SerializeToString())
    )
    assert len(otlp_to_pprof(request, DecodeLimits(max_decompressed_bytes=2 * size))) == 2
    with pytest.raises(PayloadTooLargeError, match=r"profiles\[1\]\.original_payload: original payloads exceed"):
        otlp_to_pprof(request, DecodeLimits(max_decompressed_bytes=size * 3 // 2))
    with pytest.raises(InvalidProfileError, match=r"original_payload: profile\.sample: 362 entries exceed") as many:
        upload(payload_request(go_heap_bytes()), DecodeLimits(max_samples=100))
    assert many.value.reason is RejectReason.TOO_MANY_ITEMS


# --------------------------------------------------------------------------------------------------
# Malformed input


def five_stacks() -> Dict:
    d = Dict()
    fn = d.fn("main.f", "f.go")
    for line in range(4):
        d.stack(d.loc(fn, line + 1))
    assert len(d.d.stack_table) == 5
    return d


def expect_error(request: ExportProfilesServiceRequest, reason: RejectReason, message: str) -> None:
    with pytest.raises(InvalidProfileError) as info:
        otlp_to_pprof(request, LIMITS)
    assert info.value.reason is reason
    assert message in str(info.value)


def test_stack_index_out_of_range() -> None:
    d = five_stacks()
    samples = [otlp.Sample(stack_index=1, values=[1]) for _ in range(3)] + [otlp.Sample(stack_index=17, values=[1])]
    expect_error(
        single_request(d, samples),
        RejectReason.BAD_REFERENCE,
        "resource_profiles[0].scope_profiles[0].profiles[0].samples[3].stack_index 17 out of range "
        "(stack_table has 5 entries)",
    )


def test_negative_index_is_out_of_range() -> None:
    d = five_stacks()
    expect_error(
        single_request(d, [otlp.Sample(stack_index=-1, values=[1])]),
        RejectReason.BAD_REFERENCE,
        "samples[0].stack_index -1 out of range (stack_table has 5 entries)",
    )


def test_location_index_out_of_range() -> None:
    d = five_stacks()
    d.d.stack_table[2].location_indices.append(9)
    expect_error(
        single_request(d, [otlp.Sample(stack_index=1, values=[1])]),
        RejectReason.BAD_REFERENCE,
        "dictionary.stack_table[2].location_indices[1] 9 out of range (location_table has 5 entries)",
    )


def test_function_index_out_of_range() -> None:
    d = five_stacks()
    d.d.location_table[3].lines.add(function_index=2, line=5)
    expect_error(
        single_request(d, [otlp.Sample(stack_index=1, values=[1])]),
        RejectReason.BAD_REFERENCE,
        "dictionary.location_table[3].lines[1].function_index 2 out of range (function_table has 2 entries)",
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda r: setattr(r.dictionary.function_table[1], "filename_strindex", 99),
            "dictionary.function_table[1].filename_strindex 99 out of range (string_table has 3 entries)",
        ),
        (
            lambda r: setattr(r.resource_profiles[0].scope_profiles[0].profiles[0].sample_type, "type_strindex", 3),
            "profiles[0].sample_type.type_strindex 3 out of range (string_table has 3 entries)",
        ),
        (
            lambda r: r.resource_profiles[0].resource.attributes.add(key_strindex=50),
            "resource_profiles[0].resource.attributes[0].key_strindex 50 out of range",
        ),
        (
            lambda r: r.resource_profiles[0].scope_profiles[0].profiles[0].samples[0].attribute_indices.append(4),
            "samples[0].attribute_indices[0] 4 out of range (attribute_table has 1 entries)",
        ),
        (
            lambda r: r.resource_profiles[0].scope_profiles[0].profiles[0].attribute_indices.append(2),
            "profiles[0].attribute_indices[0] 2 out of range (attribute_table has 1 entries)",
        ),
        (
            lambda r: setattr(r.resource_profiles[0].scope_profiles[0].profiles[0].samples[0], "link_index", 1),
            "samples[0].link_index 1 out of range (link_table has 1 entries)",
        ),
        (
            lambda r: setattr(r.dictionary.location_table[1], "mapping_index", 3),
            "dictionary.location_table[1].mapping_index 3 out of range (mapping_table has 1 entries)",
        ),
    ],
)
def test_string_and_other_indices_out_of_range(mutate: object, message: str) -> None:
    d = Dict()
    stack = d.stack(d.loc(d.fn("", ""), 1))  # strings: "", "inuse_space", "bytes" after single_request
    request = single_request(d, [otlp.Sample(stack_index=stack, values=[1])])
    assert len(request.dictionary.string_table) == 3
    del request.dictionary.link_table[:]
    request.dictionary.link_table.add()
    mutate(request)  # type: ignore[operator]
    expect_error(request, RejectReason.BAD_REFERENCE, message)


def test_values_and_timestamps_length_mismatch() -> None:
    d = five_stacks()
    sample = otlp.Sample(stack_index=1, values=[1, 2], timestamps_unix_nano=[T0, T0 + 1, T0 + 2])
    expect_error(
        single_request(d, [sample]), RejectReason.BAD_VALUES, "samples[0]: 2 values but 3 timestamps_unix_nano"
    )


def test_sample_without_values_or_timestamps() -> None:
    d = five_stacks()
    expect_error(
        single_request(d, [otlp.Sample(stack_index=1)]), RejectReason.BAD_VALUES, "has neither values nor timestamps"
    )


def encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def old_sample(stack_index: int, values: list[int], attrs: list[int], timestamps: int = 0) -> bytes:
    """A Sample as v1.9 senders encode it: values=2 (packed), attribute_indices=3 (packed)."""
    packed_values = b"".join(encode_varint(v) for v in values)
    packed_attrs = b"".join(encode_varint(a) for a in attrs)
    out = b"\x08" + encode_varint(stack_index)
    out += b"\x12" + encode_varint(len(packed_values)) + packed_values
    if attrs:
        out += b"\x1a" + encode_varint(len(packed_attrs)) + packed_attrs
    if timestamps:
        out += b"\x2a" + encode_varint(8) + T0.to_bytes(8, "little")  # field 5 did not move
    return out


@pytest.mark.parametrize(
    ("old", "reason", "message"),
    [
        (old_sample(1, [4096], [1]), RejectReason.BAD_REFERENCE, "samples[0].attribute_indices[0] 4096 out of range"),
        (old_sample(1, [1], []), RejectReason.BAD_VALUES, "samples[0]: has neither values nor timestamps"),
        # Timestamps keep the sample "valid"; the unknown field 3 still gives the old layout away.
        (old_sample(9, [1], [1], timestamps=1), RejectReason.BAD_REFERENCE, "samples[0].stack_index 9 out of range"),
    ],
)
def test_pre_v110_sample_layout_is_rejected_with_a_hint(old: bytes, reason: RejectReason, message: str) -> None:
    d = five_stacks()
    d.attr("thread.name", "main")
    request = single_request(d, [otlp.Sample.FromString(old)])
    body = request.SerializeToString()
    with pytest.raises(InvalidProfileError) as info:
        otlp_to_pprof(parse_export_request(body, PB, LIMITS), LIMITS)
    assert info.value.reason is reason
    assert message in str(info.value)
    assert "older than OTLP profiles v1.10" in str(info.value)


def test_no_old_sender_hint_for_plain_errors() -> None:
    d = five_stacks()
    expect_error(single_request(d, [otlp.Sample(stack_index=9, values=[1])]), RejectReason.BAD_REFERENCE, "9 out")
    with pytest.raises(InvalidProfileError) as info:
        otlp_to_pprof(single_request(d, [otlp.Sample(stack_index=9, values=[1])]), LIMITS)
    assert "v1.10" not in str(info.value)


def test_garbage_bytes_and_json() -> None:
    for body, content_type in [
        (b"\xff\xff\xff\xff\xff\xff", PB),
        (b"\x0a\x05abc", PB),  # truncated length-delimited field
        (b"not json", "application/json"),
        (b"[]", "application/json"),
        (b'{"resourceProfiles": [], "bogus": 1}', "application/json"),  # unknown fields are errors
        (
            b'{"resourceProfiles": [{"scopeProfiles": [{"profiles": [{"samples": [{"stackIndex": "x"}]}]}]}]}',
            "application/json",
        ),
        (b"\xff\xfe{", "application/json"),
    ]:
        with pytest.raises(InvalidProfileError) as info:
            parse_export_request(body, content_type, LIMITS)
        assert info.value.reason is RejectReason.BAD_PROTOBUF, body
        assert "ExportProfilesServiceRequest" in str(info.value)


@pytest.mark.parametrize("content_type", ["text/plain", "", "application/grpc", "application/x-protobuf-json"])
def test_wrong_content_type(content_type: str) -> None:
    with pytest.raises(InvalidProfileError, match="content type") as info:
        parse_export_request(b"", content_type, LIMITS)
    assert info.value.reason is RejectReason.UNSUPPORTED


def test_body_larger_than_limit() -> None:
    with pytest.raises(PayloadTooLargeError):
        parse_export_request(b"\x00" * 101, PB, DecodeLimits(max_decompressed_bytes=100))


def test_too_many_samples() -> None:
    request, _ = heap_request()
    with pytest.raises(InvalidProfileError, match=r"profiles\[0\]\.samples: 2 entries exceed the limit of 1") as info:
        otlp_to_pprof(request, DecodeLimits(max_samples=1))
    assert info.value.reason is RejectReason.TOO_MANY_ITEMS


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (DecodeLimits(max_locations=4), "dictionary.location_table: 5 entries exceed the limit of 4"),
        (DecodeLimits(max_functions=3), "dictionary.function_table: 4 entries exceed the limit of 3"),
        (DecodeLimits(max_strings=5), "dictionary.string_table"),
    ],
)
def test_too_many_dictionary_items(limits: DecodeLimits, message: str) -> None:
    request, _ = heap_request()
    with pytest.raises(InvalidProfileError, match=message) as info:
        otlp_to_pprof(request, limits)
    assert info.value.reason is RejectReason.TOO_MANY_ITEMS


def test_shared_stacks_cannot_expand_without_bound() -> None:
    d = Dict()
    fn = d.fn("main.f", "f.go")
    deep = d.stack(*[d.loc(fn, 1)] * 500)
    attrs = [d.attr("i", i) for i in range(50)]
    samples = [otlp.Sample(stack_index=deep, values=[1], attribute_indices=[a]) for a in attrs]
    request = single_request(d, samples)
    assert len(request.SerializeToString()) < 10_000
    with pytest.raises(InvalidProfileError, match="expanded stacks exceed 20000") as info:
        otlp_to_pprof(request, DecodeLimits(max_decompressed_bytes=20_000))
    assert info.value.reason is RejectReason.TOO_MANY_ITEMS
    assert len(otlp_to_pprof(request, LIMITS)[0].profile.sample) == 50


def test_summed_values_overflowing_int64() -> None:
    d = five_stacks()
    big = (1 << 63) - 1
    samples = [otlp.Sample(stack_index=1, values=[big]), otlp.Sample(stack_index=1, values=[1])]
    expect_error(single_request(d, samples), RejectReason.BAD_VALUES, "overflow int64")


def test_time_beyond_int64() -> None:
    d = five_stacks()
    request = single_request(d, [otlp.Sample(stack_index=1, values=[1])], time_unix_nano=(1 << 64) - 1)
    expect_error(request, RejectReason.BAD_VALUES, "time_unix_nano: 18446744073709551615 does not fit in int64")


def test_random_and_mutated_bodies_never_crash() -> None:
    rng = random.Random(1234)
    request, _ = heap_request()
    body = request.SerializeToString()
    bodies = [rng.randbytes(rng.randrange(1, 200)) for _ in range(300)]
    for _ in range(700):
        mutated = bytearray(body)
        for _ in range(rng.randrange(1, 6)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        bodies.append(bytes(mutated[: rng.randrange(len(mutated) + 1)] if rng.random() < 0.3 else mutated))
    outcomes = {"ok": 0, "rejected": 0}
    for data in bodies:
        try:
            otlp_to_pprof(parse_export_request(data, PB, LIMITS), LIMITS)
        except InvalidProfileError:
            outcomes["rejected"] += 1
        else:
            outcomes["ok"] += 1
    assert outcomes["rejected"] > 100


# --------------------------------------------------------------------------------------------------
# End to end (needs the pprof summariser)


def test_otlp_upload_heap_summary() -> None:
    request, _ = heap_request()
    [decoded] = upload(request).profiles
    summary = decoded.summary
    assert decoded.resource["service.name"] == "checkout"
    assert summary.kind is ProfileKind.HEAP
    assert summary.total == 4096  # sum of inuse_space values
    assert summary.total_count == 4
    assert summary.time_nanos == T0
    assert summary.source_format == "otlp"
    assert summary.sites[0].function == "main.(*Cache).Put"
    assert (summary.sites[0].file, summary.sites[0].line) == ("/src/cache.go", 42)


def test_converted_profile_is_summarised_like_its_pprof_bytes() -> None:
    """A converted `Profile` is summarised from its messages (no serialising and parsing again): the
    same summary as its bytes through the pprof decoder, on both of its paths."""
    from otel_leakproc.receiver.decode.pprof import FAST_PATH_MIN_SAMPLES, summarize_pprof, summarize_pprof_bytes

    request, _ = heap_request()
    [item] = otlp_to_pprof(request, LIMITS)
    assert item.profile is not None
    assert summarize_pprof(item.profile, LIMITS) == summarize_pprof_bytes(item.profile.SerializeToString(), LIMITS)
    big = profile_pb2.Profile.FromString(gzip.decompress(GO_HEAP.read_bytes()))
    while len(big.sample) < FAST_PATH_MIN_SAMPLES:  # large enough for the vectorised path from bytes
        big.sample.extend(list(big.sample))
    assert summarize_pprof(big, LIMITS) == summarize_pprof_bytes(big.SerializeToString(), LIMITS)
    big.sample[5].value.append(1)
    with pytest.raises(InvalidProfileError, match=r"profile\.sample\[5\]\.value: 5 values for 4 sample types"):
        summarize_pprof(big, LIMITS)


def test_otlp_upload_original_payload_and_session_label() -> None:
    request = payload_request(go_heap_bytes(), copies=4)
    request.resource_profiles[0].resource.attributes.append(kv("__session_id__", string_value="abc"))
    body = json_format.MessageToJson(request).encode()
    [decoded] = process_upload(UploadRequest("otlp", body, content_type="application/json"), LIMITS).profiles
    assert decoded.resource["service.name"] == "go-app"
    assert decoded.summary.total == 31873270
    assert decoded.summary.labels == {"__session_id__": "abc"}


def test_otlp_upload_skips_profile_kinds_it_does_not_track() -> None:
    cpu = otlp.Profile(time_unix_nano=T0 + 5)
    request, _ = heap_request(extra=[cpu])
    strings = request.dictionary.string_table
    strings.extend(["cpu", "nanoseconds"])
    cpu_profile = request.resource_profiles[0].scope_profiles[0].profiles[4]
    cpu_profile.sample_type.type_strindex = len(strings) - 2
    cpu_profile.sample_type.unit_strindex = len(strings) - 1
    cpu_profile.samples.add(stack_index=1, values=[10_000_000])
    result = upload(request)
    assert [p.summary.total for p in result.profiles] == [4096]
    assert len(result.ignored) == 1
    assert "is not a heap, goroutine, goroutineleak, mutex or block profile" in result.ignored[0]
