"""Decoder workers end when the server process ends, however it ends (SIGKILL included).

A `ProcessPoolExecutor` worker blocked on its call queue forever once its server was gone: after a `kill -9`
of `serve`, workers (and, through the descriptors they held, the forkserver's resource tracker) stayed as
orphans. The decoder workers (`worker_pool`) also see their socket close, but only between uploads.
`watch_parent` runs in each worker at start-up: a daemon thread waits on a pidfd of the server process (no
polling) and ends the worker the moment the server is gone. Linux only (pidfd, 5.3+); elsewhere the thread
polls the pid once a second.
"""

from __future__ import annotations

import os
import select
import threading
import time

POLL_SECONDS = 1.0


def watch_parent(server_pid: int) -> None:
    """Run at a worker's start: end this process as soon as `server_pid` is gone."""
    threading.Thread(target=_wait_then_exit, args=(server_pid,), name="parent-watch", daemon=True).start()


def _wait_then_exit(server_pid: int) -> None:
    try:
        fd = os.pidfd_open(server_pid)
    except (AttributeError, OSError):
        _poll(server_pid)
    else:
        select.select([fd], [], [])  # readable when the process has ended
    os._exit(0)  # the server is gone: nobody will ever read this worker's results


def _poll(server_pid: int) -> None:
    while True:
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            pass  # alive, owned by someone else (cannot happen for our own server, kept for safety)
        time.sleep(POLL_SECONDS)
