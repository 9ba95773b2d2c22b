"""Several `serve` processes on one machine (`server.processes`): which one owns a series, and the Unix
sockets between them.

Process i of N owns the series of the local partitions p with p % N == i (`partitions.local_owner`). The
listening ports are shared (SO_REUSEPORT), so any process receives any upload. An `/ingest` upload names
its one series, so the receiving process forwards it as received to the owner, which decodes, keeps and
answers it (`forwarding.py`; UPLOAD requests); one whose body a decoder worker decodes (larger than
`ingest.inline_max_bytes`) is decoded where it arrived and its result sent to the owner as the worker
pickled it, which keeps and answers it (DECODED requests). Any other upload is decoded where it arrived and each point
handed to its owner as a point record (`state/records.py`, the same self-contained record the journal and
the Redis stream hold; POINTS requests). The owner journals and applies it, then answers; the upload is
answered only after every owner of its points did, so an answered upload is in exactly one owner's journal.
Each owner evaluates and exports only its own series: one writer per series, as with one process. The
series API and /metrics of any process ask the others over the same sockets, so every process shows every
series.

On a socket (one from each process to each other; the connecting side asks, answers come in order, a
forwarded upload being decoded while the requests behind it are read): a request is u32 length, u8 kind,
payload; an answer u32 length, u8 status, payload. With `state.backend: redis` the processes are replicas
of the cluster (each its own leases); the sockets then serve the series API's and /metrics' questions only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from otel_leakproc.cluster.forwarding import (
    decode_decoded,
    decode_outcome,
    decode_upload,
    encode_decoded,
    encode_outcome,
    encode_refusal,
    encode_upload,
    raise_refusal,
    upload_series,
)
from otel_leakproc.cluster.partitions import local_owner
from otel_leakproc.errors import InvalidProfileError, RefusedError, UnavailableError
from otel_leakproc.model import ProfileSummary, SeriesKey
from otel_leakproc.query.series import Selection, SeriesReader, order
from otel_leakproc.receiver.ingest import DecoderCrashedError, IngestOutcome, OwnerUnavailableError
from otel_leakproc.receiver.uploads import Dialect, UploadRequest, UploadResult
from otel_leakproc.receiver.value_caps import ValueCaps
from otel_leakproc.state.codec import MAX_PAYLOAD, CodecError, iter_frames
from otel_leakproc.state.records import RecordType, point_frame, point_from_payload

log = logging.getLogger(__name__)

POINTS, SERIES, METRICS, UPLOAD, DECODED = 1, 2, 3, 4, 5  # request kinds
OK, UNAVAILABLE, FAILED, REJECTED = 0, 1, 2, 3  # answer statuses
_HEAD = struct.Struct("<IB")
MAX_MESSAGE = MAX_PAYLOAD  # a longer message is a broken peer: the connection is closed
MAX_PENDING = 256  # requests waiting for an answer on one connection; more are refused (503)
# A larger body (`server.max_body_bytes` may allow it) is decoded where it arrived; 1 MiB is left for the
# forwarded upload's header (its query is bounded by aiohttp's line limit, 8 KiB).
MAX_FORWARDED_BODY = MAX_MESSAGE - (1 << 20)
ANSWER_TIMEOUT_SECONDS = 10.0
CONNECT_RETRY_SECONDS = 0.2
RETRY_AFTER = 2.0
PROCESS_LABEL = "process"

Point = tuple[SeriesKey, dict[str, str], ProfileSummary]
# The owner's side of a forwarded upload (`IngestCore.decode_forwarded`): tenant, request -> its outcome.
ForwardedUploads = Callable[[str, UploadRequest], Awaitable[IngestOutcome]]
# The owner's side of an upload decoded where it arrived (`IngestCore.keep_decoded`): tenant, dialect,
# the pickled result -> its outcome.
DecodedUploads = Callable[[str, Dialect, bytes], Awaitable[IngestOutcome]]


@dataclass(frozen=True, slots=True)
class LocalProcess:
    """This process's place among the `count` processes of one `serve` (`runtime_dir`: their sockets)."""

    index: int
    count: int
    runtime_dir: Path

    def socket_path(self, index: int) -> Path:
        return self.runtime_dir / f"process-{index}.sock"

    def owner(self, tenant: str, service: str, instance: str) -> int:
        return local_owner(tenant, service, instance, self.count)


