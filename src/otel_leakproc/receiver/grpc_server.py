"""The gRPC server: `push.v1.PusherService/Push`, OTLP `ProfilesService/Export` and `grpc.health.v1.Health`.

The two upload methods take the request as raw bytes (no deserialiser) and hand them to the same ingest
core the HTTP server uses, so the message is parsed once, in a decoder worker. Errors become gRPC statuses
with the same messages as on HTTP: INVALID_ARGUMENT, RESOURCE_EXHAUSTED (size bounds, full queue, rate
limit; with `retry-after` trailing metadata), UNAUTHENTICATED, PERMISSION_DENIED.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from otel_leakproc.errors import InvalidProfileError, RefusedError, RejectReason, UnavailableError
from otel_leakproc.receiver.auth import AuthError
from otel_leakproc.receiver.config import GrpcServerConfig, ServerConfig
from otel_leakproc.receiver.ingest import Credentials, DecoderCrashedError, IngestCore
from otel_leakproc.receiver.uploads import Dialect, UploadRequest

PUSH_SERVICE = "push.v1.PusherService"
OTLP_SERVICE = "opentelemetry.proto.collector.profiles.v1development.ProfilesService"

RawHandler = Callable[[bytes, grpc.aio.ServicerContext[bytes, bytes]], Awaitable[bytes]]


def _metadata(context: grpc.aio.ServicerContext[bytes, bytes]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if isinstance(value, str):
            out[key.lower()] = value
    return out


def retry_trailers(code: grpc.StatusCode, message: str, retry_after: float) -> tuple[tuple[str, str | bytes], ...]:
    """Trailers of a refusal the client should retry: `retry-after` (seconds, as over HTTP) and the
    standard `google.rpc.Status` with a `RetryInfo` detail. The OpenTelemetry Collector's gRPC exporters
    retry RESOURCE_EXHAUSTED only when that detail is present, and wait as long as it says."""
    seconds = max(1, math.ceil(retry_after))
    info = error_details_pb2.RetryInfo()
    info.retry_delay.FromSeconds(seconds)
    status = status_pb2.Status(code=code.value[0], message=message)
    status.details.add().Pack(info)
    return (("retry-after", str(seconds)), ("grpc-status-details-bin", status.SerializeToString()))


def server_options(config: ServerConfig) -> list[tuple[str, int]]:
    """Transport bounds: grpc-core buffers a message whole before any handler runs, so connections,
    calls per connection and message size together bound what arriving pushes hold in memory."""
    listener = config.grpc
    return [
        ("grpc.max_receive_message_length", min(config.max_body_bytes, listener.max_message_bytes)),
        ("grpc.max_send_message_length", 4 * 1024 * 1024),
        ("grpc.max_concurrent_streams", listener.max_concurrent_streams),
        ("grpc.max_allowed_incoming_connections", listener.max_connections),
    ]


class GrpcReceiver:
    """Builds the grpc.aio server around an `IngestCore`."""

    def __init__(self, config: ServerConfig, core: IngestCore) -> None:
        self._config = config
        self._core = core
        self.health = health_aio.HealthServicer()

    def _handler(self, dialect: Dialect) -> RawHandler:
        async def handle(body: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            metadata = _metadata(context)
            credentials = Credentials(metadata.get("authorization"), metadata.get("x-scope-orgid"))
            upload = UploadRequest(
                dialect=dialect,
                body=body,
                content_type="application/proto" if dialect == "push" else "application/x-protobuf",
                received_nanos=time.time_ns(),
            )
            try:
                await self._core.ingest(credentials, upload)
            except InvalidProfileError as exc:
                code = grpc.StatusCode.RESOURCE_EXHAUSTED
                if exc.reason is not RejectReason.TOO_LARGE:
                    code = grpc.StatusCode.INVALID_ARGUMENT
                await context.abort(code, str(exc))
            except AuthError as exc:
                code = grpc.StatusCode.PERMISSION_DENIED if exc.forbidden else grpc.StatusCode.UNAUTHENTICATED
                await context.abort(code, str(exc))
            except RefusedError as exc:
                unavailable = isinstance(exc, UnavailableError)
                code = grpc.StatusCode.UNAVAILABLE if unavailable else grpc.StatusCode.RESOURCE_EXHAUSTED
                context.set_trailing_metadata(retry_trailers(code, str(exc), exc.retry_after))
                await context.abort(code, str(exc))
            except DecoderCrashedError as exc:
                await context.abort(grpc.StatusCode.INTERNAL, str(exc))
            # Both responses are messages whose default value is empty (no partial success to report).
            return b""

        return handle

    def build(self) -> grpc.aio.Server:
        server = grpc.aio.server(options=server_options(self._config))
        methods: tuple[tuple[str, str, Dialect], ...] = (
            (PUSH_SERVICE, "Push", "push"),
            (OTLP_SERVICE, "Export", "otlp"),
        )
        for service, method, dialect in methods:
            handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(self._handler(dialect))
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {method: handler}),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        return server

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", PUSH_SERVICE, OTLP_SERVICE):
            await self.health.set(name, status)


def bind(server: grpc.aio.Server, config: GrpcServerConfig) -> int:
    """Add the listening port (TLS when configured); returns the bound port."""
    tls = config.tls
    if not tls.enabled:
        return int(server.add_insecure_port(config.address))
    credentials = grpc.ssl_server_credentials(
        [(Path(tls.key_file).read_bytes(), Path(tls.cert_file).read_bytes())],
        root_certificates=Path(tls.client_ca_file).read_bytes() if tls.client_ca_file else None,
        require_client_auth=bool(tls.client_ca_file),
    )
    return int(server.add_secure_port(config.address, credentials))
