"""Decoder for Go goroutine dumps in text form (`/debug/pprof/goroutine?debug=2` and friends).

The same text comes from `goroutine?debug=2`, `goroutineleak?debug=2` (Go 1.27; lists every goroutine
and marks the leaked ones `(leaked)`), an unrecovered panic and `runtime.Stack(buf, true)`. Per
goroutine, blank-line separated::

    goroutine 18 [chan receive, 37 minutes] {job: ingest}:
    main.awaitReply(0xc000010000)
    \t/src/app/main.go:18 +0x1e
    created by main.fanOutLookups in goroutine 1
    \t/src/app/main.go:24 +0x19

Goroutines are grouped LeakProf-style by (wait state, blocking frame, user frame, creator), which is
what a leak looks like in such a dump: one group that keeps growing and whose wait minutes keep rising.

The parser is a single pass over the lines with plain string operations (no regexes that could
backtrack), so its time is linear in the input; it stops parsing a goroutine's frames once both the
blocking and the user frame are known.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from otel_leakproc.errors import InvalidProfileError, PayloadTooLargeError, RejectReason
from otel_leakproc.model import GoroutineGroup, ProfileKind, ProfileSummary, SiteValue
from otel_leakproc.receiver.decode.frames import go_package, is_runtime_frame, is_system_frame
from otel_leakproc.receiver.decode.limits import DecodeLimits

SOURCE_FORMAT = "goroutine-text"

_HEADER_PREFIX = "goroutine "
_CREATED_BY = "created by "
_IN_GOROUTINE = " in goroutine "
_ANCESTOR_PREFIX = "[originating from goroutine"
_LEAKED_FLAG = " (leaked)"
_SCAN_FLAG = " (scan)"
# Go prints runtime.gopanic as a bare "panic"; frames.py sees no package and would call it user code.
_PANIC = "panic"
_SNIFF_BYTES = 4096
_MAX_SHOWN = 120
# Longer digit runs are not real ids or minutes; refusing them also keeps int() away from the
# interpreter's max-digits limit (which raises ValueError).
_MAX_DIGITS = 19


def looks_like_goroutine_dump(data: bytes) -> bool:
    """Cheap sniff for a goroutine dump: `goroutine <digit>` after optional whitespace (or a BOM).

    Args:
        data: the (already decompressed) request body.

    Returns:
        True when the body starts like a debug=2 goroutine dump. Only a prefix is inspected.
    """
    head = data[:_SNIFF_BYTES]
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    head = head.lstrip()
    return head.startswith(b"goroutine ") and head[10:11].isdigit()


def parse_goroutine_dump(
    data: bytes, limits: DecodeLimits, *, time_nanos: int, kind: ProfileKind | None = None
) -> ProfileSummary:
    """Summarise a debug=2 goroutine dump into goroutine groups and attributed sites.

    `kind` defaults to GOROUTINELEAK when any goroutine is marked `(leaked)`, else GOROUTINE; callers
    that know the endpoint should pass it, because a goroutineleak dump with no leak looks exactly like
    a goroutine dump.

    Units differ by kind so that the summary matches the pprof form of the same profile:

    - GOROUTINE: `total` = goroutines in the dump; site values count goroutines.
    - GOROUTINELEAK: `total` = *leaked* goroutines only (the goroutineleak profile counts only those,
      although its debug=2 text lists every goroutine); site values count leaked goroutines and sites
      without any are dropped. Groups are kept for all goroutines and ranked by leaked count first.

    In both cases `total_count` is the number of goroutines in the dump.

    Args:
        data: the dump as bytes (UTF-8 text; `\\r\\n` line ends are accepted).
        limits: bounds; `max_samples` caps the number of goroutines, `top_groups`/`top_sites` the
            output size.
        time_nanos: collection time to record (text dumps carry none).
        kind: GOROUTINE or GOROUTINELEAK, or None to infer it.

    Returns:
        The bounded summary, `source_format="goroutine-text"`, `has_wait_times=True`.

    Raises:
        InvalidProfileError: not UTF-8 text, no or malformed goroutine header (BAD_TEXT), more than
            `max_samples` goroutines (TOO_MANY_ITEMS), a non-goroutine `kind` (UNSUPPORTED).
        PayloadTooLargeError: the dump exceeds `max_decompressed_bytes`.
    """
    if kind is not None and kind not in (ProfileKind.GOROUTINE, ProfileKind.GOROUTINELEAK):
        raise InvalidProfileError(
            f"goroutine dump: a text goroutine dump cannot be a {kind.value} profile",
            RejectReason.UNSUPPORTED,
        )
    if len(data) > limits.max_decompressed_bytes:
        raise PayloadTooLargeError(
            f"goroutine dump: {len(data)} bytes exceeds the limit of {limits.max_decompressed_bytes} bytes"
        )
    # Counting header lines in C first rejects oversized dumps before any per-line work.
    headers = data.count(b"\ngoroutine ") + data.startswith(b"goroutine ")
    if headers > limits.max_samples:
        raise InvalidProfileError(
            f"goroutine dump: {headers} goroutines exceed the limit of {limits.max_samples} (max_samples)",
            RejectReason.TOO_MANY_ITEMS,
        )
    text = _decode(data)
    buckets = _parse(text, limits.max_samples)
    return _summarise(buckets, limits, time_nanos, kind)


def _decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidProfileError(
            f"goroutine dump: line {line}: not valid UTF-8 text (byte offset {exc.start})",
            RejectReason.BAD_TEXT,
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n")


@dataclass(slots=True)
class _Bucket:
    """Goroutines sharing state, blocking frame, user frame (with file:line) and creator."""

    count: int = 0
    leaked: int = 0
    max_wait: int = 0
    leaf: str = ""  # innermost frame of the first goroutine seen, as evidence


@dataclass(slots=True)
class _Site:
    """One goroutine site being summed: its goroutines, the largest bucket, and its leaf function."""

    value: int
    best: int  # value of the largest contributing bucket
    leaf: str


# (state, blocking, function, file, line, creator)
_BucketKey = tuple[str, str, str, str, int, str]


class _Goroutine:
    """Accumulates one goroutine while its lines are read; only the frames attribution needs."""

    __slots__ = (
        "blocking",
        "blocking_file",
        "blocking_line",
        "creator",
        "file",
        "function",
        "leaf",
        "leaf_file",
        "leaf_line",
        "leaked",
        "line",
        "state",
        "wait",
    )

    def __init__(self, state: str, leaked: bool, wait: int) -> None:
        self.state = state
        self.leaked = leaked
        self.wait = wait
        self.leaf = ""  # innermost frame
        self.leaf_file = ""
        self.leaf_line = 0
        self.blocking: str | None = None  # None until a frame outside the runtime is seen
        self.blocking_file = ""
        self.blocking_line = 0
        self.function: str | None = None  # None until a non-system frame is seen
        self.file = ""
        self.line = 0
        self.creator = ""

    def add_frame(self, function: str, file: str, line: int) -> None:
        if not self.leaf:
            self.leaf, self.leaf_file, self.leaf_line = function, file, line
        if self.blocking is None and not _is_parking_frame(function):
            self.blocking = function
            self.blocking_file, self.blocking_line = file, line
        if self.function is None and function != _PANIC and not is_system_frame(function, file):
            self.function, self.file, self.line = function, file, line

    @property
    def attributed(self) -> bool:
        return self.function is not None and self.blocking is not None

    def key(self) -> _BucketKey:
        blocking = self.blocking if self.blocking is not None else ""
        if self.function is not None:
            function, file, line = self.function, self.file, self.line
        elif self.blocking is not None:
            function, file, line = self.blocking, self.blocking_file, self.blocking_line
        else:
            function, file, line = self.leaf, self.leaf_file, self.leaf_line
        return (self.state, blocking, function, file, line, self.creator)


@lru_cache(maxsize=65536)
def _is_parking_frame(function: str) -> bool:
    """Runtime frames plus the runtime's linknamed hooks in other packages.

    `sync.runtime_SemacquireMutex` or `internal/poll.runtime_pollWait` are implemented by the runtime;
    the frame a reader recognises as "where it blocks" is their caller (`sync.(*RWMutex).RLock`).
    """
    if function == _PANIC or is_runtime_frame(function):
        return True
    # Only standard-library hooks: a user function may well be called runtime_something.
    return function.startswith("runtime_", len(go_package(function)) + 1) and is_system_frame(function)


def _is_small_int(text: str) -> bool:
    return 0 < len(text) <= _MAX_DIGITS and text.isascii() and text.isdigit()


def _shown(line: str) -> str:
    return repr(line if len(line) <= _MAX_SHOWN else line[:_MAX_SHOWN] + "...")


def _bad_header(lineno: int, line: str, why: str) -> InvalidProfileError:
    return InvalidProfileError(
        f"goroutine dump: line {lineno}: malformed goroutine header ({why}): {_shown(line)}",
        RejectReason.BAD_TEXT,
    )


_HeaderInfo = tuple[str, bool, int]


def _parse_header(line: str, lineno: int) -> _HeaderInfo:
    """`goroutine <id>[ gp=.. m=.. mp=..] [<state>[ (leaked)][ (scan)][, N minutes][, ...]]<labels>:`.

    Returns (state, leaked, wait minutes).
    """
    body = line.rstrip()
    if not body.endswith(":"):
        raise _bad_header(lineno, line, "no trailing ':'")
    open_at = body.find(" [", len(_HEADER_PREFIX))
    if open_at < 0:
        raise _bad_header(lineno, line, "no '[status]'")
    # The id may be followed by " gp=0x.. m=.. mp=0x.." (GOTRACEBACK=system); only the id is checked.
    goid = body[len(_HEADER_PREFIX) : open_at].split(" ", 1)[0]
    if not _is_small_int(goid):
        raise _bad_header(lineno, line, "goroutine id is not a number")
    # Wait reasons never contain ']', so the first one closes the status even when quoted labels follow.
    close_at = body.find("]", open_at)
    if close_at < 0:
        raise _bad_header(lineno, line, "no closing ']'")
    parts = body[open_at + 2 : close_at].split(", ")
    state = parts[0]
    # "(leaked)" and "(scan)" are flags; "(nil chan)", "(no cases)" and "(durable)" belong to the reason.
    leaked = _LEAKED_FLAG in state
    if leaked:
        state = state.replace(_LEAKED_FLAG, "")
    if _SCAN_FLAG in state:
        state = state.replace(_SCAN_FLAG, "")
    state = state.strip()
    if not state:
        raise _bad_header(lineno, line, "empty status")
    wait = 0
    for part in parts[1:]:
        # Other parts ("locked to thread", "synctest bubble N") do not affect grouping.
        number, _, unit = part.partition(" ")
        if unit in ("minutes", "minute"):
            if not _is_small_int(number):
                raise _bad_header(lineno, line, "wait minutes is not a number")
            wait = int(number)
    return state, leaked, wait


def _parse_location(text: str) -> tuple[str, int] | None:
    """`<file>:<line>[ +0x<off>][ fp=.. sp=.. pc=..]` -> (file, line); None when it is not one.

    Paths may contain ':' (Windows drives) and spaces, so the line number is the digit run after the
    rightmost ':' that is followed by digits and then a space or the end. Each ':' is visited once.
    """
    end = len(text)
    colon = text.rfind(":")
    while colon > 0:
        stop = colon + 1
        while stop < end and "0" <= text[stop] <= "9":
            stop += 1
        if stop > colon + 1 and (stop == end or text[stop] == " ") and stop - colon - 1 <= _MAX_DIGITS:
            return text[:colon], int(text[colon + 1 : stop])
        colon = text.rfind(":", 0, colon)
    return None


def _parse(text: str, max_goroutines: int) -> dict[_BucketKey, _Bucket]:
    buckets: dict[_BucketKey, _Bucket] = {}
    current: _Goroutine | None = None
    pending: str | None = None  # function line waiting for its file line
    skipping = False  # the goroutine is attributed: only its "created by" still matters
    ancestor = False  # inside "[originating from goroutine N]:" sections
    seen = 0
    first_content: tuple[int, str] | None = None
    # Headers and file lines repeat heavily (same state, same call site and offset), so their parses
    # are memoised per dump; the memo holds at most one entry per input line.
    header_memo: dict[str, _HeaderInfo] = {}
    location_memo: dict[str, tuple[str, int]] = {}

    def finish(g: _Goroutine, pending_fn: str | None) -> None:
        if pending_fn is not None and not g.attributed:
            g.add_frame(pending_fn, "", 0)
        key = g.key()
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = _Bucket(leaf=g.leaf)
        bucket.count += 1
        bucket.leaked += g.leaked
        bucket.max_wait = max(bucket.max_wait, g.wait)

    # Leading whitespace, even before the first header on its line, is allowed (as by the sniff).
    body = text.lstrip()
    first_lineno = 1 + text.count("\n", 0, len(text) - len(body))
    for lineno, line in enumerate(body.split("\n"), first_lineno):
        if not line:
            continue
        first = line[0]
        if first == "g" and line.startswith(_HEADER_PREFIX):
            if current is not None:
                finish(current, pending)
            seen += 1
            if seen > max_goroutines:  # defensive; the byte count in the caller normally catches it
                raise InvalidProfileError(
                    f"goroutine dump: line {lineno}: more than {max_goroutines} goroutines (max_samples)",
                    RejectReason.TOO_MANY_ITEMS,
                )
            # The memo is keyed by what follows the id; the id itself is checked on every line.
            id_end = line.find(" ", len(_HEADER_PREFIX))
            tail = line[id_end:]
            info = None
            if id_end > 0 and _is_small_int(line[len(_HEADER_PREFIX) : id_end]):
                info = header_memo.get(tail)
            if info is None:
                info = header_memo[tail] = _parse_header(line, lineno)
            current = _Goroutine(*info)
            pending = None
            skipping = ancestor = False
            continue
        if current is None:
            # Preamble of a panic dump ("panic: ...", "[signal ...]"); kept for the error message.
            if first_content is None:
                first_content = (lineno, line)
            continue
        if ancestor:
            continue
        if first == "[" and line.startswith(_ANCESTOR_PREFIX):
            # Ancestor stacks (GODEBUG=tracebackancestors) follow the goroutine's own "created by" and
            # describe other goroutines, including their own "created by": ignore all of it.
            if pending is not None and not skipping:
                current.add_frame(pending, "", 0)
            pending = None
            ancestor = True
            continue
        if first in "\t ":
            if pending is not None:
                location = location_memo.get(line)
                if location is None:
                    location = location_memo[line] = _parse_location(line.strip()) or ("", 0)
                current.add_frame(pending, *location)
                pending = None
                skipping = current.attributed
            # Other indented lines: the creator's location, "goroutine running on other thread", ...
            continue
        if first == "c" and line.startswith(_CREATED_BY):
            creator = line[len(_CREATED_BY) :].rstrip()
            cut = creator.rfind(_IN_GOROUTINE)
            if cut > 0:
                creator = creator[:cut]
            current.creator = creator
            if pending is not None and not skipping:
                current.add_frame(pending, "", 0)
            pending = None
            continue
        if skipping:
            continue
        if first == "." and line.startswith("..."):
            continue  # "...N frames elided..." / "...additional frames elided..."
        frame = line.rstrip()
        paren = frame.rfind("(")
        if paren <= 0 or not frame.endswith(")"):
            continue  # not a frame ("exit status 2" after a panic, a truncated line, ...)
        if pending is not None:
            current.add_frame(pending, "", 0)
            if current.attributed:
                skipping = True
                pending = None
                continue
        pending = frame[:paren]

    if current is None:
        where = (
            f"line {first_content[0]}: expected 'goroutine <id> [<status>]:', found {_shown(first_content[1])}"
            if first_content is not None
            else "line 1: empty input, expected 'goroutine <id> [<status>]:'"
        )
        raise InvalidProfileError(f"goroutine dump: {where}", RejectReason.BAD_TEXT)
    finish(current, pending)
    return buckets


def _summarise(
    buckets: dict[_BucketKey, _Bucket], limits: DecodeLimits, time_nanos: int, kind: ProfileKind | None
) -> ProfileSummary:
    goroutines = sum(b.count for b in buckets.values())
    leaked = sum(b.leaked for b in buckets.values())
    if kind is None:
        kind = ProfileKind.GOROUTINELEAK if leaked else ProfileKind.GOROUTINE
    leak_kind = kind is ProfileKind.GOROUTINELEAK

    # Merge file:line variants into groups; the group shows the location of its largest variant.
    merged: dict[tuple[str, str, str, str], tuple[_Bucket, str, int, int]] = {}
    for (state, blocking, function, file, line, creator), b in buckets.items():
        gkey = (state, blocking, function, creator)
        prev = merged.get(gkey)
        if prev is None:
            merged[gkey] = (_Bucket(b.count, b.leaked, b.max_wait), file, line, b.count)
            continue
        acc, best_file, best_line, best_count = prev
        acc.count += b.count
        acc.leaked += b.leaked
        acc.max_wait = max(acc.max_wait, b.max_wait)
        if (-b.count, file, line) < (-best_count, best_file, best_line):
            best_file, best_line, best_count = file, line, b.count
        merged[gkey] = (acc, best_file, best_line, best_count)
    groups = [
        GoroutineGroup(
            state=state,
            blocking=blocking,
            function=function,
            file=file,
            line=line,
            creator=creator,
            count=acc.count,
            max_wait_minutes=acc.max_wait,
            leaked=acc.leaked,
        )
        for (state, blocking, function, creator), (acc, file, line, _) in merged.items()
    ]
    if leak_kind:
        groups.sort(key=lambda g: (-g.leaked, -g.count, g.key))
    else:
        groups.sort(key=lambda g: (-g.count, -g.leaked, g.key))

    # Sites: per user frame; the leaf of the largest contributing bucket is kept as evidence.
    site_acc: dict[tuple[str, str, int], _Site] = {}
    for (_, _, function, file, line, _), b in buckets.items():
        value = b.leaked if leak_kind else b.count
        if not function or value == 0:
            continue
        site = site_acc.get((function, file, line))
        if site is None:
            site_acc[(function, file, line)] = _Site(value, value, b.leaf)
            continue
        site.value += value
        if value > site.best:
            site.best, site.leaf = value, b.leaf
    sites = sorted(
        (
            SiteValue(function=f, file=fi, line=li, value=float(a.value), count=float(a.value), leaf=a.leaf)
            for (f, fi, li), a in site_acc.items()
        ),
        key=lambda s: (-s.value, s.function, s.file, s.line),
    )[: max(limits.top_sites, 0)]

    total = float(leaked if leak_kind else goroutines)
    return ProfileSummary(
        kind=kind,
        time_nanos=time_nanos,
        total=total,
        total_count=float(goroutines),
        sites=tuple(sites),
        other=total - sum(s.value for s in sites),
        groups=tuple(groups[: max(limits.top_groups, 0)]),
        labels={},
        source_format=SOURCE_FORMAT,
        has_wait_times=True,
    )
