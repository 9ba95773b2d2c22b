"""Goroutine groups from a stack-sampled goroutine profile (pprof or Go's `debug=1` text): the counts per
(wait state, blocking frame, user frame) with the largest kept. The `debug=2` dumps carry more per group
(creator, wait minutes) and build theirs in `goroutine_text.py`."""

from __future__ import annotations

from collections.abc import Mapping

from otel_leakproc.model import GoroutineGroup

GroupKey = tuple[str, str, str, str, int]  # state, blocking function, user function, file, line


def top_groups(counts: Mapping[GroupKey, int], top: int, *, leaked: bool) -> tuple[GoroutineGroup, ...]:
    """The `top` largest groups, largest first (ties by key, so the order is stable); every goroutine of
    a goroutineleak profile counts as leaked."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]
    return tuple(
        GoroutineGroup(
            state=state,
            blocking=blocking,
            function=function,
            file=file,
            line=line,
            creator="",
            count=n,
            leaked=n if leaked else 0,
        )
        for (state, blocking, function, file, line), n in ranked
    )
