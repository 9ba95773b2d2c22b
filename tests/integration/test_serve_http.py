"""`serve` over HTTP: every upload dialect, the API, health, own metrics, and every kind of bad input.

The service is the real one (aiohttp, decoder worker processes) on a loopback port; uploads are real Go
profiles from the corpus.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import ExportProfilesServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.profiles.v1development import profiles_pb2 as otlp
from serve_support import (
    STEADY_LEAK,
    TESTDATA,
    RunningService,
    http,
    make_settings,
    metric,
    running_service,
    series,
)

from otel_leakproc.receiver.proto import profile_pb2, push_pb2

PPROF = TESTDATA / "pprof"
HEAP = (PPROF / "go_heap_steady_leak_0059.pb.gz").read_bytes()
LEAKER = "main.(*orderHistoryArchive).appendOrderSnapshot"


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    settings = make_settings(
        tmp_path_factory.mktemp("state"),
        server={"max_body_bytes": 2 * 1024 * 1024},
        decode={"max_decompressed_bytes": 8 * 1024 * 1024},
    )
    with running_service(settings) as running:
        yield running


def ingest(svc: RunningService, name: str, body: bytes, **params: str) -> tuple[int, dict[str, str]]:
    query = "&".join(f"{k}={v}" for k, v in {"name": name, **params}.items())
    reply = http("POST", f"{svc.url}/ingest?{query}", body)
    return reply.status, reply.json() if reply.body else {}


def push_body(labels: dict[str, str], profiles: list[bytes]) -> push_pb2.PushRequest:
    request = push_pb2.PushRequest()
    series_ = request.series.add()
    for key, value in labels.items():
        series_.labels.add(name=key, value=value)
    for n, raw in enumerate(profiles):
        series_.samples.add(raw_profile=raw, ID=f"00000000-0000-4000-8000-{n:012d}")
    return request


def one(svc: RunningService, **params: str) -> dict[str, object]:
    found = series(svc.url, **params)
    assert len(found) == 1, found
    return found[0]


# -- uploads ------------------------------------------------------------------------------------


def test_curl_style_ingest_of_a_whole_leaking_series_is_flagged_with_the_leaking_function(svc: RunningService) -> None:
    for path in sorted(STEADY_LEAK.glob("*.pb.gz")):
        status, _ = ingest(svc, "checkout{instance=pod-1,env=prod}", path.read_bytes(), format="pprof")
        assert status == 200
    obj = one(svc, service="checkout")
    assert obj["instance"] == "pod-1"
    assert obj["kind"] == "heap"
    assert obj["profiles"] == 60
    assert obj["status"] in ("suspected", "confirmed")
    assert obj["top_growers"][0]["function"] == LEAKER  # type: ignore[index]
    assert obj["tenant"] == "default"
    assert obj["id"] == "default/checkout/pod-1/heap"
    assert obj["resource"]["service.name"] == "checkout"  # type: ignore[index]
    assert obj["resource"]["env"] == "prod"  # type: ignore[index]
    timeline = obj["timeline"]
    assert isinstance(timeline, list)
    assert len(timeline) == 60
    assert timeline[-1][1] == obj["current"]
    events = [e.name for e in svc.exporter.events if e.report.key.service == "checkout"]
    assert events[0] == "leak.suspected"
    # The same series without the timeline, and filters.
    assert "timeline" not in series(svc.url, service="checkout", timeline="0")[0]
    assert series(svc.url, service="checkout", kind="goroutine") == []


def test_ingest_multipart_like_pyroscope_go(svc: RunningService) -> None:
    boundary = "xYzZy42"
    config = json.dumps({"inuse_space": {"units": "bytes", "cumulative": False}}).encode()
    parts = [
        (b'Content-Disposition: form-data; name="profile"; filename="profile.pprof"', HEAP),
        (b'Content-Disposition: form-data; name="sample_type_config"; filename="sample_type_config.json"', config),
    ]
    body = b"".join(
        b"--"
        + boundary.encode()
        + b"\r\n"
        + head
        + b"\r\nContent-Type: application/octet-stream\r\n\r\n"
        + data
        + b"\r\n"
        for head, data in parts
    )
    body += b"--" + boundary.encode() + b"--\r\n"
    reply = http(
        "POST",
        f"{svc.url}/ingest?name=multipart-svc{{pod=mp-0}}&spyName=gospy&from=1790000000&until=1790000010",
        body,
        {"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert reply.status == 200, reply.body
    obj = one(svc, service="multipart-svc")
    assert obj["instance"] == "mp-0"
    assert obj["top_growers"] == [] or obj["profiles"] == 1


@pytest.mark.parametrize("encoding", ["", "gzip"])
@pytest.mark.parametrize(
    "content_type", ["application/proto", "application/json", "application/x-protobuf", "application/protobuf"]
)
def test_connect_push_proto_and_json_with_and_without_gzip(
    svc: RunningService, content_type: str, encoding: str
) -> None:
    service = f"push-{content_type.split('/')[1]}-{encoding or 'plain'}"
    message = push_body({"__name__": "memory", "service_name": service, "pod": "p-1"}, [gzip.decompress(HEAP)])
    cpu = message.series.add()
    cpu.labels.add(name="__name__", value="process_cpu")
    cpu.labels.add(name="service_name", value=service)
    cpu.samples.add(raw_profile=b"not decoded", ID="cpu")
    body = (
        message.SerializeToString()
        if content_type != "application/json"
        else json_format.MessageToJson(message).encode()
    )
    headers = {"Content-Type": content_type}
    if encoding:
        body = gzip.compress(body)
        headers["Content-Encoding"] = encoding
    reply = http("POST", f"{svc.url}/push.v1.PusherService/Push", body, headers)
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith(content_type)
    obj = one(svc, service=service)
    assert (obj["instance"], obj["kind"], obj["profiles"]) == ("p-1", "heap", 1)
    assert obj["top_growers"] == [] or isinstance(obj["top_growers"], list)
    assert metric(svc.url, "otel_leakproc_profiles_ignored_total", dialect="push") >= 1


def otlp_request(service: str, payload: bytes) -> ExportProfilesServiceRequest:
    request = ExportProfilesServiceRequest()
    request.dictionary.string_table.append("")
    rp = request.resource_profiles.add()
    for key, value in {
        "service.name": service,
        "service.instance.id": f"{service}-0",
        "k8s.namespace.name": "ns",
    }.items():
        rp.resource.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    rp.scope_profiles.add().profiles.append(
        otlp.Profile(original_payload_format="pprof", original_payload=payload, profile_id=bytes(range(16)))
    )
    return request


@pytest.mark.parametrize("content_type", ["application/x-protobuf", "application/json"])
def test_otlp_http_profiles(svc: RunningService, content_type: str) -> None:
    service = f"otlp-{content_type.split('/')[1]}"
    message = otlp_request(service, HEAP)
    raw = (
        message.SerializeToString()
        if content_type != "application/json"
        else json_format.MessageToJson(message).encode()
    )
    reply = http(
        "POST",
        f"{svc.url}/v1development/profiles",
        gzip.compress(raw),
        {"Content-Type": content_type, "Content-Encoding": "gzip"},
    )
    assert reply.status == 200, reply.body
    obj = one(svc, service=service)
    assert obj["instance"] == f"{service}-0"
    assert obj["resource"]["k8s.namespace.name"] == "ns"  # type: ignore[index]


def test_goroutine_text_dump_upload(svc: RunningService) -> None:
    text = (TESTDATA / "goroutine-text" / "goroutine_leak_0059.txt").read_bytes()
    status, _ = ingest(svc, "dumps{instance=d-1}", text, format="goroutine", until="1790000000")
    assert status == 200
    obj = one(svc, service="dumps")
    assert obj["kind"] == "goroutine"
    assert obj["current"] > 0  # type: ignore[operator]
    assert obj["last_time"] == "2026-09-21T14:13:20.000Z" or obj["last_time"].startswith("2026-")  # type: ignore[union-attr]


# -- health, metrics, page ----------------------------------------------------------------------


def test_health_and_metrics(svc: RunningService) -> None:
    assert http("GET", f"{svc.url}/livez").status == 200
    assert http("GET", f"{svc.url}/readyz").json() == {"status": "ready"}
    text = http("GET", f"{svc.url}/metrics").body.decode()
    for name in (
        "otel_leakproc_profiles_received_total",
        "otel_leakproc_queue_depth",
        "otel_leakproc_decode_seconds_bucket",
        "otel_leakproc_series_tracked",
    ):
        assert name in text
    assert metric(svc.url, "otel_leakproc_queue_capacity") == 64
    assert metric(svc.url, "otel_leakproc_series_tracked") == len(series(svc.url))


def test_status_page_and_assets_are_served(svc: RunningService) -> None:
    page = http("GET", f"{svc.url}/")
    assert page.status == 200
    assert b"<html" in page.body.lower()
    assert http("GET", f"{svc.url}/static/app.js").status == 200
    assert http("GET", f"{svc.url}/static/../../app.py").status in (403, 404)


# -- bad input ----------------------------------------------------------------------------------


def _bad(
    svc: RunningService, url: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str]]:
    reply = http("POST", f"{svc.url}{url}", body, headers)
    assert reply.headers.get("content-type", "").startswith("application/json"), reply.headers
    doc = reply.json()
    assert set(doc) == {"code", "message"}
    assert doc["message"]
    return reply.status, doc


def test_every_kind_of_bad_input_is_a_clear_counted_rejection_and_leaves_series_alone(svc: RunningService) -> None:
    before = {s["id"]: s["profiles"] for s in series(svc.url, timeline="0")}
    raw_heap = gzip.decompress(HEAP)
    bomb = gzip.compress(b"\0" * (16 * 1024 * 1024), 9)  # 16 MiB of zeros in ~16 KiB, over the 8 MiB bound
    cases = [
        # url, body, headers, status, code, reason, words in the message
        (
            "/ingest?name=bad&format=pprof",
            b"garbage, not a profile",
            None,
            400,
            "invalid_argument",
            "bad_protobuf",
            "pprof",
        ),
        ("/ingest?name=bad&format=pprof", HEAP[: len(HEAP) // 2], None, 400, "invalid_argument", "bad_gzip", "gzip"),
        ("/ingest?name=bad&format=pprof", bomb, None, 413, "resource_exhausted", "too_large", "8388608"),
        ("/ingest?format=pprof", HEAP, None, 400, "invalid_argument", None, "name"),
        ("/ingest?name=bad{oops&format=pprof", HEAP, None, 400, "invalid_argument", None, "name"),
        ("/ingest?name=bad&format=jfr", HEAP, None, 400, "invalid_argument", "unsupported", "jfr"),
        ("/ingest?name=bad&format=pprof", raw_heap[:-7], None, 400, "invalid_argument", None, ""),
        (
            "/push.v1.PusherService/Push",
            b"{}",
            {"Content-Type": "text/plain"},
            415,
            "invalid_argument",
            "unsupported_media_type",
            "Content-Type",
        ),
        (
            "/push.v1.PusherService/Push",
            b"\xff\xff\xff",
            {"Content-Type": "application/proto"},
            400,
            "invalid_argument",
            None,
            "",
        ),
        (
            "/push.v1.PusherService/Push",
            b'{"series": [], "surprise": 1}',
            {"Content-Type": "application/json"},
            400,
            "invalid_argument",
            None,
            "surprise",
        ),
        (
            "/push.v1.PusherService/Push",
            HEAP,
            {"Content-Type": "application/proto", "Content-Encoding": "br"},
            400,
            "invalid_argument",
            None,
            "br",
        ),
        (
            "/v1development/profiles",
            b"x",
            {"Content-Type": "application/xml"},
            415,
            "invalid_argument",
            None,
            "Content-Type",
        ),
        (
            "/ingest?name=bad&format=pprof",
            b"\0" * (2 * 1024 * 1024 + 1),
            None,
            413,
            "resource_exhausted",
            "too_large",
            "max_body_bytes",
        ),
    ]
    for url, body, headers, status, code, reason, words in cases:
        counted = metric(svc.url, "otel_leakproc_profiles_rejected_total", reason=reason) if reason else 0.0
        got_status, doc = _bad(svc, url, body, headers)
        assert (got_status, doc["code"]) == (status, code), (url, doc)
        assert words in doc["message"], (url, doc)
        if reason:
            assert metric(svc.url, "otel_leakproc_profiles_rejected_total", reason=reason) == counted + 1, (url, reason)
    # A bad upload for a tracked series does not touch it, and nothing else moved either.
    after = {s["id"]: s["profiles"] for s in series(svc.url, timeline="0")}
    assert after == before
    assert http("GET", f"{svc.url}/readyz").status == 200


def test_corrupt_deflate_stream_inside_valid_gzip_header(svc: RunningService) -> None:
    broken = bytearray(HEAP)
    broken[40:60] = bytes(20)
    status, doc = _bad(svc, "/ingest?name=corrupt&format=pprof", bytes(broken))
    assert status == 400
    assert doc["code"] == "invalid_argument"
    assert series(svc.url, service="corrupt") == []


def test_small_bodies_that_inflate_past_the_inline_bound_are_decoded_by_a_worker(svc: RunningService) -> None:
    """Bodies up to `ingest.inline_max_bytes` are decoded on the event loop only while they inflate to at
    most INLINE_MAX_DECOMPRESSED_BYTES; a valid one that inflates further is a worker's, not a rejection."""
    profile = profile_pb2.Profile.FromString(gzip.decompress(HEAP))
    profile.string_table.append("x" * (1024 * 1024))  # a 1 MiB comment: 4 times the inline bound
    profile.comment.append(len(profile.string_table) - 1)
    body = gzip.compress(profile.SerializeToString(), 9)
    assert len(body) <= 16 * 1024 < len(HEAP) + 1024 * 1024
    status, doc = ingest(svc, "inflated{instance=a}", body, format="pprof")
    assert status == 200, doc
    (found,) = series(svc.url, service="inflated")
    assert found["profiles"] == 1
    status, _ = ingest(svc, "inflated{instance=a}", HEAP, format="pprof")  # small, decoded inline: same answer
    assert status == 200


