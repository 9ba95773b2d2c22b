"""The one ingest core every receiver calls: authenticate, rate-limit, bound, decode in a worker, hand on.

HTTP and gRPC handlers are thin adapters that turn a request into an `UploadRequest` plus credentials and
call `IngestCore.ingest`; they never decode on their own, so the two servers cannot drift apart.

Flow and bounds: at most `ingest.queue_size` uploads are waiting for or inside a decoder at once; the next
one is refused at once with `RefusedError` (429 / RESOURCE_EXHAUSTED, Retry-After) instead of queueing
in memory. Decoding runs in a pool of worker processes (`worker_pool`: one socket per worker, read by
the event loop), so a huge profile never stalls the event loop and all cores are used; only small bodies
(`ingest.inline_max_bytes`, inflating to at most `INLINE_MAX_DECOMPRESSED_BYTES`) are decoded on the
event loop, where they cost less than the hand-off.
The decoded summaries are handed to the sink on the event loop, in completion order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from otel_leakproc.errors import InvalidProfileError, PayloadTooLargeError, RefusedError, RejectReason, UnavailableError
from otel_leakproc.receiver.auth import AuthError, resolve_tenant
from otel_leakproc.receiver.config import IngestConfig, ServerConfig
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.ratelimit import Limiter, RateLimiter
from otel_leakproc.receiver.summary_checks import check_upload
from otel_leakproc.receiver.uploads import Dialect, UploadRequest, UploadResult, process_upload
from otel_leakproc.receiver.value_caps import ValueCaps, cap_upload
from otel_leakproc.receiver.worker_pool import WorkerCrashedError, WorkerFailedError, WorkerPool
from otel_leakproc.state.health import StoreHealth
from otel_leakproc.telemetry import Telemetry

log = logging.getLogger(__name__)

MAX_AUTO_WORKERS = 8
# An upload decoded on the event loop (`ingest.inline_max_bytes`) may inflate to at most this; one that
# inflates further is handed to a worker (a few milliseconds of parsing at most stay on the loop).
INLINE_MAX_DECOMPRESSED_BYTES = 256 * 1024

_T = TypeVar("_T")

# The processor's entry: returns None when the upload is kept, or an awaitable of that (several `serve`
# processes: the owners of its series keep it, `cluster/peers.py`).
Sink = Callable[[str, UploadRequest, UploadResult], Awaitable[None] | None]


class OwnerUnavailableError(UnavailableError):
    """Several `serve` processes: the one that owns a series is gone, has too many requests from this one
    unanswered, or did not answer in time (503; counted as `owner_unavailable` where the upload arrived)."""


class Router(Protocol):
    """Where uploads are decoded when several `serve` processes share the port (`cluster/peers.py`):
    `route` names the process that owns every series of an upload when the request alone tells (None:
    decode it here), `forward` has that process decode and keep it, and returns its outcome;
    `forward_decoded` has it keep an upload decoded here (its result as the decoder worker pickled it)."""

    def route(self, tenant: str, request: UploadRequest) -> int | None: ...

    async def forward(self, owner: int, tenant: str, request: UploadRequest) -> IngestOutcome: ...

    async def forward_decoded(self, owner: int, tenant: str, dialect: Dialect, pickled: bytes) -> IngestOutcome: ...


class DecoderCrashedError(Exception):
    """Decoding failed for a reason that is not the upload's fault: a worker died (it is replaced) or
    the decoder raised something other than InvalidProfileError (a bug, logged with its traceback)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request presented: the Authorization header or metadata, and X-Scope-OrgID."""

    authorization: str | None = None
    scope_org_id: str | None = None


@dataclass(slots=True)
class Admission:
    """An upload admitted before its body is read: it holds a decode slot and `size` bytes of the budget."""

    tenant: str
    size: int
    released: bool = False


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    """What one accepted upload did: its tenant, the profiles taken, and the ones ignored (with why)."""

    tenant: str
    accepted: int
    ignored: tuple[str, ...]


def _decode(
    request: UploadRequest, limits: DecodeLimits, caps: ValueCaps, max_profiles: int
) -> tuple[UploadResult, dict[str, int], float]:
    """Runs in a worker process: decode one upload, reject impossible values, cap its strings (so an
    over-long name never crosses to the server process), and time it all there (queueing excluded).
    Returns the cuts by field too."""
    start = time.perf_counter()
    decoded = process_upload(request, limits, max_profiles)
    check_upload(decoded)
    result, truncated = cap_upload(decoded, caps)
    return result, truncated, time.perf_counter() - start


_WorkerContext = tuple[DecodeLimits, ValueCaps, int]


def _worker_context(limits: DecodeLimits, caps: ValueCaps, max_profiles: int) -> _WorkerContext:
    """A worker's constant arguments, given once at its start (importing this module there imports the
    decoders before the first upload, which keeps that cost out of latencies)."""
    return limits, caps, max_profiles


def _decode_in_worker(context: _WorkerContext, request: UploadRequest) -> tuple[UploadResult, dict[str, int], float]:
    return _decode(request, *context)


def _decode_pickled_in_worker(context: _WorkerContext, request: UploadRequest) -> tuple[bytes, dict[str, int], float]:
    """The same, with the result pickled here: the server hands those bytes to another process unread."""
    result, truncated, seconds = _decode(request, *context)
    return pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL), truncated, seconds


def worker_count(config: IngestConfig) -> int:
    if config.workers > 0:
        return config.workers
    return max(1, min(MAX_AUTO_WORKERS, len(os.sched_getaffinity(0))))


class IngestCore:
    """Admission, bounded queueing and decoding of uploads; see the module docstring."""

    def __init__(
        self,
        server: ServerConfig,
        ingest: IngestConfig,
        limits: DecodeLimits,
        sink: Sink,
        telemetry: Telemetry,
        caps: ValueCaps | None = None,
        store_health: StoreHealth | None = None,
        limiter: Limiter | None = None,
        router: Router | None = None,
    ) -> None:
        self._server = server
        self._ingest = ingest
        self._limits = limits
        self._caps = caps or ValueCaps()
        self._inline_limits = replace(
            limits, max_decompressed_bytes=min(limits.max_decompressed_bytes, INLINE_MAX_DECOMPRESSED_BYTES)
        )
        self._sink = sink
        self._telemetry = telemetry
        # `server.rate_limit`, counted in this process, or for the whole cluster (cluster/quotas.py).
        self._limiter = limiter or RateLimiter(server.rate_limit)
        self._router = router
        self._pool: WorkerPool | None = None
        self._in_flight = 0
        self._bytes_in_flight = 0
        self._tenant_in_flight: dict[str, int] = {}
        self._store_health = store_health
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        telemetry.queue_capacity.set(ingest.queue_size)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def start(self) -> None:
        """Start the worker processes and wait until each has imported the decoders."""
        pool = WorkerPool(
            worker_count(self._ingest),
            _worker_context,
            (self._limits, self._caps, self._server.max_profiles_per_request),
            # The CLI module first: importing it installs the dataclass cache (`_dataclass_code`), which the
            # forkserver, a fresh interpreter, would otherwise not use for the decoders' dataclasses.
            preload=("otel_leakproc.cli", "otel_leakproc.receiver.ingest"),
        )
        await pool.start()
        self._pool = pool

    @property
    def worker_pids(self) -> list[int]:
        """The decoder workers' process ids (for tests and diagnostics)."""
        return [] if self._pool is None else self._pool.pids

    @property
    def uploads_in_workers(self) -> int:
        """Uploads sent to the decoder workers and not answered yet."""
        return 0 if self._pool is None else self._pool.jobs_sent

    def authenticate(self, credentials: Credentials) -> str:
        """The request's tenant. Counts and re-raises AuthError."""
        try:
            return resolve_tenant(self._server.auth, credentials.authorization, credentials.scope_org_id)
        except AuthError as exc:
            self._telemetry.rejected.labels("forbidden" if exc.forbidden else "unauthenticated").inc()
            raise

    async def ingest(
        self, credentials: Credentials, request: UploadRequest, *, tenant: str | None = None
    ) -> IngestOutcome:
        """Admit, decode and hand on one upload whose body is already in memory (gRPC, scrape).

        `tenant` is for in-process producers that are not clients (the scrape receiver): the upload
        belongs to that tenant and `credentials` are not checked; everything else is the same.

        Raises:
            AuthError: missing or wrong credentials, or a tenant the credentials may not use.
            RefusedError: rate limit, full queue, or shutting down (the sender should retry later).
            InvalidProfileError: the upload cannot be decoded (PayloadTooLargeError for size bounds).
            DecoderCrashedError: a worker died on this upload.
        """
        admission = self.admit(credentials, len(request.body), tenant=tenant)
        return await self.decode_admitted(admission, request)

    def admit(self, credentials: Credentials, size: int, *, tenant: str | None = None) -> Admission:
        """Decide whether an upload of `size` bytes may be read and decoded, before its body is read.

        On success the upload holds a decode slot and `size` bytes of `ingest.max_bytes_in_flight` until
        `decode_admitted` finishes or `release` is called, so request bodies in memory are bounded by the
        queue and the bytes budget, not by the number of open connections. Raises as `ingest` does.
        """
        tenant = self.authenticate(credentials) if tenant is None else tenant
        return self._admit(tenant, size, client=True)

    def _admit(self, tenant: str, size: int, *, client: bool) -> Admission:
        """`client`: apply the tenant's rate limit and queue share too (not to an upload another process
        received and forwarded: it passed them there)."""
        retry = self._ingest.retry_after_seconds
        if self._closing:
            self._telemetry.rejected.labels("shutting_down").inc()
            raise RefusedError("the service is shutting down", retry_after=retry)
        if self._pool is None:
            self._telemetry.rejected.labels("starting").inc()
            raise RefusedError("the service is starting (restoring state)", retry_after=retry)
        if self._store_health is not None and not self._store_health.ok:
            self._telemetry.rejected.labels("state_unavailable").inc()
            raise UnavailableError(
                f"state cannot be written ({self._store_health.reason}); an upload accepted now could be lost",
                retry_after=retry,
            )
        if client:
            try:
                self._limiter.admit(tenant)
            except RefusedError:
                self._telemetry.rejected.labels("rate_limited").inc()
                raise
        if self._in_flight >= self._ingest.queue_size:
            self._telemetry.refused.inc()
            self._telemetry.rejected.labels("queue_full").inc()
            raise RefusedError(
                f"decode queue is full ({self._ingest.queue_size} uploads in progress)", retry_after=retry
            )
        share = self._ingest.max_in_flight_per_tenant()
        if client and self._tenant_in_flight.get(tenant, 0) >= share:
            self._telemetry.refused.inc()
            self._telemetry.rejected.labels("tenant_queue_share").inc()
            raise RefusedError(
                f"tenant {tenant!r} already has {share} uploads in the decode queue "
                "(ingest.max_queue_share_per_tenant); the rest is kept for other tenants",
                retry_after=retry,
            )
        budget = self._ingest.max_bytes_in_flight
        if self._bytes_in_flight and self._bytes_in_flight + size > budget:
            self._telemetry.refused.inc()
            self._telemetry.rejected.labels("bytes_in_flight").inc()
            raise RefusedError(
                f"{self._bytes_in_flight} bytes of uploads are already in progress; {size} more would exceed "
                f"ingest.max_bytes_in_flight ({budget})",
                retry_after=retry,
            )
        self._enter(tenant, size)
        return Admission(tenant, size)

    def release(self, admission: Admission) -> None:
        """Give back an admission's slot and bytes (idempotent); for a body that was never decoded."""
        if not admission.released:
            admission.released = True
            self._leave(admission.tenant, admission.size)

    async def decode_admitted(
        self, admission: Admission, request: UploadRequest, *, routed: bool = True
    ) -> IngestOutcome:
        """Decode and hand on an admitted upload, or have the process that owns its series do that (see
        `Router`); releases the admission. Raises as `ingest` does. `routed=False`: decode it here."""
        tenant = admission.tenant
        router = self._router if routed else None
        owner = None if router is None else router.route(tenant, request)
        if router is not None and owner is not None:
            self._telemetry.forwarded.inc()
            if len(request.body) <= self._ingest.inline_max_bytes:
                try:
                    return await self._owned(router.forward(owner, tenant, request))
                finally:
                    self.release(admission)
            # A body a worker decodes: decoded here, only the pickled result crosses (`cluster/forwarding.py`).
            try:
                pickled = await self._in_worker(_decode_pickled_in_worker, request)
            finally:
                self.release(admission)
            return await self._owned(router.forward_decoded(owner, tenant, request.dialect, pickled))
        try:
            result = await self._decode(request)
        finally:
            self.release(admission)
        return await self._keep(tenant, request, result)

    async def keep_decoded(self, tenant: str, dialect: Dialect, pickled: bytes) -> IngestOutcome:
        """Keep an upload of `tenant` that another `serve` process received, admitted and decoded, and sent
        here as its pickled `UploadResult` because this process owns its series (`Router.forward_decoded`).
        Raises as `ingest` does (the sink's errors)."""
        result = pickle.loads(pickled)
        if not isinstance(result, UploadResult):
            raise DecoderCrashedError(f"internal error: a decoded upload holds a {type(result).__name__}")
        return await self._keep(tenant, UploadRequest(dialect, b""), result)

    async def _keep(self, tenant: str, request: UploadRequest, result: UploadResult) -> IngestOutcome:
        """Hand a decoded upload to the sink and count it."""
        kept = self._sink(tenant, request, result)
        if kept is not None:
            await self._owned(kept)
        tenant_label = self._telemetry.tenant_label(tenant)
        if result.profiles:
            self._telemetry.received.labels(tenant_label, request.dialect).inc(len(result.profiles))
        if result.ignored:
            self._telemetry.ignored.labels(request.dialect).inc(len(result.ignored))
        return IngestOutcome(tenant, len(result.profiles), result.ignored)

    async def _owned(self, kept: Awaitable[_T]) -> _T:
        """Await what another process does with an upload or its points; counts an unreachable owner."""
        try:
            return await kept
        except OwnerUnavailableError:
            self._telemetry.rejected.labels("owner_unavailable").inc()
            raise

    async def decode_forwarded(self, tenant: str, request: UploadRequest) -> IngestOutcome:
        """Decode and keep an upload of `tenant` that another `serve` process received, authenticated and
        admitted, and forwarded here because this process owns its series. Admitted to this process's
        decode queue and bytes in flight (not its rate limit or tenant share: those were applied once,
        where it arrived). Raises as `ingest` does."""
        admission = self._admit(tenant, len(request.body), client=False)
        return await self.decode_admitted(admission, request, routed=False)

    async def _decode(self, request: UploadRequest) -> UploadResult:
        if len(request.body) <= self._ingest.inline_max_bytes:
            small = self._decode_inline(request)
            if small is not None:
                return small
        result: UploadResult = await self._in_worker(_decode_in_worker, request)
        return result

    async def _in_worker(
        self, call: Callable[[_WorkerContext, UploadRequest], tuple[_T, dict[str, int], float]], request: UploadRequest
    ) -> _T:
        """Decode `request` in a worker with `call`; its result. Counts what decoding decided."""
        pool = self._pool
        assert pool is not None
        try:
            decoded: tuple[_T, dict[str, int], float] = await pool.submit(call, request)
            result, truncated, seconds = decoded
        except InvalidProfileError as exc:
            self._telemetry.rejected.labels(exc.reason.value).inc()
            raise
        except WorkerCrashedError:
            self._telemetry.rejected.labels("decoder_crashed").inc()
            raise DecoderCrashedError("a decoder worker died while decoding this upload") from None
        except WorkerFailedError as exc:
            self._telemetry.rejected.labels("internal_error").inc()
            log.error("decoding a %s upload failed unexpectedly in a worker: %s", request.dialect, exc)
            raise DecoderCrashedError("internal error while decoding this upload (logged by the service)") from None
        except Exception:
            self._telemetry.rejected.labels("internal_error").inc()
            log.exception("decoding a %s upload failed unexpectedly", request.dialect)
            raise DecoderCrashedError("internal error while decoding this upload (logged by the service)") from None
        self._decoded(seconds, truncated)
        return result

    def _decoded(self, seconds: float, truncated: dict[str, int]) -> None:
        self._telemetry.decode_seconds.observe(seconds)
        for field, count in truncated.items():
            self._telemetry.truncated.labels(field).inc(count)

    def _decode_inline(self, request: UploadRequest) -> UploadResult | None:
        """Decode a small upload here, on the event loop; None when it inflates beyond the inline bound
        (a worker decodes it then, under the configured limits)."""
        try:
            result, truncated, seconds = _decode(
                request, self._inline_limits, self._caps, self._server.max_profiles_per_request
            )
        except PayloadTooLargeError:
            return None
        except InvalidProfileError as exc:
            self._telemetry.rejected.labels(exc.reason.value).inc()
            raise
        except Exception:
            self._telemetry.rejected.labels("internal_error").inc()
            log.exception("decoding a %s upload failed unexpectedly", request.dialect)
            raise DecoderCrashedError("internal error while decoding this upload (logged by the service)") from None
        self._decoded(seconds, truncated)
        return result

    def reject(self, reason: RejectReason | str) -> None:
        """Count a rejection decided by a server before the core saw the request (e.g. body too large)."""
        self._telemetry.rejected.labels(str(reason)).inc()

    def _enter(self, tenant: str, size: int) -> None:
        self._tenant_in_flight[tenant] = self._tenant_in_flight.get(tenant, 0) + 1
        self._bytes_in_flight += size
        self._in_flight += 1
        self._idle.clear()
        self._telemetry.queue_depth.set(self._in_flight)

    def _leave(self, tenant: str, size: int) -> None:
        self._bytes_in_flight -= size
        left = self._tenant_in_flight[tenant] - 1
        if left:
            self._tenant_in_flight[tenant] = left
        else:
            del self._tenant_in_flight[tenant]
        self._in_flight -= 1
        self._telemetry.queue_depth.set(self._in_flight)
        if self._in_flight == 0:
            self._idle.set()

    async def drain(self, timeout: float) -> bool:
        """Stop admitting uploads and wait for those in progress. True when all finished in time."""
        self._closing = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
