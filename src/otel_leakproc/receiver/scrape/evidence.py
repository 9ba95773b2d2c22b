"""Evidence kept from a `goroutine?debug=2` dump: the largest goroutine groups with wait minutes and stacks.

Pure and bounded: goroutines are grouped by wait state (without the minutes) and their stack of functions;
each group keeps its count, its longest wait in minutes, its creator and at most `max_frames` frames
(`function file:line`, arguments dropped). Only the `max_groups` largest groups are returned. The
detectors get the same dump through the ingest core; this is what a human reads on the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_HEADER = "goroutine "
_CREATED_BY = "created by "
_LEAKED = " (leaked)"  # Go 1.27 marks goroutines the GC proved unreachable
MAX_SHOWN_CHARS = 300


@dataclass(slots=True)
class _Group:
    """Goroutines of a dump with the same state, stack and creator, being counted."""

    state: str
    frames: list[str]
    creator: str = ""
    count: int = 0
    max_wait_minutes: int = 0
    leaked: int = 0


def _header(line: str) -> tuple[int, str, int, bool] | None:
    """(id, wait state, wait minutes, leaked) of `goroutine 18 [chan receive (leaked), 37 minutes]:`."""
    if not line.startswith(_HEADER) or "[" not in line:
        return None
    ident, _, rest = line[len(_HEADER) :].partition(" ")
    if not ident.isdigit():
        return None
    inside = rest[rest.find("[") + 1 : rest.find("]")] if "]" in rest else ""
    parts = [p.strip() for p in inside.split(",")]
    state = parts[0] if parts else ""
    leaked = state.endswith(_LEAKED)
    state = state.removesuffix(_LEAKED)
    minutes = 0
    for part in parts[1:]:
        number, _, unit = part.partition(" ")
        if unit.startswith("minute") and number.isdigit():
            minutes = int(number)
    return int(ident), state[:MAX_SHOWN_CHARS], minutes, leaked


def _function(line: str) -> str:
    """`main.waitForReply(0xc000010000)` -> `main.waitForReply` (a call's argument list dropped)."""
    text = line.strip()
    if text.endswith(")") and "(" in text:
        text = text[: text.rfind("(")]
    return text[:MAX_SHOWN_CHARS]


def _location(line: str) -> str:
    """`\t/src/app/main.go:18 +0x1e` -> `/src/app/main.go:18`."""
    return line.strip().split(" +0x", 1)[0][:MAX_SHOWN_CHARS]


def dump_evidence(text: str, max_groups: int, max_frames: int) -> dict[str, Any]:
    """Summarise a goroutine debug=2 dump for humans.

    Args:
        text: the dump (as served by `/debug/pprof/goroutine?debug=2`).
        max_groups: groups returned (the largest first).
        max_frames: frames kept per group.

    Returns:
        `{"goroutines": N, "groups_total": G, "max_wait_minutes": M, "groups": [{"count", "state",
        "max_wait_minutes", "leaked", "function", "creator", "stack": ["func file:line", ...]}]}`, where
        `function` is the first frame outside the runtime (the one a human would change) and `leaked` counts
        goroutines Go 1.27 marks `(leaked)`.
    """
    groups: dict[tuple[str, tuple[str, ...], str], _Group] = {}
    goroutines = 0
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line.strip()]
        if not lines:
            continue
        head = _header(lines[0])
        if head is None:
            continue
        goroutines += 1
        _, state, minutes, leaked = head
        frames: list[str] = []
        creator = ""
        index = 1
        while index < len(lines):
            line = lines[index]
            if line.startswith(_CREATED_BY):
                creator = _function(line[len(_CREATED_BY) :].split(" in goroutine ", 1)[0] + "()")
                break
            if line.startswith(("\t", " ")):
                index += 1
                continue
            where = _location(lines[index + 1]) if index + 1 < len(lines) and lines[index + 1].startswith("\t") else ""
            if len(frames) < max_frames:
                frames.append(f"{_function(line)} {where}".strip())
            index += 1
        key = (state, tuple(frames), creator)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(state, frames, creator)
        group.count += 1
        group.max_wait_minutes = max(group.max_wait_minutes, minutes)
        group.leaked += leaked
    ranked = sorted(groups.values(), key=lambda g: (-g.count, -g.max_wait_minutes, g.frames))
    return {
        "goroutines": goroutines,
        "groups_total": len(groups),
        "max_wait_minutes": max((g.max_wait_minutes for g in groups.values()), default=0),
        "groups": [
            {
                "count": g.count,
                "state": g.state,
                "max_wait_minutes": g.max_wait_minutes,
                "leaked": g.leaked,
                "function": _user_function(g.frames),
                "creator": g.creator,
                "stack": g.frames,
            }
            for g in ranked[:max_groups]
        ],
    }


def _user_function(frames: list[str]) -> str:
    for frame in frames:
        name = frame.split(" ", 1)[0]
        if not name.startswith(("runtime.", "sync.", "internal/", "runtime/")):
            return name
    return frames[0].split(" ", 1)[0] if frames else ""


def cut_at_goroutine(text: str) -> str:
    """A dump cut at a size bound, trimmed to whole goroutines (up to its last blank line)."""
    end = text.rfind("\n\n")
    return text[: end + 1] if end >= 0 else ""