# -- bounds: queue, rate limit, series ------------------------------------------------------------


def big_profile(samples: int) -> bytes:
    """A valid heap profile with many distinct stacks: slow enough to decode to hold the queue."""
    p = profile_pb2.Profile()
    p.string_table.extend(["", "inuse_space", "bytes", "inuse_objects", "count"])
    p.sample_type.add(type=1, unit=2)
    p.sample_type.add(type=3, unit=4)
    for i in range(1, 2001):
        p.string_table.append(f"main.f{i}")
        p.function.add(id=i, name=len(p.string_table) - 1, filename=0)
        p.location.add(id=i, line=[profile_pb2.Line(function_id=i, line=i)])
    for s in range(samples):
        p.sample.add(location_id=[1 + s % 2000, 1 + (s * 7) % 2000, 1 + (s * 13) % 2000], value=[64 + s, 1])
    p.time_nanos = 1_790_000_000_000_000_000
    return gzip.compress(p.SerializeToString(), 1)


def test_full_queue_answers_429_with_retry_after(tmp_path: Path) -> None:
    settings = make_settings("", ingest={"workers": 1, "queue_size": 1, "retry_after_seconds": 3})
    body = big_profile(150_000)
    with running_service(settings) as svc:
        url = f"{svc.url}/ingest?name=queue&format=pprof"
        with ThreadPoolExecutor(6) as pool:
            replies = list(pool.map(lambda _: http("POST", url, body), range(6)))
        statuses = sorted(r.status for r in replies)
        assert 200 in statuses
        assert 429 in statuses, statuses
        refused = next(r for r in replies if r.status == 429)
        assert refused.headers["retry-after"] == "3"
        assert refused.json()["code"] == "resource_exhausted"
        assert metric(svc.url, "otel_leakproc_queue_refused_total") == statuses.count(429)
        assert metric(svc.url, "otel_leakproc_queue_depth") == 0