def split_by_owner(
    process: LocalProcess, tenant: str, result: UploadResult
) -> tuple[list[Point], dict[int, list[Point]]]:
    """The points of one decoded upload: this process's own, and the others' by owner."""
    mine: list[Point] = []
    theirs: dict[int, list[Point]] = {}
    for p in result.profiles:
        point = (SeriesKey(tenant, p.service, p.instance, p.summary.kind), p.resource, p.summary)
        owner = process.owner(tenant, p.service, p.instance)
        if owner == process.index:
            mine.append(point)
        else:
            theirs.setdefault(owner, []).append(point)
    return mine, theirs


def encode_points(points: Sequence[Point]) -> bytes:
    return b"".join(point_frame(0, key, resource, summary, compress=False) for key, resource, summary in points)


def decode_points(payload: bytes) -> list[Point]:
    """The points of a POINTS request. Raises CodecError."""
    return decode_point_records(payload)[0]


def decode_point_records(payload: bytes) -> tuple[list[Point], list[bytes | memoryview]]:
    """The points of a POINTS request and each one's record payload (the owner journals those as they
    are). Raises CodecError."""
    points: list[Point] = []
    records: list[bytes | memoryview] = []
    for record in iter_frames(payload):
        if record.type != RecordType.POINT:
            raise CodecError(f"expected point records, got type {record.type}")
        point = point_from_payload(record.payload)
        points.append((point.key, point.resource, point.summary))
        records.append(record.payload)
    return points, records


def merge_metrics(texts: Sequence[tuple[int, str]]) -> bytes:
    """Each process's /metrics in one exposition, every sample labelled with its process (`process="i"`):
    the counts of one process are never summed into another's under the same name."""
    families: dict[str, Metric] = {}
    for index, text in texts:
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type)
            for sample in family.samples:
                merged.samples.append(sample._replace(labels={**sample.labels, PROCESS_LABEL: str(index)}))
    return generate_latest(_Families(list(families.values())))


@dataclass
class _Families:
    """Metric families merged from every process, in the collector shape `generate_latest` reads."""

    families: list[Metric]

    def collect(self) -> list[Metric]:
        return self.families


