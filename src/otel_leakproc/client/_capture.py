"""Turns a `tracemalloc` snapshot and the threads' current stacks into pprof profiles.

Heap: every live traced block is grouped by its traceback; each distinct traceback becomes one sample
with `inuse_objects/count` and `inuse_space/bytes`. The `max_tracebacks` largest tracebacks are kept
whole; the rest are merged by their leaf frame, so the totals stay exact while the profile stays small.
Blocks allocated by this client (any frame inside this package) are left out.

Threads: one sample per distinct stack with the number of threads on it, sample type `goroutine/count`,
so otel-leakproc tracks Python threads with its goroutine detector (threads that pile up on the same
stack are the Python form of a goroutine leak). The sampler's own thread is left out.
"""

from __future__ import annotations

import os
import sys
import tracemalloc
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from otel_leakproc.client._pprof import Frame, ProfileBuilder
from otel_leakproc.client._resolve import FunctionResolver, normalise_qualname

CLIENT_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_TRACEMALLOC_FILE = tracemalloc.__file__

MAX_CACHED_FRAMES = 100_000

# Raw traces as `_tracemalloc._get_traces()` returns them: (domain, size, frames leaf first, total frames).
RawTrace = tuple[int, int, tuple[tuple[str, int], ...], int]


def raw_traces() -> list[RawTrace]:
    """Every live traced block; the raw form `tracemalloc.take_snapshot()` is built from."""
    get: Callable[[], list[RawTrace]] | None = getattr(tracemalloc, "_get_traces", None)
    if get is not None:
        return get()
    snapshot = tracemalloc.take_snapshot()  # pragma: no cover - CPython always has _get_traces
    return [
        (t.domain, t.size, tuple((f.filename, f.lineno) for f in reversed(t.traceback)), len(t.traceback))
        for t in snapshot.traces
    ]


class HeapCapture:
    """Builds heap profiles from the traced blocks; keeps its caches between captures."""

    def __init__(self, resolver: FunctionResolver, max_tracebacks: int) -> None:
        self._resolver = resolver
        self._max_tracebacks = max_tracebacks
        self._ours: dict[str, bool] = {}
        self._frames: dict[tuple[str, int], Frame] = {}

    def _is_ours(self, filename: str) -> bool:
        ours = self._ours.get(filename)
        if ours is None:
            ours = filename.startswith(CLIENT_DIR) or filename == _TRACEMALLOC_FILE
            if len(self._ours) < 65536:
                self._ours[filename] = ours
        return ours

    def aggregate(self, traces: Iterable[RawTrace]) -> dict[tuple[tuple[str, int], ...], list[int]]:
        """Objects and bytes per traceback, the client's own blocks left out."""
        # Written so that the loop over every traced block allocates nothing: under tracemalloc each
        # allocation (even a new int from `total += size`) is itself traced and costs microseconds, which
        # made this loop cost ~8 us per block. Sizes are collected per traceback (the same tuple object is
        # shared by every block with that traceback, so the dict lookup stops at the identity check) and
        # summed by `sum()`, which adds machine integers without creating objects.
        sizes: dict[tuple[tuple[str, int], ...], list[int]] = {}
        for _domain, size, frames, _total in traces:
            group = sizes.get(frames)
            if group is None:
                sizes[frames] = [size]
            else:
                group.append(size)
        is_ours = self._is_ours
        per_stack: dict[tuple[tuple[str, int], ...], list[int]] = {}
        for frames, group in sizes.items():
            if not any(is_ours(f) for f, _ in frames):
                per_stack[frames] = [len(group), sum(group)]
        return per_stack

    def _frame(self, raw: tuple[str, int]) -> Frame:
        found = self._frames.get(raw)
        if found is None:
            found = (self._resolver.name(raw[0], raw[1]), raw[0], raw[1])
            if len(self._frames) >= MAX_CACHED_FRAMES:
                self._frames.clear()
            self._frames[raw] = found
        return found

    def profile(self, traces: Iterable[RawTrace], time_nanos: int, duration_nanos: int) -> tuple[bytes, int, int]:
        """(pprof bytes, live objects, live bytes) for the given traces."""
        per_stack = self.aggregate(traces)
        ranked = sorted(per_stack.items(), key=lambda item: -item[1][1])
        builder = ProfileBuilder([("inuse_objects", "count"), ("inuse_space", "bytes")], ("space", "bytes"), 1)
        frame = self._frame

        objects = 0
        size = 0
        merged: dict[tuple[str, int], list[int]] = {}
        for i, (stack, (count, nbytes)) in enumerate(ranked):
            objects += count
            size += nbytes
            if i < self._max_tracebacks:
                builder.add([frame(f) for f in stack], (count, nbytes))
            else:
                leaf = stack[0] if stack else ("<unknown>", 0)
                acc = merged.setdefault(leaf, [0, 0])
                acc[0] += count
                acc[1] += nbytes
        for leaf, (count, nbytes) in merged.items():
            builder.add([frame(leaf)], (count, nbytes))
        return builder.encode(time_nanos, duration_nanos), objects, size


def thread_profile(max_frames: int, time_nanos: int, skip_thread: int | None) -> tuple[bytes, int]:
    """(pprof bytes, thread count) of the current stacks of every thread but `skip_thread`."""
    frames_by_thread: dict[int, FrameType] = sys._current_frames()
    stacks: dict[tuple[Frame, ...], int] = {}
    for ident, top in frames_by_thread.items():
        if ident == skip_thread:
            continue
        stack: list[Frame] = []
        current: FrameType | None = top
        while current is not None and len(stack) < max_frames:
            code = current.f_code
            stack.append((normalise_qualname(_qualname(code)), code.co_filename, current.f_lineno or 0))
            current = current.f_back
        key = tuple(stack)
        stacks[key] = stacks.get(key, 0) + 1
    del frames_by_thread
    builder = ProfileBuilder([("goroutine", "count")], ("goroutine", "count"), 1)
    for stack_key, count in sorted(stacks.items(), key=lambda item: -item[1]):
        builder.add(stack_key, (count,))
    return builder.encode(time_nanos, 0), sum(stacks.values())


def _qualname(code: Any) -> str:
    return str(getattr(code, "co_qualname", code.co_name))
