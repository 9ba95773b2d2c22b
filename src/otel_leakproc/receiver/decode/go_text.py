"""Decoder for the text profiles Go's `net/http/pprof` serves with `?debug=1`.

Each is a header, then one record per stack: its values, `@`, the stack's return addresses, and the
symbolised frames as `#` lines (runtime frames at the top of a stack are left out by Go)::

    heap profile: 11: 360448 [11: 360449] @ heap/1048576       (heap and allocs)
    11: 360448 [11: 360448] @ 0x487eda 0x48c2a9 0x6792ef
    #\t0x6792ee\tmain.(*sessionCache).rememberSession+0x2e\t/src/app/main.go:29

    --- mutex:                                                  (mutex; block says `--- contention:`)
    cycles/second=2793435762
    sampling period=1
    31404612752 1716 @ 0x6794b7 0x6794b6 0x679898

    goroutine profile: total 69                                 (goroutine, goroutineleak)
    59 @ 0x48a20a 0x4180ae 0x417bd2 0x6793f5 0x490f41

The summary is the one the pprof decoder makes of the protobuf form of the same instant:

- heap: in-use bytes and objects, and allocated objects (the restart marker), each record scaled for its
  probability of being sampled as Go's own tooling does (`scaleHeapSample` in pprof's legacy_profile.go:
  the header's `heap/N` is twice the sampling rate, a record of average size S is multiplied by
  `1 / (1 - exp(-S / rate))`, truncated to an integer).
- mutex and block: delay in nanoseconds (`cycles / (cycles_per_second / 1e9)`, truncated, as the runtime
  writes the protobuf) and contentions. The runtime has already scaled both by the sampling period before
  writing either form, so `sampling period` is read but not applied again.
- goroutine and goroutineleak: goroutines per stack. The wait state of a group comes from the visible
  frames (`sync.(*Mutex).Lock`, `internal/poll.runtime_pollWait`, ...); when Go hid the runtime frames that
  tell it (a channel receive parks in `runtime.chanrecv`), the state is "".

Profiles in the same family that are not Go's (gperftools heap and contention text, C++ heapz), CPU
profiles (the legacy binary form) and Go execution traces are recognised and rejected with an error that
names them and what is accepted. Text profiles carry no timestamp: the caller supplies one.

A single pass over the lines with plain string operations; every count is bounded by `DecodeLimits`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from otel_leakproc.errors import InvalidProfileError, PayloadTooLargeError, RejectReason
from otel_leakproc.model import ProfileKind, ProfileSummary, SiteValue
from otel_leakproc.receiver.decode.frames import is_primitive_frame, is_runtime_frame, is_system_frame
from otel_leakproc.receiver.decode.groups import GroupKey, top_groups
from otel_leakproc.receiver.decode.limits import DecodeLimits

SOURCE_FORMAT = "go-text"

ACCEPTED = (
    "accepted: pprof protobuf (gzipped or not) or Go's debug=1 text of heap, allocs, goroutine, "
    "goroutineleak, mutex and block profiles, and goroutine debug=2 dumps"
)

_SNIFF_BYTES = 512  # the first line of every text profile Go writes is far shorter
_MAX_SHOWN = 80
_MAX_DIGITS = 19  # int64; longer digit runs are not Go's values (and keep int() away from its digit limit)
_HEAP_HEADER = "heap profile:"
_COUNT_HEADER = " profile: total "
_COUNT_HEADER_BYTES = _COUNT_HEADER.encode()
_TEXT_STARTS = (_HEAP_HEADER.encode(), b"--- ")
_CONTENTION_HEADERS = {"--- mutex:": ProfileKind.MUTEX, "--- contention:": ProfileKind.BLOCK}
_GO_CONTENTION_KEYS = frozenset({"cycles/second", "sampling period", "ms since reset", "discarded samples"})
_COUNT_KINDS = {"goroutine": ProfileKind.GOROUTINE, "goroutineleak": ProfileKind.GOROUTINELEAK}
# Go's own debug=1 count profiles that carry no leak signal.
_OTHER_COUNT_PROFILES = {"threadcreate": "a Go threadcreate profile"}

# Wait states the *visible* frames of a debug=1 goroutine stack can tell (Go hides the runtime frames at
# the top of a stack, where the protobuf form shows `runtime.chanrecv`, `runtime.semacquire1`, ...).
# Checked from the leaf outwards, up to the blocking frame.
_VISIBLE_WAIT_STATES: tuple[tuple[str, str], ...] = (
    ("sync.(*WaitGroup).Wait", "sync.WaitGroup.Wait"),
    ("sync.(*Cond).Wait", "sync.Cond.Wait"),
    ("sync.(*RWMutex).RLock", "sync.RWMutex.RLock"),
    ("sync.(*RWMutex).Lock", "sync.RWMutex.Lock"),
    ("sync.(*Mutex).Lock", "sync.Mutex.Lock"),
    ("sync.runtime_Semacquire", "semacquire"),
    ("internal/sync.runtime_Semacquire", "semacquire"),
    ("internal/poll.runtime_pollWait", "IO wait"),
    ("time.Sleep", "sleep"),
)

Frame = tuple[str, str, int]  # function, file, line


def looks_like_go_text(data: bytes) -> bool:
    """True when the (decompressed) body is a profile this module reads or names: a debug=1 text profile
    (Go's or a look-alike from gperftools), a legacy binary CPU profile or a Go execution trace.

    Only a prefix is inspected; a goroutine debug=2 dump (`goroutine 1 [...]:`) is not one of these.
    """
    if data[:1] == b"\x00" or data.startswith(b"go 1."):  # cheap first: this runs before every pprof parse
        return _legacy_binary(data) is not None
    line = _first_line(data)
    if line.startswith(_TEXT_STARTS):
        return True
    name, sep, total = line.partition(_COUNT_HEADER_BYTES)
    return bool(sep) and name.replace(b"_", b"").isalnum() and total.isdigit()


def decode_go_text(
    data: bytes,
    limits: DecodeLimits,
    *,
    time_nanos: int | None,
    alloc_cumulative: bool = True,
) -> ProfileSummary:
    """Summarise a Go debug=1 text profile (see the module docstring).

    Args:
        data: the decompressed body.
        limits: bounds (`max_decompressed_bytes`, `max_samples` records, `max_locations` frames in all) and
            top-K sizes.
        time_nanos: collection time (text profiles carry none); None is an error.
        alloc_cumulative: False when allocation counts are per-interval deltas (no restart marker then).

    Raises:
        InvalidProfileError: not a profile Go writes (UNSUPPORTED for CPU profiles and profiles without a
            leak signal, BAD_TEXT for other formats and malformed lines), too many records (TOO_MANY_ITEMS),
            no timestamp (BAD_VALUES).
        PayloadTooLargeError: more than `max_decompressed_bytes`.
    """
    binary = _legacy_binary(data)
    if binary is not None:
        raise InvalidProfileError(f"profile: this is {binary[0]}; {ACCEPTED}", binary[1])
    if len(data) > limits.max_decompressed_bytes:
        raise PayloadTooLargeError(
            f"text profile: {len(data)} bytes exceeds the limit of {limits.max_decompressed_bytes} bytes"
        )
    lines = _lines(data)
    header_no, header = next(((n, line) for n, line in lines if line.strip()), (1, ""))
    header = header.strip()
    reader: _Reader
    if header.startswith(_HEAP_HEADER):
        kind, reader = ProfileKind.HEAP, _HeapReader(header, header_no)
    elif header.startswith("--- "):
        kind = _contention_kind(header, header_no)
        reader = _ContentionReader(header_no)
    elif _COUNT_HEADER in header:
        kind = _count_kind(header, header_no)
        reader = _CountReader(header, header_no)
    else:
        raise _bad(header_no, header, "not the first line of a Go text profile")
    if time_nanos is None or time_nanos <= 0:
        raise InvalidProfileError(
            "text profile: a debug=1 text profile carries no timestamp and none was given", RejectReason.BAD_VALUES
        )
    records = reader.read(lines, limits)
    return _summarise(kind, records, reader, limits, time_nanos, alloc_cumulative)


# ----------------------------------------------------------------------------------------------------
# Recognising what the body is


def _first_line(data: bytes) -> bytes:
    head = data[:_SNIFF_BYTES]
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    head = head.lstrip()
    end = head.find(b"\n")
    return (head if end < 0 else head[:end]).rstrip()


def _legacy_binary(data: bytes) -> tuple[str, RejectReason] | None:
    """What a binary legacy body is: a CPU profile (header words 0, 3, 0 in 32 or 64 bits, either byte
    order, as gperftools and old Go releases wrote them) or a Go execution trace."""
    if data.startswith(b"go 1.") and b" trace\x00" in data[:16]:
        return "a Go execution trace (no leak signal)", RejectReason.UNSUPPORTED
    for width in (8, 4):
        if len(data) >= 5 * width:
            words = [data[i * width : (i + 1) * width] for i in range(3)]
            little = [int.from_bytes(w, "little") for w in words]
            big = [int.from_bytes(w, "big") for w in words]
            if [0, 3, 0] in (little, big):
                return (
                    "a legacy binary CPU profile (gperftools or an old Go release; no leak signal)",
                    RejectReason.UNSUPPORTED,
                )
    return None


def _contention_kind(header: str, lineno: int) -> ProfileKind:
    for prefix, kind in _CONTENTION_HEADERS.items():
        if header.startswith(prefix):
            return kind
    if header.startswith("--- contentionz"):
        raise _foreign(lineno, header, "a C++ (gperftools/Abseil) contention profile")
    if header.startswith("--- threadz"):
        raise _foreign(lineno, header, "a C++ threadz profile")
    raise _bad(lineno, header, "not a Go '--- mutex:' or '--- contention:' header")


def _count_kind(header: str, lineno: int) -> ProfileKind:
    name, _, total = header.partition(_COUNT_HEADER)
    if not _is_count(total):
        raise _bad(lineno, header, "the total is not a number")
    kind = _COUNT_KINDS.get(name)
    if kind is not None:
        return kind
    what = _OTHER_COUNT_PROFILES.get(name, f"a {name!r} count profile")
    raise InvalidProfileError(
        f"text profile: line {lineno}: this is {what} (no leak signal); {ACCEPTED}", RejectReason.UNSUPPORTED
    )


def _foreign(lineno: int, line: str, what: str) -> InvalidProfileError:
    return InvalidProfileError(
        f"text profile: line {lineno}: this is {what}, not one Go writes ({_shown(line)}); {ACCEPTED}",
        RejectReason.BAD_TEXT,
    )


def _bad(lineno: int, line: str, why: str) -> InvalidProfileError:
    return InvalidProfileError(f"text profile: line {lineno}: {why}: {_shown(line)}", RejectReason.BAD_TEXT)


def _shown(line: str) -> str:
    return repr(line if len(line) <= _MAX_SHOWN else line[:_MAX_SHOWN] + "...")


def _is_count(text: str) -> bool:
    return 0 < len(text) <= _MAX_DIGITS and text.isascii() and text.isdigit()


def _int(text: str, lineno: int, line: str, what: str) -> int:
    if not _is_count(text):  # Go writes no negative values; they would make the scaling meaningless
        raise _bad(lineno, line, f"{what} is not a non-negative number")
    return int(text)


# ----------------------------------------------------------------------------------------------------
# Reading records


def _lines(data: bytes) -> Iterator[tuple[int, str]]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidProfileError(
            f"text profile: line {line}: not valid UTF-8 text (byte offset {exc.start})", RejectReason.BAD_TEXT
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return enumerate(text.split("\n"), 1)


@dataclass(slots=True)
class _Record:
    """One stack of the profile: its values in the summary's units, and its visible frames."""

    values: tuple[int, ...]
    frames: list[Frame] = field(default_factory=list)


class _Reader:
    """Reads records: a values line ending in `@ 0x...`, then its `#` frame lines."""

    def __init__(self, header_no: int) -> None:
        self.header_no = header_no
        # The pprof `period` the protobuf of the same profile carries (heap: MemProfileRate), 0 if none.
        self.sample_period = 0.0

    def values(self, left: str, lineno: int, line: str) -> tuple[int, ...] | None:
        """The record's values from the text before ` @`; None when the line is not a record."""
        raise NotImplementedError

    def attribute(self, line: str, lineno: int) -> bool:
        """Handle a line between the header and the first record; False when it is not one."""
        return False

    def read(self, lines: Iterator[tuple[int, str]], limits: DecodeLimits) -> list[_Record]:
        records: list[_Record] = []
        current: _Record | None = None
        frames = 0
        for lineno, raw in lines:
            line = raw.strip()
            if not line:
                current = None
                continue
            if line.startswith("#"):
                if current is not None and raw.startswith("#\t") and not line.startswith("# labels:"):
                    frames += 1
                    if frames > limits.max_locations:
                        raise InvalidProfileError(
                            f"text profile: line {lineno}: more than {limits.max_locations} frames (max_locations)",
                            RejectReason.TOO_MANY_ITEMS,
                        )
                    current.frames.append(_frame(raw, lineno))
                continue  # comments: `# labels: {...}`, heap's `# runtime.MemStats` block
            if not records and self.attribute(line, lineno):
                continue
            left, at, addresses = line.partition(" @")
            values = self.values(left, lineno, line) if at else None
            if values is None:
                raise _bad(lineno, line, "expected a record '<values> @ 0x...'")
            _check_addresses(addresses, lineno, line)
            if len(records) >= limits.max_samples:
                raise InvalidProfileError(
                    f"text profile: line {lineno}: more than {limits.max_samples} records (max_samples)",
                    RejectReason.TOO_MANY_ITEMS,
                )
            current = _Record(values)
            records.append(current)
        return records


def _check_addresses(addresses: str, lineno: int, line: str) -> None:
    for address in addresses.split():
        if not (address.startswith("0x") and 2 < len(address) <= 18 and _is_hex(address[2:])):
            raise _bad(lineno, line, f"{_shown(address)} is not a hex address")


def _is_hex(text: str) -> bool:
    return text.isascii() and all(c in "0123456789abcdefABCDEF" for c in text)


def _frame(raw: str, lineno: int) -> Frame:
    """`#\\t0xADDR\\tfunc+0xOFF\\tfile:line` (tab-aligned) -> (func, file, line); `#\\t0xADDR` alone is an
    unsymbolised frame, named by its address as the pprof decoder names such a location."""
    parts = [p for p in raw[1:].strip().split("\t") if p]
    if len(parts) == 1 and parts[0].startswith("0x"):
        return parts[0].strip(), "", 0
    if len(parts) < 3:
        raise _bad(lineno, raw.strip(), "expected a frame '#\\t0xADDR\\tfunction+0xOFF\\tfile:line'")
    function = parts[1].strip()
    plus = function.rfind("+0x")
    if plus > 0:
        function = function[:plus]
    where = "\t".join(parts[2:]).strip()
    file, colon, number = where.rpartition(":")
    if not colon or not _is_count(number):
        return function, where, 0
    return function, file, int(number)


class _HeapReader(_Reader):
    """`heap profile: <inuse objects>: <inuse bytes> [<alloc objects>: <alloc bytes>] @ heap/<2*rate>`.

    Values per record: (inuse bytes, inuse objects, alloc objects), scaled.
    """

    def __init__(self, header: str, header_no: int) -> None:
        super().__init__(header_no)
        _, at, sampling = header.rpartition("@")
        kind, _, rate = sampling.strip().partition("/")
        if not at:
            raise _bad(header_no, header, "no '@ heap/<rate>' after the totals")
        if kind == "heapprofile":
            raise _foreign(header_no, header, "a gperftools heap profile")
        if kind in ("heap_v2", "heapz_v2", "growthz", "growth", "fragmentationz", "fragmentation"):
            raise _foreign(header_no, header, f"a C++ {kind} heap profile")
        if kind != "heap":
            raise _bad(header_no, header, f"unknown sampling {kind!r} (Go writes 'heap/<rate>')")
        if rate and not _is_count(rate):
            raise _bad(header_no, header, "the sampling rate is not a number")
        # Go writes twice its MemProfileRate here (what early C++ profilers wrote); pprof halves it.
        self.rate = int(rate or "0") // 2
        self.sample_period = float(self.rate)

    def values(self, left: str, lineno: int, line: str) -> tuple[int, ...] | None:
        inuse, bracket, alloc = left.partition("[")
        if not bracket or not alloc.rstrip().endswith("]"):
            return None
        inuse_objects, inuse_bytes = self._pair(inuse, lineno, line, "in-use")
        alloc_objects, _ = self._pair(alloc.rstrip()[:-1], lineno, line, "allocation")
        return inuse_bytes, inuse_objects, alloc_objects

    def _pair(self, text: str, lineno: int, line: str, what: str) -> tuple[int, int]:
        count_text, colon, size_text = text.partition(":")
        if not colon:
            raise _bad(lineno, line, f"{what} values are not '<objects>: <bytes>'")
        count = _int(count_text.strip(), lineno, line, f"{what} objects")
        size = _int(size_text.strip(), lineno, line, f"{what} bytes")
        if count == 0 and size != 0:
            raise _bad(lineno, line, f"{what} objects are 0 but {what} bytes are {size}")
        return scale_heap_sample(count, size, self.rate)


def scale_heap_sample(count: int, size: int, rate: int) -> tuple[int, int]:
    """(objects, bytes) of a heap record estimated from its sampled values, as pprof's legacy parser does:
    divided by the probability `1 - exp(-average size / rate)` that an object of that size is sampled,
    truncated to integers. A rate of 1 or less means every allocation was recorded (no scaling)."""
    if count == 0 or size == 0:
        return 0, 0
    if rate <= 1:
        return count, size
    sampled = 1 - math.exp(-(size / count) / rate)
    if sampled <= 0:  # an average size so small against the rate that 1 - exp() rounds to 0
        sampled = -math.expm1(-(size / count) / rate)
    scale = 1 / sampled
    return int(count * scale), int(size * scale)


class _ContentionReader(_Reader):
    """`--- mutex:` / `--- contention:`, `key=value` lines, then `<cycles> <count> @ 0x...` records.

    Values per record: (delay ns, contentions).
    """

    def __init__(self, header_no: int) -> None:
        super().__init__(header_no)
        self.cycles_per_second = 0
        self.sampling_period = 1

    def attribute(self, line: str, lineno: int) -> bool:
        key, eq, value = line.partition("=")
        if not eq:
            return False
        key, value = key.strip(), value.strip()
        if key in ("format", "resolution"):  # what gperftools writes; Go never does
            raise _foreign(lineno, line, "a gperftools contention profile")
        if key not in _GO_CONTENTION_KEYS:
            raise _bad(lineno, line, f"unknown attribute {key!r}")
        number = _int(value, lineno, line, key)
        if key == "cycles/second":
            self.cycles_per_second = number
        elif key == "sampling period":
            self.sampling_period = number
        return True

    def values(self, left: str, lineno: int, line: str) -> tuple[int, ...] | None:
        parts = left.split()
        if len(parts) != 2:
            return None
        if self.cycles_per_second <= 0:
            raise _bad(lineno, line, "no 'cycles/second=' line before the first record (delays cannot be converted)")
        cycles = _int(parts[0], lineno, line, "cycles")
        count = _int(parts[1], lineno, line, "count")
        # As runtime/pprof writes the protobuf: int64(float64(cycles) / cpuGHz).
        return int(cycles / (self.cycles_per_second / 1e9)), count


class _CountReader(_Reader):
    """`<name> profile: total N`, then `<count> @ 0x...` records. Values per record: (goroutines,)."""

    def __init__(self, header: str, header_no: int) -> None:
        super().__init__(header_no)
        self.header = header
        self.total = int(header.rpartition(" ")[2])

    def values(self, left: str, lineno: int, line: str) -> tuple[int, ...] | None:
        text = left.strip()
        if not _is_count(text):
            return None
        return (int(text),)

    def read(self, lines: Iterator[tuple[int, str]], limits: DecodeLimits) -> list[_Record]:
        records = super().read(lines, limits)
        counted = sum(r.values[0] for r in records)
        if counted != self.total:
            raise _bad(self.header_no, self.header, f"the header says {self.total} but the records add up to {counted}")
        return records


# ----------------------------------------------------------------------------------------------------
# Summarising: the same attribution as the pprof decoder


@dataclass(slots=True)
class _Site:
    """One allocation site being summed: its totals, the largest bucket, and where it is."""

    value: float
    count: float
    best: int
    file: str
    line: int
    leaf: str


def _user_frame(frames: Sequence[Frame]) -> Frame | None:
    """The frame a human would change; for stacks of runtime and library frames only, the innermost one
    outside the runtime and the `sync` primitives (the lock's user), else the leaf; None for an empty stack."""
    for frame in frames:
        if not is_system_frame(frame[0], frame[1]):
            return frame
    for frame in frames:
        if not is_primitive_frame(frame[0]):
            return frame
    return frames[0] if frames else None


def _wait_state(frames: Sequence[Frame]) -> tuple[str, str]:
    """(wait state, blocking frame) from the visible frames; the blocking frame is the innermost one
    outside the runtime and its `*.runtime_*` shims, as for the protobuf form."""
    state = ""
    for function, _file, _line in frames:
        for prefix, name in _VISIBLE_WAIT_STATES:
            if function.startswith(prefix):
                state = name
                break
        if not is_runtime_frame(function) and ".runtime_" not in function:
            return state, function
    return state, ""


def _summarise(
    kind: ProfileKind,
    records: list[_Record],
    reader: _Reader,
    limits: DecodeLimits,
    time_nanos: int,
    alloc_cumulative: bool,
) -> ProfileSummary:
    goroutines = kind in (ProfileKind.GOROUTINE, ProfileKind.GOROUTINELEAK)
    sites: dict[str, _Site] = {}
    groups: dict[GroupKey, int] = {}
    total = 0.0
    total_count = 0.0
    cumulative = 0
    for record in records:
        value = record.values[0]
        count = record.values[1] if len(record.values) > 1 else value
        if kind is ProfileKind.HEAP:
            cumulative += record.values[2]
        elif not goroutines:
            cumulative += count
        if value == 0:
            continue
        total += value
        total_count += count
        user = _user_frame(record.frames)
        if user is None:  # an empty stack: counted in the total, under "(other)"
            continue
        site = sites.get(user[0])
        if site is None:
            sites[user[0]] = _Site(float(value), float(count), value, user[1], user[2], record.frames[0][0])
        else:
            site.value += value
            site.count += count
            if value > site.best:
                site.best, site.file, site.line, site.leaf = value, user[1], user[2], record.frames[0][0]
        if goroutines:
            state, blocking = _wait_state(record.frames)
            key = (state, blocking, user[0], user[1], user[2])
            groups[key] = groups.get(key, 0) + value

    ranked = sorted(sites.items(), key=lambda item: (-item[1].value, item[0]))[: limits.top_sites]
    kept = tuple(
        SiteValue(function=name, file=s.file, line=s.line, value=s.value, count=s.count, leaf=s.leaf)
        for name, s in ranked
    )
    kept_groups = top_groups(groups, limits.top_groups, leaked=kind is ProfileKind.GOROUTINELEAK)
    has_cumulative = kind in (ProfileKind.MUTEX, ProfileKind.BLOCK) or (kind is ProfileKind.HEAP and alloc_cumulative)
    return ProfileSummary(
        kind=kind,
        time_nanos=time_nanos,
        total=total,
        total_count=total_count,
        cumulative=float(cumulative) if has_cumulative else None,
        sites=kept,
        other=total - sum(s.value for s in kept),
        groups=kept_groups,
        labels={},
        source_format=SOURCE_FORMAT,
        sample_period=reader.sample_period,
    )
