"""The HTTP server: upload endpoints (thin adapters over the ingest core), health and own metrics. The read
side (the series API and the status page, `query/`) adds its routes to the same application (`app.py`),
under the same error middleware.

Errors are JSON `{"code": "<connect code>", "message": "..."}` with the HTTP status Pyroscope clients and
Connect clients expect (400 invalid_argument, 401 unauthenticated, 403 permission_denied, 413 / 429
resource_exhausted, 415 for a content type the endpoint does not speak).

aiohttp's own request decompression is turned off (see `start_http_server`): a gzip body is inflated by
the decoders, in a worker, under the decompressed-size bound, never by the server on the event loop.
"""

from __future__ import annotations

import json
import logging
import math
import ssl
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from otel_leakproc.errors import InvalidProfileError, RefusedError, RejectReason, UnavailableError
from otel_leakproc.receiver.auth import AuthError, visible_tenants
from otel_leakproc.receiver.config import ServerConfig, TlsConfig
from otel_leakproc.receiver.ingest import Credentials, DecoderCrashedError, IngestCore
from otel_leakproc.receiver.uploads import Dialect, UploadRequest
from otel_leakproc.receiver.uploads.media import MESSAGE_TYPES, media_type

log = logging.getLogger(__name__)

PUSH_PATH = "/push.v1.PusherService/Push"
OTLP_HTTP_PATH = "/v1development/profiles"
# Basic and Bearer are both accepted; a browser shows its login dialog for Basic.
WWW_AUTHENTICATE = 'Basic realm="otel-leakproc", charset="UTF-8"'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"code": code, "message": message}).encode(),
        content_type="application/json",
        headers=headers,
    )


