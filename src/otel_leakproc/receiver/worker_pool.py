"""The decoder workers: one socket per worker process, read by the event loop itself.

`concurrent.futures.ProcessPoolExecutor` hands every call through two extra threads of the server process
(a feeder that pickles and writes the call queue, a result thread that reads results and wakes the loop),
which take the GIL from the event loop several times per call: about 0.75 ms of the server's CPU per large
upload (benchmarks/README.md, round 5). Here each worker owns one end of a Unix socketpair; the event loop
writes a job to the worker's socket (one `sendmsg` for a 240 KiB body: the buffers are enlarged) and reads
the result from it (`add_reader`), so the server process runs no thread for the pool.

A job is `pickle((call, payload))`, a result `pickle((status, value))`, each behind an 8-byte length. A job
is pickled when it is sent, and what the socket does not take at once is kept as a view of that pickle,
not copied: the server holds an upload's body at most twice (the request and its pickle). A worker is
sent at most PIPELINE_DEPTH jobs at a time (the next one waits in its socket while it decodes); the others
wait in the server in arrival order (the ingest core bounds them: `ingest.queue_size`, bytes in flight,
the tenants' shares). The call's constant arguments (decode limits,
caps) are given to a worker once, when it starts.

A worker that dies (a crash, the OOM killer, `kill -9`) closes its socket: its one job fails with
`WorkerCrashedError`, the jobs queued behind it in its socket go to the other workers, the other workers'
jobs are untouched, and a replacement is started at once. Workers
ignore SIGINT and SIGTERM (the server drains and then closes their sockets, which ends them), and end when
the server process ends, however it ends (`parent_watch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import struct
import traceback
from collections import deque
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any

from otel_leakproc.receiver.parent_watch import watch_parent

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<Q")
# Socket buffers large enough for a large upload's body (or a result) to cross in one send.
SOCKET_BUFFER_BYTES = 1 << 20
# What one read of a worker's socket takes at most (an answer is a summary: kilobytes).
READ_BYTES = 256 * 1024
# A message larger than this is refused by the reader (a corrupt length would otherwise ask for exabytes).
MAX_MESSAGE_BYTES = 1 << 32
# A worker that dies this soon after its start is restarted after RESTART_DELAY_SECONDS, not at once.
RESTART_DELAY_SECONDS = 1.0
JOIN_SECONDS = 5.0
# Jobs sent to one worker before it answers the first: 2 keeps the next one in its socket.
PIPELINE_DEPTH = 2

_OK = 0
_RAISED = 1  # the call raised an exception that pickles; it is raised again in the server
_FAILED = 2  # the call raised something that does not pickle; its traceback as text

Call = Callable[..., Any]


class WorkerCrashedError(Exception):
    """The worker decoding this job ended before answering (killed, crashed, out of memory)."""


class WorkerFailedError(Exception):
    """The call raised an exception that could not be pickled; the message holds its traceback."""


def _worker_main(sock: socket.socket, server_pid: int, setup: Call, setup_args: tuple[Any, ...]) -> None:
    """A worker process: answer jobs from `sock` until the server closes it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    watch_parent(server_pid)
    context = setup(*setup_args)
    header = bytearray(_HEADER.size)
    sock.sendall(_HEADER.pack(0))  # ready: imports done
    while True:
        if not _recv_exactly(sock, memoryview(header)):
            return  # the server closed the socket: shut down
        (size,) = _HEADER.unpack(header)
        message = bytearray(size)
        if not _recv_exactly(sock, memoryview(message)):
            return
        call, payload = pickle.loads(message)
        del message
        try:
            answer = pickle.dumps((_OK, call(context, payload)), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            exc.add_note(f"in {multiprocessing.current_process().name} (pid {os.getpid()}):\n{traceback.format_exc()}")
            try:
                answer = pickle.dumps((_RAISED, exc), protocol=pickle.HIGHEST_PROTOCOL)
                pickle.loads(answer)  # an exception that pickles but cannot be rebuilt would fail the server
            except Exception:
                answer = pickle.dumps((_FAILED, traceback.format_exc()), protocol=pickle.HIGHEST_PROTOCOL)
        sock.sendall(_HEADER.pack(len(answer)) + answer)


def _recv_exactly(sock: socket.socket, view: memoryview) -> bool:
    """Fill `view` from `sock`; False at end of stream."""
    while view:
        got = sock.recv_into(view)
        if not got:
            return False
        view = view[got:]
    return True


class _Job:
    """A call waiting for a worker or sent to one; pickled when it is sent (a job waiting in the server
    holds no copy of its payload)."""

    __slots__ = ("call", "future", "message", "payload")

    def __init__(self, call: Call, payload: Any, future: asyncio.Future[Any]) -> None:
        self.call = call
        self.payload = payload
        self.future = future
        self.message: bytes | None = None

    def pickled(self) -> bytes:
        if self.message is None:
            self.message = pickle.dumps((self.call, self.payload), protocol=pickle.HIGHEST_PROTOCOL)
        return self.message


class _Worker:
    """The server's side of one worker: its process, its socket, the jobs sent to it.

    The socket is read and written by the event loop (`add_reader` / `add_writer`), not through an
    asyncio transport: a job goes out as its length and its pickle with `sendmsg` (no concatenation), and
    what the socket cannot take at once stays a view of the job's own bytes (a transport would copy it
    into its buffer), so the server holds each upload's body twice at most (the request, its pickle)."""

    def __init__(self, pool: WorkerPool, process: BaseProcess, sock: socket.socket) -> None:
        self.pool = pool
        self.process = process
        self.sock = sock
        self.fd = sock.fileno()
        self.ready: asyncio.Future[None] = pool.loop.create_future()
        self.jobs: deque[_Job] = deque()  # sent, not answered; the first is the one being decoded
        self.accepting = False
        self.closed = False
        self.started = pool.loop.time()
        self._buffer = bytearray()
        self._expected = -1
        self._out: deque[memoryview] = deque()  # not yet taken by the socket
        self._waiting_to_write = False
        pool.loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        try:
            data = self.sock.recv(READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the worker ended (or is ending)
            self.close()
            self.pool._lost(self)
            return
        self._received(data)

    def _received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while True:
            if self._expected < 0:
                if len(buffer) < _HEADER.size:
                    return
                (self._expected,) = _HEADER.unpack_from(buffer)
                del buffer[: _HEADER.size]
                if self._expected > MAX_MESSAGE_BYTES:
                    log.error(
                        "decoder worker %s sent a message of %d bytes; ending it", self.process.pid, self._expected
                    )
                    self.process.kill()
                    return
                if self._expected == 0 and not self.ready.done():
                    self._expected = -1
                    self.ready.set_result(None)
                    self.accepting = True
                    self.pool._dispatch()
                    continue
            if len(buffer) < self._expected:
                return
            message = bytes(buffer[: self._expected])
            del buffer[: self._expected]
            self._expected = -1
            self._answered(message)
            if self.closed:
                return

    def _answered(self, message: bytes) -> None:
        job = self.jobs.popleft()
        if not job.future.done():
            try:
                status, value = pickle.loads(message)
            except Exception as exc:  # cannot happen with the worker's own pickles; fail the job, not the loop
                job.future.set_exception(WorkerFailedError(f"unreadable answer from a decoder worker: {exc!r}"))
            else:
                if status == _OK:
                    job.future.set_result(value)
                elif status == _RAISED:
                    job.future.set_exception(value)
                else:
                    job.future.set_exception(WorkerFailedError(value))
        self.pool._dispatch()

    def send(self, job: _Job) -> None:
        message = job.pickled()
        self.jobs.append(job)
        idle = not self._out
        self._out.append(memoryview(_HEADER.pack(len(message))))
        self._out.append(memoryview(message))
        if idle:
            self._writable()

    def _writable(self) -> None:
        out = self._out
        while out:
            try:
                sent = self.sock.sendmsg(list(out))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # the worker is gone: its end of the socket reads as closed, which fails its jobs
                out.clear()
                break
            while sent:
                first = out[0]
                if sent < len(first):
                    out[0] = first[sent:]
                    break
                sent -= len(first)
                out.popleft()
        if out and not self._waiting_to_write:
            self.pool.loop.add_writer(self.fd, self._writable)
            self._waiting_to_write = True
        elif not out and self._waiting_to_write:
            self.pool.loop.remove_writer(self.fd)
            self._waiting_to_write = False

    def close(self) -> None:
        """Stop reading and writing and close the server's end (the worker then sees its socket end)."""
        if self.closed:
            return
        self.closed = True
        self.accepting = False
        self.pool.loop.remove_reader(self.fd)
        if self._waiting_to_write:
            self.pool.loop.remove_writer(self.fd)
            self._waiting_to_write = False
        self._out.clear()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class WorkerPool:
    """`size` worker processes running `call(context, payload)` where `context = setup(*setup_args)` was
    built once per worker at its start. `submit` is called on the event loop that started the pool."""

    def __init__(
        self,
        size: int,
        setup: Call,
        setup_args: tuple[Any, ...] = (),
        *,
        preload: tuple[str, ...] = (),
        name: str = "decoder",
    ) -> None:
        if size < 1:
            raise ValueError(f"a worker pool needs at least one worker, not {size}")
        self._size = size
        self._setup = setup
        self._setup_args = setup_args
        self._name = name
        # forkserver: never fork the server process itself (it runs gRPC and event-loop threads).
        self._context = multiprocessing.get_context("forkserver")
        if preload:
            self._context.set_forkserver_preload(list(preload))
        self._workers: set[_Worker] = set()
        self._waiting: deque[_Job] = deque()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.crashes = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "the pool is not started"
        return self._loop

    @property
    def pids(self) -> list[int]:
        return sorted(w.process.pid for w in self._workers if w.process.pid is not None)

    @property
    def jobs_sent(self) -> int:
        """Jobs sent to the workers and not answered yet."""
        return sum(len(w.jobs) for w in self._workers)

    async def start(self) -> None:
        """Start the workers and wait until each has run its setup (imports included)."""
        self._loop = asyncio.get_running_loop()
        try:
            workers = [await self._spawn() for _ in range(self._size)]
            await asyncio.gather(*(w.ready for w in workers))
        except BaseException:
            self.close()  # no replacement keeps being started for a pool nobody will use
            raise

    async def _spawn(self) -> _Worker:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for end in (ours, theirs):
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
        try:
            process = self._context.Process(
                target=_worker_main,
                args=(theirs, os.getpid(), self._setup, self._setup_args),
                name=f"{self._name}-worker",
                daemon=True,
            )
            process.start()
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()  # the worker holds its own copy: our end sees EOF when the worker ends
        ours.setblocking(False)
        worker = _Worker(self, process, ours)
        self._workers.add(worker)
        return worker

    def submit(self, call: Call, payload: Any) -> asyncio.Future[Any]:
        """Run `call(context, payload)` in a worker; the future holds its result or exception
        (`WorkerCrashedError` when the worker died on it). `call` must be a module-level function."""
        if self._closed:
            raise RuntimeError("the worker pool is closed")
        job = _Job(call, payload, self.loop.create_future())
        self._waiting.append(job)
        self._dispatch()
        return job.future

    def _dispatch(self) -> None:
        """Send waiting jobs to the workers with the fewest, up to PIPELINE_DEPTH each: a worker finds its
        next job in its socket when it finishes one, without waiting for the event loop's next turn."""
        waiting = self._waiting
        while waiting:
            worker = min(
                (w for w in self._workers if w.accepting and len(w.jobs) < PIPELINE_DEPTH),
                key=lambda w: len(w.jobs),
                default=None,
            )
            if worker is None:
                return
            job = waiting.popleft()
            if not job.future.done():  # else cancelled while waiting
                worker.send(job)

    def _lost(self, worker: _Worker) -> None:
        """The worker's socket closed: it ended (or is ending). Fail its job, reap it, replace it."""
        self._workers.discard(worker)
        worker.accepting = False
        if not worker.ready.done():
            worker.ready.set_exception(WorkerCrashedError("a decoder worker ended before it was ready"))
            worker.ready.exception()  # retrieved: start() reports it when it waits on it
        jobs, worker.jobs = worker.jobs, deque()
        if self._closed:  # close() joins the processes
            for sent in jobs:
                if not sent.future.done():
                    sent.future.set_exception(WorkerCrashedError("the worker pool was closed during this job"))
            return
        self._reap(worker.process)
        job = jobs.popleft() if jobs else None
        # The jobs behind the first were never started (a worker answers in order): they go to the others.
        self._waiting.extendleft(reversed(jobs))
        self.crashes += 1
        log.error(
            "a %s worker (pid %s) ended unexpectedly%s; starting another",
            self._name,
            worker.process.pid,
            " while on a job" if job is not None else "",
        )
        if job is not None and not job.future.done():
            job.future.set_exception(WorkerCrashedError("the decoder worker died while on this job"))
        soon = self.loop.time() - worker.started < RESTART_DELAY_SECONDS
        self.loop.call_later(RESTART_DELAY_SECONDS if soon else 0, self._replace)
        self._dispatch()

    def _replace(self) -> None:
        if self._closed:
            return
        task = self.loop.create_task(self._spawn())
        task.add_done_callback(self._replaced)

    def _replaced(self, task: asyncio.Task[_Worker]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        log.error("starting a %s worker failed: %r; retrying", self._name, task.exception())
        self.loop.call_later(RESTART_DELAY_SECONDS, self._replace)

    def _reap(self, process: BaseProcess) -> None:
        """Collect the ended process's status without blocking the loop (its sentinel turns readable)."""
        sentinel = process.sentinel

        def collect() -> None:
            self.loop.remove_reader(sentinel)
            process.join(0)
            if process.exitcode not in (0, None):
                log.warning("%s worker %s exited with %s", self._name, process.pid, process.exitcode)

        try:
            self.loop.add_reader(sentinel, collect)
        except (OSError, ValueError):  # already closed
            process.join(0)

    def close(self) -> None:
        """Refuse new jobs, fail the waiting ones, and end the workers: each sees its socket close and
        exits; one that does not within JOIN_SECONDS is killed."""
        self._closed = True
        while self._waiting:
            job = self._waiting.popleft()
            if not job.future.done():
                job.future.set_exception(WorkerCrashedError("the worker pool was closed before this job ran"))
        workers = list(self._workers)
        for worker in workers:
            worker.close()  # at once: the worker sees the end of its socket and exits
            for sent in worker.jobs:
                if not sent.future.done():
                    sent.future.set_exception(WorkerCrashedError("the worker pool was closed during this job"))
            worker.jobs.clear()
        for worker in workers:
            worker.process.join(JOIN_SECONDS)
            if worker.process.exitcode is None:
                log.warning("%s worker %s did not end; killing it", self._name, worker.process.pid)
                worker.process.kill()
                worker.process.join(JOIN_SECONDS)
