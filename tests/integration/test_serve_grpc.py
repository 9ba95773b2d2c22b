"""`serve` over gRPC (a real grpcio client): Pyroscope push, OTLP profiles Export, health, errors, TLS."""

from __future__ import annotations

import gzip
import json
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import toolchain
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2, profiles_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.profiles.v1development import profiles_pb2 as otlp
from serve_support import TESTDATA, RunningService, http, make_settings, metric, running_service, series

from otel_leakproc.receiver.proto import push_pb2

HEAP = (TESTDATA / "pprof" / "go_heap_steady_leak_0059.pb.gz").read_bytes()
GOROUTINE = (TESTDATA / "pprof" / "go_goroutine_lock_contention_0030.pb.gz").read_bytes()
PUSH = "/push.v1.PusherService/Push"


def push_call(channel: grpc.Channel) -> grpc.UnaryUnaryMultiCallable:  # type: ignore[type-arg]
    return channel.unary_unary(
        PUSH,
        request_serializer=push_pb2.PushRequest.SerializeToString,
        response_deserializer=lambda b: b,
    )


def push_request(service: str, name: str = "memory", raw: bytes = HEAP) -> push_pb2.PushRequest:
    request = push_pb2.PushRequest()
    s = request.series.add()
    for key, value in {"__name__": name, "service_name": service, "instance": f"{service}-1"}.items():
        s.labels.add(name=key, value=value)
    s.samples.add(raw_profile=raw, ID="1")
    return request


@pytest.fixture(scope="module")
def svc() -> Iterator[RunningService]:
    auth = {
        "credentials": [
            {"tenant": "acme", "token": "tok", "allowed_tenants": ["acme-dev"]},
            {"tenant": "ops", "token": "scraper", "allowed_tenants": ["*"]},  # reads /metrics
        ]
    }
    with running_service(make_settings("", server={"auth": auth})) as running:
        yield running


AUTH = (("authorization", "Bearer tok"),)


def test_push_over_grpc_with_gzip_compression(svc: RunningService) -> None:
    with grpc.insecure_channel(svc.grpc_target, compression=grpc.Compression.Gzip) as channel:
        reply = push_call(channel)(push_request("grpc-push"), metadata=AUTH, timeout=30)
        assert reply == b""
        push_call(channel)(push_request("grpc-push", "goroutine", GOROUTINE), metadata=AUTH, timeout=30)
    auth = {"Authorization": "Bearer tok"}
    found = {
        s["kind"]: s for s in http("GET", f"{svc.url}/api/v1/series?service=grpc-push", headers=auth).json()["series"]
    }
    assert set(found) == {"heap", "goroutine"}
    assert found["heap"]["instance"] == "grpc-push-1"
    assert found["heap"]["tenant"] == "acme"


def test_otlp_export_over_grpc_with_the_generated_stub(svc: RunningService) -> None:
    request = profiles_service_pb2.ExportProfilesServiceRequest()
    request.dictionary.string_table.append("")
    rp = request.resource_profiles.add()
    for key, value in {"service.name": "grpc-otlp", "service.instance.id": "o-1"}.items():
        rp.resource.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    rp.scope_profiles.add().profiles.append(
        otlp.Profile(original_payload_format="pprof", original_payload=gzip.decompress(HEAP), profile_id=bytes(16))
    )
    with grpc.insecure_channel(svc.grpc_target) as channel:
        stub = profiles_service_pb2_grpc.ProfilesServiceStub(channel)
        metadata = (*AUTH, ("x-scope-orgid", "acme-dev"))
        response = stub.Export(request, metadata=metadata, timeout=30)
        assert not response.HasField("partial_success")
    found = http("GET", f"{svc.url}/api/v1/series?service=grpc-otlp", headers={"Authorization": "Bearer tok"}).json()
    assert [(s["tenant"], s["instance"]) for s in found["series"]] == [("acme-dev", "o-1")]


def test_health(svc: RunningService) -> None:
    with grpc.insecure_channel(svc.grpc_target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "push.v1.PusherService"):
            status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.SERVING