class PeerLink:
    """The connection from this process to one other: requests written in order, answers matched in order."""

    def __init__(self, index: int, path: Path) -> None:
        self.index = index
        self.path = path
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: deque[asyncio.Future[tuple[int, bytes]]] = deque()
        self._out: list[bytes] = []  # requests of this loop iteration, written together
        self._reading: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def up(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self) -> None:
        """Connect unless connected. Raises OSError."""
        async with self._lock:
            if self.up:
                return
            self._reader, self._writer = await asyncio.open_unix_connection(str(self.path))
            self._reading = asyncio.create_task(self._read(self._reader), name=f"peer-{self.index}-answers")

    async def request(self, kind: int, payload: bytes, timeout: float = ANSWER_TIMEOUT_SECONDS) -> tuple[int, bytes]:
        """Send one request and wait for its answer (status, payload). Raises OwnerUnavailableError."""
        if len(self._pending) >= MAX_PENDING:
            raise OwnerUnavailableError(
                f"process {self.index} has {len(self._pending)} requests from this one unanswered; retry",
                RETRY_AFTER,
            )
        try:
            await self.connect()
        except OSError as exc:
            raise OwnerUnavailableError(f"process {self.index} is not reachable ({exc}); retry", RETRY_AFTER) from exc
        writer = self._writer
        assert writer is not None
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        self._pending.append(answer)
        # The requests of one loop iteration (concurrent uploads) go out in one write: waking the other
        # process costs more than the bytes. Memory stays bounded by MAX_PENDING.
        if not self._out:
            loop.call_soon(self._flush, writer)
        self._out.append(_HEAD.pack(len(payload), kind) + payload)
        try:
            async with asyncio.timeout(timeout):  # on timeout the answer is cancelled; its reply is skipped
                return await answer
        except TimeoutError:
            raise OwnerUnavailableError(
                f"process {self.index} did not answer within {timeout:g} s; retry", RETRY_AFTER
            ) from None
        except OSError as exc:
            raise OwnerUnavailableError(f"process {self.index}: {exc}; retry", RETRY_AFTER) from exc

    def _flush(self, writer: asyncio.StreamWriter) -> None:
        if writer is not self._writer:
            return  # its connection was lost (its requests failed with it); a new one has its own flush
        out, self._out = self._out, []
        if out and not writer.is_closing():
            writer.write(b"".join(out))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                length, status = _HEAD.unpack(await reader.readexactly(_HEAD.size))
                if length > MAX_MESSAGE:
                    raise ConnectionError(f"an answer of {length} bytes")
                payload = await reader.readexactly(length)
                if self._pending:
                    answer = self._pending.popleft()
                    if not answer.done():
                        answer.set_result((status, payload))
        except (asyncio.IncompleteReadError, OSError) as exc:
            self._broken(exc)
        except asyncio.CancelledError:
            self._broken(ConnectionError("closed"))
            raise

    def _broken(self, exc: BaseException) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        self._out = []  # requests of the lost connection (their answers fail below) must not go on a new one
        while self._pending:
            answer = self._pending.popleft()
            if not answer.done():
                answer.set_exception(ConnectionError(f"connection lost: {exc}"))

    async def close(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._writer = None


class PeerGroup:
    """This process's side of the group: the socket the others ask, and a link to each of them."""

    def __init__(
        self,
        process: LocalProcess,
        apply: Callable[[Sequence[Point], Sequence[bytes | memoryview] | None], None],
        local: SeriesReader,
        render_metrics: Callable[[], bytes],
        caps: ValueCaps | None = None,
    ) -> None:
        self.process = process
        self._caps = caps or ValueCaps()
        # Set by the service once its ingest core exists: decodes the uploads the others forward here.
        self.uploads: ForwardedUploads | None = None
        # Likewise: keeps the uploads the others decoded and send here as their pickled results.
        self.decoded: DecodedUploads | None = None
        self._apply = apply
        self._local = local
        self._render = render_metrics
        self.links = {i: PeerLink(i, process.socket_path(i)) for i in range(process.count) if i != process.index}
        self._server: asyncio.AbstractServer | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    def all_up(self) -> bool:
        """Whether every other process is connected (readiness: an upload could be handed to any owner)."""
        return all(link.up for link in self.links.values())

    def owns(self, tenant: str, service: str, instance: str) -> bool:
        return self.process.owner(tenant, service, instance) == self.process.index

    async def start(self) -> None:
        path = self.process.socket_path(self.process.index)
        path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._serve, path=str(path))
        self._connecting = asyncio.create_task(self._keep_connected(), name="peer-connect")

    async def stop(self) -> None:
        """Stop answering the others (after this process stopped taking uploads) and close the links."""
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        if self._server is not None:
            self._server.close()
            # Closing the connections ends their handlers between two requests (a request being applied is
            # applied and answered first: applying does not yield). Cancelling them instead would make
            # asyncio log the cancellation as an error.
            for writer in self._handlers.values():
                writer.close()
            if self._handlers:
                await asyncio.wait(list(self._handlers), timeout=ANSWER_TIMEOUT_SECONDS)
            self._server = None
        for link in self.links.values():
            await link.close()
        self.process.socket_path(self.process.index).unlink(missing_ok=True)

    async def _keep_connected(self) -> None:
        while True:
            for link in self.links.values():
                if not link.up:
                    with contextlib.suppress(OSError):
                        await link.connect()
            await asyncio.sleep(CONNECT_RETRY_SECONDS)

    # -- the ingest sink -------------------------------------------------------------------------

    async def accept(self, tenant: str, request: UploadRequest, result: UploadResult) -> None:
        """Journal and apply this process's points, hand the others' to their owners, and return when
        every owner has journaled its points. Raises UnavailableError (503: retry) when an owner cannot
        take them; points of other owners in the same upload may have been kept (one upload of several
        processes' profiles is all or none per owner)."""
        mine, theirs = split_by_owner(self.process, tenant, result)
        if mine:
            self._apply(mine, None)
        if not theirs:
            return
        outcomes = await asyncio.gather(
            *(self._hand_over(owner, points) for owner, points in theirs.items()), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _hand_over(self, owner: int, points: list[Point]) -> None:
        status, answer = await self.links[owner].request(POINTS, encode_points(points))
        if status == OK:
            return
        message = answer.decode("utf-8", "replace")
        if status == UNAVAILABLE:
            raise UnavailableError(f"process {owner}: {message}", RETRY_AFTER)
        log.error("process %d refused %d points: %s", owner, len(points), message)
        raise DecoderCrashedError(f"internal error: process {owner} refused the points ({message})")

    def route(self, tenant: str, request: UploadRequest) -> int | None:
        """The process to forward `request` to before decoding (`cluster/forwarding.py`): the owner of its
        one series when the request names it and that is another process; None to decode it here."""
        if len(request.body) > MAX_FORWARDED_BODY:
            return None
        series = upload_series(request, self._caps)
        if series is None:
            return None
        owner = self.process.owner(tenant, *series)
        return None if owner == self.process.index else owner

    async def forward(self, owner: int, tenant: str, request: UploadRequest) -> IngestOutcome:
        """Have `owner` decode and keep `request`; its outcome, or its error raised here as it raised it.
        Raises OwnerUnavailableError (503) when the owner is unreachable, has too many requests from this
        process unanswered, or does not answer in time."""
        status, answer = await self.links[owner].request(UPLOAD, encode_upload(tenant, request))
        if status == OK:
            return decode_outcome(answer)
        if status == REJECTED:
            raise_refusal(answer)
        return self._outcome(owner, status, answer)

    async def forward_decoded(self, owner: int, tenant: str, dialect: Dialect, pickled: bytes) -> IngestOutcome:
        """Have `owner` keep an upload decoded here (`pickled`: its `UploadResult` as the decoder worker
        pickled it); its outcome, or its error raised here. Raises as `forward` does."""
        status, answer = await self.links[owner].request(DECODED, encode_decoded(tenant, dialect, pickled))
        return self._outcome(owner, status, answer)

    @staticmethod
    def _outcome(owner: int, status: int, answer: bytes) -> IngestOutcome:
        if status == OK:
            return decode_outcome(answer)
        if status == REJECTED:
            raise_refusal(answer)
        message = answer.decode("utf-8", "replace")
        if status == UNAVAILABLE:  # not ready to decode (starting, stopping)
            raise OwnerUnavailableError(f"process {owner}: {message}", RETRY_AFTER)
        log.error("process %d failed on a forwarded upload: %s", owner, message)
        raise DecoderCrashedError(f"internal error: process {owner} failed on this upload ({message})")

    # -- questions from every process ------------------------------------------------------------

    async def series(self, selection: Selection) -> list[dict[str, Any]]:
        """Every process's series objects that `selection` admits, in the API's order (a `SeriesReader`).
        Raises UnavailableError when a process does not answer (a partial list would look like lost
        series)."""
        question = json.dumps(
            {
                "tenants": None if selection.tenants is None else sorted(selection.tenants),
                "filters": dict(selection.filters),
                "timeline": selection.timeline,
            }
        ).encode()
        mine, others = await asyncio.gather(
            self._local.series(selection),
            asyncio.gather(*(self._ask(link, SERIES, question) for link in self.links.values())),
        )
        objects = list(mine)
        for answer in others:
            objects.extend(json.loads(answer))
        return sorted(objects, key=order)

    async def metrics(self) -> bytes:
        """Every process's metrics, each sample labelled with its process."""
        texts = [(self.process.index, self._render().decode())]
        answers = await asyncio.gather(*(self._ask(link, METRICS, b"") for link in self.links.values()))
        texts.extend((link.index, answer.decode()) for link, answer in zip(self.links.values(), answers, strict=True))
        return merge_metrics(sorted(texts))

    async def _ask(self, link: PeerLink, kind: int, question: bytes) -> bytes:
        status, answer = await link.request(kind, question)
        if status != OK:
            raise UnavailableError(f"process {link.index}: {answer.decode('utf-8', 'replace')}", RETRY_AFTER)
        return answer

    # -- the socket the others ask ---------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers[task] = writer
        loop = asyncio.get_running_loop()
        out: list[bytes] = []  # answers to the requests that arrived together, written together
        # Answers in request order: a forwarded upload is decoded while the next requests are read (a
        # decoder worker may take a while), and its answer holds back the ones behind it.
        answers: deque[asyncio.Future[tuple[int, bytes]]] = deque()

        def flush() -> None:
            if out and not writer.is_closing():
                writer.write(b"".join(out))
            out.clear()

        def ready(_: object = None) -> None:
            while answers and answers[0].done():
                answered = answers.popleft()
                status, answer = (UNAVAILABLE, b"stopping") if answered.cancelled() else answered.result()
                if not out:
                    loop.call_soon(flush)
                out.append(_HEAD.pack(len(answer), status) + answer)

        try:
            while True:
                length, kind = _HEAD.unpack(await reader.readexactly(_HEAD.size))
                if length > MAX_MESSAGE:
                    log.error("a request of %d bytes on the process socket: closing the connection", length)
                    return
                payload = await reader.readexactly(length)
                if kind in (UPLOAD, DECODED):
                    task = loop.create_task(self._upload(payload) if kind == UPLOAD else self._keep(payload))
                    answers.append(task)
                    task.add_done_callback(ready)
                else:
                    done = loop.create_future()
                    done.set_result(await self._answer(kind, payload))
                    answers.append(done)
                    ready()
                if len(out) >= MAX_PENDING:  # (the asker sends at most that many before reading)
                    flush()
                    await writer.drain()
        except (asyncio.IncompleteReadError, OSError):
            return
        finally:
            self._handlers.pop(task, None)
            writer.close()

    async def _upload(self, payload: bytes) -> tuple[int, bytes]:
        """Decode and keep an upload another process forwarded; the answer carries its outcome or error."""
        try:
            if self.uploads is None:
                return UNAVAILABLE, b"this process is starting"
            tenant, request = decode_upload(payload)
            return OK, encode_outcome(await self.uploads(tenant, request))
        except (InvalidProfileError, RefusedError, DecoderCrashedError) as exc:
            return REJECTED, encode_refusal(exc)
        except Exception as exc:  # a bug: the sender answers 500, this process logs it
            log.exception("a forwarded upload failed")
            return FAILED, f"{type(exc).__name__}: {exc}".encode()

    async def _keep(self, payload: bytes) -> tuple[int, bytes]:
        """Keep an upload another process decoded; the answer carries its outcome or error."""
        try:
            if self.decoded is None:
                return UNAVAILABLE, b"this process is starting"
            tenant, dialect, pickled = decode_decoded(payload)
            return OK, encode_outcome(await self.decoded(tenant, dialect, pickled))
        except (InvalidProfileError, RefusedError, DecoderCrashedError) as exc:
            return REJECTED, encode_refusal(exc)
        except Exception as exc:  # a bug: the sender answers 500, this process logs it
            log.exception("a decoded upload from another process failed")
            return FAILED, f"{type(exc).__name__}: {exc}".encode()

    async def _answer(self, kind: int, payload: bytes) -> tuple[int, bytes]:
        try:
            if kind == POINTS:
                points, records = decode_point_records(payload)
                strays = [key for key, _, _ in points if not self.owns(key.tenant, key.service, key.instance)]
                if strays:
                    return FAILED, f"not the owner of {strays[0]}".encode()
                self._apply(points, records)  # journaled as received: not encoded a second time
                return OK, b""
            if kind == SERIES:
                question = json.loads(payload)
                tenants = question["tenants"]
                selection = Selection(
                    None if tenants is None else frozenset(tenants),
                    {str(k): str(v) for k, v in question["filters"].items()},
                    bool(question["timeline"]),
                )
                objects = await self._local.series(selection)
                return OK, json.dumps(objects, allow_nan=False).encode()
            if kind == METRICS:
                return OK, self._render()
            return FAILED, f"unknown request kind {kind}".encode()
        except UnavailableError as exc:
            return UNAVAILABLE, str(exc).encode()
        except (CodecError, ValueError, KeyError, TypeError) as exc:
            log.error("a bad request from another process: %s", exc)
            return FAILED, f"{type(exc).__name__}: {exc}".encode()