def test_rate_limit_per_tenant(tmp_path: Path) -> None:
    settings = make_settings("", server={"rate_limit": {"uploads_per_second": 0.01, "burst": 2}})
    with running_service(settings) as svc:
        url = f"{svc.url}/ingest?name=rl&format=pprof"
        assert [http("POST", url, HEAP, {"X-Scope-OrgID": "a"}).status for _ in range(2)] == [200, 200]
        limited = http("POST", url, HEAP, {"X-Scope-OrgID": "a"})
        assert limited.status == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert "rate limit" in limited.json()["message"]
        # Another tenant has its own bucket.
        assert http("POST", url, HEAP, {"X-Scope-OrgID": "b"}).status == 200
        assert metric(svc.url, "otel_leakproc_profiles_rejected_total", reason="rate_limited") == 1


def test_series_bound_evicts_the_least_recently_updated(tmp_path: Path) -> None:
    settings = make_settings("", state={"max_series": 2})
    with running_service(settings) as svc:
        for name in ("first", "second", "third"):
            assert http("POST", f"{svc.url}/ingest?name={name}&format=pprof", HEAP).status == 200
        assert sorted(s["service"] for s in series(svc.url)) == ["second", "third"]
        assert metric(svc.url, "otel_leakproc_series_evicted_total") == 1
        assert [k.service for k in svc.exporter.forgotten] == ["first"]