def test_errors_are_grpc_statuses_with_the_http_messages(svc: RunningService) -> None:
    with grpc.insecure_channel(svc.grpc_target) as channel:
        call = push_call(channel)
        with pytest.raises(grpc.RpcError) as missing:
            call(push_request("grpc-err"), timeout=10)
        assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "credentials required" in missing.value.details()
        with pytest.raises(grpc.RpcError) as forbidden:
            call(push_request("grpc-err"), metadata=(*AUTH, ("x-scope-orgid", "other")), timeout=10)
        assert forbidden.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as garbage:
            call(push_request("grpc-err", raw=b"definitely not pprof"), metadata=AUTH, timeout=10)
        assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "series[0]" in garbage.value.details()
        raw = channel.unary_unary(PUSH, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as truncated:
            raw(b"\x0a\xff\xff\x01", metadata=AUTH, timeout=10)
        assert truncated.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    scraper = {"Authorization": "Bearer scraper"}
    assert metric(svc.url, "otel_leakproc_profiles_rejected_total", headers=scraper, reason="unauthenticated") >= 1
    auth = {"Authorization": "Bearer tok"}
    assert http("GET", f"{svc.url}/api/v1/series?service=grpc-err", headers=auth).json()["series"] == []


def test_oversized_message_is_resource_exhausted() -> None:
    with running_service(make_settings("", server={"max_body_bytes": 64 * 1024})) as svc:
        with grpc.insecure_channel(svc.grpc_target) as channel, pytest.raises(grpc.RpcError) as big:
            push_call(channel)(push_request("big", raw=b"\0" * 100_000), timeout=10)
        assert big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert series(svc.url) == []


# -- TLS and mTLS on both servers -----------------------------------------------------------------


def _openssl(*args: str) -> None:
    subprocess.run([toolchain.tool("openssl"), *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with the openssl CLI."""
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca_crt = str(d / "ca.key"), str(d / "ca.crt")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca", "-keyout", ca_key,
             "-out", ca_crt)  # fmt: skip
    for name, ext in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        key, csr, crt, extfile = (str(d / f"{name}.{suffix}") for suffix in ("key", "csr", "crt", "ext"))
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", key, "-out", csr)
        Path(extfile).write_text(ext + "\n")
        _openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
                 "-extfile", extfile, "-out", crt)  # fmt: skip
    return d


def test_tls_and_mtls_on_http_and_grpc(pki: Path) -> None:
    tls = {
        "cert_file": str(pki / "server.crt"),
        "key_file": str(pki / "server.key"),
        "client_ca_file": str(pki / "ca.crt"),
    }
    settings = make_settings("", server={"http": {"tls": tls}, "grpc": {"tls": tls}})
    with running_service(settings) as svc:
        base = f"https://127.0.0.1:{svc.service.http_port}"
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        # Without a client certificate the handshake is refused.
        with pytest.raises(OSError):  # noqa: PT011 (an SSL or connection error, by platform)
            urllib.request.urlopen(f"{base}/livez", context=context, timeout=10)
        context.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))
        request = urllib.request.Request(f"{base}/ingest?name=tls-http&format=pprof", data=HEAP, method="POST")
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            assert response.status == 200
        credentials = grpc.ssl_channel_credentials(
            root_certificates=(pki / "ca.crt").read_bytes(),
            private_key=(pki / "client.key").read_bytes(),
            certificate_chain=(pki / "client.crt").read_bytes(),
        )
        with grpc.secure_channel(svc.grpc_target, credentials) as channel:
            push_call(channel)(push_request("tls-grpc"), timeout=30)
        no_cert = grpc.ssl_channel_credentials(root_certificates=(pki / "ca.crt").read_bytes())
        with grpc.secure_channel(svc.grpc_target, no_cert) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                push_call(channel)(push_request("tls-grpc-nocert"), timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        with urllib.request.urlopen(f"{base}/api/v1/series", context=context, timeout=10) as response:
            names = sorted(s["service"] for s in json.loads(response.read())["series"])
        assert names == ["tls-grpc", "tls-http"]


def test_a_refusal_carries_retry_info_the_collector_honours() -> None:
    """Over its rate limit a tenant gets RESOURCE_EXHAUSTED with `retry-after` and a google.rpc.Status
    holding RetryInfo: without that detail the Collector's otlp_grpc exporter drops the batch."""
    from google.rpc import error_details_pb2, status_pb2

    settings = make_settings("", server={"rate_limit": {"uploads_per_second": 0.01, "burst": 1}})
    with running_service(settings) as svc, grpc.insecure_channel(svc.grpc_target) as channel:
        call = push_call(channel)
        call(push_request("limited"), timeout=10)
        with pytest.raises(grpc.RpcError) as refused:
            call(push_request("limited"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        trailers = dict(refused.value.trailing_metadata())
        assert int(trailers["retry-after"]) >= 1
        status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
        assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        info = error_details_pb2.RetryInfo()
        assert status.details[0].Unpack(info)
        assert info.retry_delay.seconds == int(trailers["retry-after"])