class HttpReceiver:
    """The ingestion routes and handlers, health and /metrics, and the error middleware."""

    def __init__(
        self,
        config: ServerConfig,
        core: IngestCore,
        metrics: Callable[[], bytes | Awaitable[bytes]],
        ready: Callable[[], bool],
        not_ready_reason: Callable[[], str] | None = None,
    ) -> None:
        self._config = config
        self._core = core
        self._metrics = metrics
        self._ready = ready
        self._not_ready_reason = not_ready_reason

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self._config.max_body_bytes, middlewares=[self._errors])
        app.router.add_post("/ingest", self._ingest)
        app.router.add_post("/pyroscope/ingest", self._ingest)
        app.router.add_post(PUSH_PATH, self._push)
        app.router.add_post(OTLP_HTTP_PATH, self._otlp)
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_handler)
        return app

    # -- uploads --------------------------------------------------------------------------------

    async def _ingest(self, request: web.Request) -> web.Response:
        await self._upload(request, "ingest")
        return web.Response(status=200)

    async def _push(self, request: web.Request) -> web.Response:
        return await self._message_upload(request, "push")

    async def _otlp(self, request: web.Request) -> web.Response:
        return await self._message_upload(request, "otlp")

    async def _message_upload(self, request: web.Request, dialect: Dialect) -> web.Response:
        """Connect push and OTLP/HTTP: a protobuf or JSON message in (the media types of
        `uploads/media.py`), an empty message of the same media type out (PushResponse and
        ExportProfilesServiceResponse have nothing to report on success)."""
        accepted = MESSAGE_TYPES[dialect]
        media, _ = media_type(request.headers.get("Content-Type", ""))
        if media not in accepted:
            self._core.reject("unsupported_media_type")
            wanted = ", ".join(accepted)
            message = f"Content-Type: {media or '(none)'} is not accepted here; use one of {wanted}"
            return error_response(415, "invalid_argument", message)
        await self._upload(request, dialect)
        if accepted[media] == "json":
            return web.Response(status=200, body=b"{}", content_type=media)
        return web.Response(status=200, body=b"", content_type=media)

    async def _upload(self, request: web.Request, dialect: Dialect) -> None:
        credentials = Credentials(request.headers.get("Authorization"), request.headers.get("X-Scope-OrgID"))
        # Refuse unauthenticated uploads before reading their bodies.
        self._core.authenticate(credentials)
        declared = request.content_length
        if declared is not None and declared > self._config.max_body_bytes:
            # The same answer aiohttp gives when it stops reading a body over client_max_size.
            raise web.HTTPRequestEntityTooLarge(max_size=self._config.max_body_bytes, actual_size=declared)
        # Admission (queue, tenant share, bytes in flight) before the body is read: a body without a
        # declared length reserves the largest one allowed.
        admission = self._core.admit(credentials, self._config.max_body_bytes if declared is None else declared)
        try:
            body = await request.read()
        except BaseException:
            self._core.release(admission)
            raise
        upload = UploadRequest(
            dialect=dialect,
            body=body,
            content_type=request.headers.get("Content-Type", ""),
            content_encoding=request.headers.get("Content-Encoding", ""),
            query=tuple(request.query.items()),
            received_nanos=time.time_ns(),
        )
        await self._core.decode_admitted(admission, upload)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except InvalidProfileError as exc:
            if exc.reason is RejectReason.TOO_LARGE:
                return error_response(413, "resource_exhausted", str(exc))
            return error_response(400, "invalid_argument", str(exc))
        except web.HTTPRequestEntityTooLarge:
            self._core.reject(RejectReason.TOO_LARGE)
            limit = self._config.max_body_bytes
            return error_response(413, "resource_exhausted", f"body: larger than server.max_body_bytes ({limit})")
        except AuthError as exc:
            if exc.forbidden:
                return error_response(403, "permission_denied", str(exc))
            return error_response(401, "unauthenticated", str(exc), {"WWW-Authenticate": WWW_AUTHENTICATE})
        except UnavailableError as exc:
            retry = str(max(1, math.ceil(exc.retry_after)))
            return error_response(503, "unavailable", str(exc), {"Retry-After": retry})
        except RefusedError as exc:
            retry = str(max(1, math.ceil(exc.retry_after)))
            return error_response(429, "resource_exhausted", str(exc), {"Retry-After": retry})
        except DecoderCrashedError as exc:
            return error_response(500, "internal", str(exc))
        except web.HTTPException as exc:
            if exc.status >= 400:
                headers = {"WWW-Authenticate": WWW_AUTHENTICATE} if exc.status == 401 else None
                return error_response(exc.status, _code_for(exc.status), exc.reason, headers)
            raise

    # -- health, metrics ----------------------------------------------------------------------------

    async def _livez(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        if self._ready():
            return web.json_response({"status": "ready"})
        body = {"status": "not ready"}
        reason = self._not_ready_reason() if self._not_ready_reason is not None else ""
        if reason:
            body["reason"] = reason
        return web.json_response(body, status=503)

    async def _metrics_handler(self, request: web.Request) -> web.Response:
        # With auth on: /metrics names every tenant, so it needs valid credentials (401 otherwise) that may
        # see them all (`allowed_tenants: ["*"]`, 403 otherwise).
        if visible_tenants(self._config.auth, request.headers.get("Authorization")) is not None:
            raise AuthError(
                "authorization: /metrics names every tenant; it needs credentials with allowed_tenants ['*']",
                forbidden=True,
            )
        body = self._metrics()
        if not isinstance(body, bytes):  # several processes: every process's metrics, asked for
            body = await body
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def _code_for(status: int) -> str:
    codes = {
        401: "unauthenticated",
        403: "permission_denied",
        404: "not_found",
        405: "unimplemented",
        408: "deadline_exceeded",
        413: "resource_exhausted",
        429: "resource_exhausted",
        503: "unavailable",
    }
    return codes.get(status, "internal" if status >= 500 else "invalid_argument")


def server_ssl_context(tls: TlsConfig) -> ssl.SSLContext | None:
    """A server TLS context (TLS 1.2+), requiring client certificates when `client_ca_file` is set."""
    if not tls.enabled:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file:
        context.load_verify_locations(tls.client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


async def start_http_server(
    app: web.Application, address: str, tls: TlsConfig, *, reuse_port: bool = False
) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (for cleanup) and the bound port (useful with port 0).
    `reuse_port`: share the port with the other `serve` processes (SO_REUSEPORT)."""
    runner = web.AppRunner(app, access_log=None, auto_decompress=False, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    host, port = split_address(address)
    site = web.TCPSite(runner, host, port, ssl_context=server_ssl_context(tls), reuse_port=reuse_port or None)
    await site.start()
    bound = port
    for sockname in runner.addresses:
        if isinstance(sockname, tuple):
            bound = int(sockname[1])
            break
    return runner, bound
