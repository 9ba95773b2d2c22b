"""`serve` with `server.processes` > 1: this process starts N `serve` processes and stays their parent.

The parent binds each listening address first with SO_REUSEPORT and without listening (so port 0 becomes
one port the children share, and a port in use fails before anything starts), then starts the children
(`python -m otel_leakproc.cluster.supervisor`, settings on stdin). Each child is a whole `Service`
(`app.py`) listening on the same ports with SO_REUSEPORT, so the kernel spreads connections over them;
which child owns which series, and how they hand points to each other, is in `cluster/peers.py`.

- File state: child i of N keeps its series in `<state.dir>/process-i-of-N`; `<state.dir>/processes`
  records N, and a start with another count (or a folder of one process's state) is refused with a
  message naming `server.processes`, since the series would land on other owners than their history.
- SIGTERM or SIGINT to the parent: each child shuts down gracefully (its own drain, checkpoint and
  export flush, within `server.shutdown_timeout_seconds`); a child still running after that and a grace
  period is killed. The exit code is 0 when every child stopped cleanly.
- A child that exits on its own stops the others and the parent exits 1: a supervisor (systemd,
  Kubernetes) restarts the whole group, whose journals hold everything answered.
- The parent killed (SIGKILL too): each child sees it through a pidfd (`parent_watch`) and shuts down as
  on SIGTERM; their decoder workers follow them. No process is left behind, and the last child removes
  the sockets' folder.
- Each child's own telemetry over OTLP carries `otel_leakproc.process=i` in its resource (appended to
  `OTEL_RESOURCE_ATTRIBUTES`), so the processes' cumulative counters are separate streams.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from otel_leakproc.config import Settings, settings_from_mapping, settings_to_mapping
from otel_leakproc.errors import ConfigError
from otel_leakproc.receiver.http_server import split_address

log = logging.getLogger("otel_leakproc")

LAYOUT_FILE = "processes"  # in state.dir: how many processes keep their state there
KILL_GRACE_SECONDS = 10.0  # beyond server.shutdown_timeout_seconds, before a child is killed
POLL_SECONDS = 0.2
PROCESS_ATTRIBUTE = "otel_leakproc.process"  # added to each process's own OTLP resource


def process_state_dir(state_dir: str, index: int, count: int) -> str:
    return str(Path(state_dir) / f"process-{index}-of-{count}")


def check_state_layout(settings: Settings, count: int) -> None:
    """Refuse a state folder written by another number of processes (ConfigError naming the setting);
    record the count in a new one."""
    state = settings.state
    if state.backend != "file" or not state.dir:
        return
    folder = Path(state.dir)
    layout = folder / LAYOUT_FILE
    recorded = layout.read_text(encoding="utf-8").strip() if layout.exists() else None
    if recorded is not None and recorded != str(count):
        raise ConfigError(
            [
                f"server.processes: {state.dir} holds the state of {recorded} serve processes "
                f"(process-I-of-{recorded}), this start has {count}; start with server.processes: {recorded}, "
                "or move the folder aside to start with no history"
            ]
        )
    if recorded is None and count > 1 and folder.is_dir() and any(folder.glob("checkpoint.bin")):
        raise ConfigError(
            [
                f"server.processes: {state.dir} holds the state of one serve process; start with "
                "server.processes: 1, or move the folder aside to start with no history"
            ]
        )
    if recorded is None and count > 1:
        folder.mkdir(parents=True, exist_ok=True)
        layout.write_text(f"{count}\n", encoding="utf-8")


def reserve(address: str) -> tuple[socket.socket, str]:
    """Bind `address` with SO_REUSEPORT without listening: the port (chosen now when 0) is held for the
    children, who bind it too, and never handed a connection itself. Raises OSError (e.g. in use)."""
    host, port = split_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    return sock, f"{shown}:{bound}"


def child_settings(settings: Settings, index: int, count: int, http: str, grpc: str) -> Settings:
    """Child `index`'s settings: the reserved ports, its own state folder, spool and replica id, and its
    share of the CPUs for decoder workers when `ingest.workers` is 0."""
    server = settings.server
    server = dataclasses.replace(
        server,
        http=dataclasses.replace(server.http, address=http),
        grpc=dataclasses.replace(server.grpc, address=grpc),
    )
    ingest = settings.ingest
    if ingest.workers == 0:
        ingest = dataclasses.replace(ingest, workers=max(1, len(os.sched_getaffinity(0)) // count))
    state = settings.state
    if state.backend == "file" and state.dir:
        state = dataclasses.replace(state, dir=process_state_dir(state.dir, index, count))
    if state.redis.replica_id:
        state = dataclasses.replace(
            state, redis=dataclasses.replace(state.redis, replica_id=f"{state.redis.replica_id}-{index}")
        )
    export = settings.export
    if export.events.spool_dir:
        events = dataclasses.replace(export.events, spool_dir=str(Path(export.events.spool_dir) / f"process-{index}"))
        export = dataclasses.replace(export, events=events)
    return dataclasses.replace(settings, server=server, ingest=ingest, state=state, export=export)


def run_processes(settings: Settings, log_level: str) -> int:
    """Start `server.processes` children and supervise them until SIGTERM or SIGINT (see the module
    docstring). Returns the exit code."""
    count = settings.server.process_count()
    if settings.export.prometheus.enabled:
        raise ConfigError(
            [
                f"server.processes: export.prometheus listens on one port of its own, which {count} processes "
                "cannot share; use 1 process, or read the same metrics from /metrics or OTLP"
            ]
        )
    check_state_layout(settings, count)
    held: list[socket.socket] = []
    try:
        http_sock, http = reserve(settings.server.http.address)
        held.append(http_sock)
        grpc = settings.server.grpc.address
        if settings.server.grpc.enabled:
            grpc_sock, grpc = reserve(grpc)
            held.append(grpc_sock)
    except OSError as exc:
        log.error("cannot start: %s", exc)
        for sock in held:
            sock.close()
        return 1
    runtime = Path(tempfile.mkdtemp(prefix="otel-leakproc-"))  # 0700: the process sockets
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    children: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(count):
            mine = child_settings(settings, index, count, http, grpc)
            children.append(_spawn(mine, index, count, runtime, log_level))
        log.info(
            "serving with %d processes: HTTP %s, gRPC %s (pids %s)",
            count,
            http,
            grpc if settings.server.grpc.enabled else "off",
            " ".join(str(c.pid) for c in children),
        )
        failed = _supervise(children, stop)
        return _stop_all(children, settings.server.shutdown_timeout_seconds + KILL_GRACE_SECONDS) or failed
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sock in held:
            sock.close()
        shutil.rmtree(runtime, ignore_errors=True)


def _spawn(settings: Settings, index: int, count: int, runtime: Path, log_level: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "otel_leakproc.cluster.child"]
    command += ["--index", str(index), "--count", str(count), "--runtime", str(runtime)]
    command += ["--parent", str(os.getpid()), "--log-level", log_level]
    # Each process's own telemetry over OTLP is a resource of its own (one cumulative stream per process).
    attributes = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    own = f"{PROCESS_ATTRIBUTE}={index}"
    env = {**os.environ, "OTEL_RESOURCE_ATTRIBUTES": f"{attributes},{own}" if attributes else own}
    child = subprocess.Popen(command, stdin=subprocess.PIPE, env=env)
    assert child.stdin is not None
    child.stdin.write(json.dumps(settings_to_mapping(settings)).encode())
    child.stdin.close()
    return child


def _supervise(children: Sequence[subprocess.Popen[bytes]], stop: threading.Event) -> int:
    """Wait for a signal (0) or a child's own exit (1)."""
    while not stop.wait(POLL_SECONDS):
        for index, child in enumerate(children):
            code = child.poll()
            if code is not None:
                log.error("serve process %d exited with code %d: stopping the others", index, code)
                return 1
    log.info("shutting down %d processes (signal received)", len(children))
    return 0