# -- auth and tenants -----------------------------------------------------------------------------

AUTH = {
    "credentials": [
        {"tenant": "acme", "token": "s3cret", "allowed_tenants": ["acme-dev"]},
        {"tenant": "globex", "username": "globex", "password": "pw"},
        {"tenant": "ops", "token": "scraper", "allowed_tenants": ["*"]},
    ]
}
SCRAPER = {"Authorization": "Bearer scraper"}  # with auth on, /metrics needs a credential that sees all


def test_auth_tokens_basic_and_scope_header(tmp_path: Path) -> None:
    with running_service(make_settings("", server={"auth": AUTH})) as svc:
        url = f"{svc.url}/ingest?name=authsvc&format=pprof"
        missing = http("POST", url, HEAP)
        assert missing.status == 401
        assert missing.json()["code"] == "unauthenticated"
        assert "www-authenticate" in missing.headers
        assert http("POST", url, HEAP, {"Authorization": "Bearer wrong"}).status == 401
        assert http("POST", url, HEAP, {"Authorization": "Bearer s3cret"}).status == 200
        basic = "Basic " + base64.b64encode(b"globex:pw").decode()
        assert http("POST", url, HEAP, {"Authorization": basic}).status == 200
        bad_basic = "Basic " + base64.b64encode(b"globex:nope").decode()
        assert http("POST", url, HEAP, {"Authorization": bad_basic}).status == 401
        dev = {"Authorization": "Bearer s3cret", "X-Scope-OrgID": "acme-dev"}
        assert http("POST", url, HEAP, dev).status == 200
        other = http("POST", url, HEAP, {"Authorization": "Bearer s3cret", "X-Scope-OrgID": "globex"})
        assert other.status == 403
        assert other.json()["code"] == "permission_denied"
        rejected = "otel_leakproc_profiles_rejected_total"
        assert metric(svc.url, rejected, headers=SCRAPER, reason="unauthenticated") == 3
        assert metric(svc.url, rejected, headers=SCRAPER, reason="forbidden") == 1
        # The API shows each credential only its own tenants.
        assert http("GET", f"{svc.url}/api/v1/series").status == 401
        acme = http("GET", f"{svc.url}/api/v1/series", headers={"Authorization": "Bearer s3cret"}).json()["series"]
        assert sorted(s["tenant"] for s in acme) == ["acme", "acme-dev"]
        globex = http("GET", f"{svc.url}/api/v1/series", headers={"Authorization": basic}).json()["series"]
        assert [s["tenant"] for s in globex] == ["globex"]


def test_without_auth_the_scope_header_names_the_tenant(svc: RunningService) -> None:
    assert http("POST", f"{svc.url}/ingest?name=tenanted&format=pprof", HEAP, {"X-Scope-OrgID": "team-a"}).status == 200
    assert one(svc, service="tenanted")["tenant"] == "team-a"
    bad = http("POST", f"{svc.url}/ingest?name=tenanted&format=pprof", HEAP, {"X-Scope-OrgID": "../etc"})
    assert bad.status == 403