def _stop_all(children: Sequence[subprocess.Popen[bytes]], timeout: float) -> int:
    """SIGTERM each child still running, wait up to `timeout`, kill the rest. 1 if any did not end cleanly."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    code = 0
    for index, child in enumerate(children):
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("serve process %d did not stop within %.0f s: killed", index, timeout)
            child.kill()
            child.wait()
        if child.returncode != 0:
            code = 1
    return code


# -- the child ---------------------------------------------------------------------------------------


def _watch_parent(parent: int) -> None:
    """Shut this process down gracefully (as on SIGTERM) the moment its parent is gone, however it ended."""

    def wait() -> None:
        try:
            fd = os.pidfd_open(parent)
        except OSError:  # already gone
            pass
        else:
            import select  # noqa: PLC0415

            select.select([fd], [], [])
        os.kill(os.getpid(), signal.SIGTERM)

    if os.getppid() != parent:  # gone before we started watching
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=wait, name="parent-watch", daemon=True).start()


def child_main(argv: Sequence[str] | None = None) -> int:
    import asyncio  # noqa: PLC0415

    from otel_leakproc.app import run  # noqa: PLC0415
    from otel_leakproc.cluster.peers import LocalProcess  # noqa: PLC0415
    from otel_leakproc.log_format import EscapingFormatter  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="otel-leakproc serve (process)")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--runtime", required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        EscapingFormatter(f"%(asctime)s %(levelname)s %(name)s [process {args.index}/{args.count}]: %(message)s")
    )
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    settings = settings_from_mapping(json.loads(sys.stdin.buffer.read()))
    process = LocalProcess(args.index, args.count, Path(args.runtime))
    # The signal handlers of `run` are installed on its loop; a SIGTERM before that would end the process
    # with no shutdown, which is what it should do then (nothing was accepted yet).
    _watch_parent(args.parent)
    code = asyncio.run(run(settings, process))
    with contextlib.suppress(OSError):  # the last one out removes the sockets' folder (a killed parent cannot)
        process.runtime_dir.rmdir()
    return code
