"""pprof (`perftools.profiles.Profile`) -> `ProfileSummary`.

Pure functions: bytes in, a compact summary out. The summary keeps what the detectors need and no more:
totals, the top-K attributed sites (named by the frame a human would change) and, for goroutine
profiles, goroutine groups. Every index is checked against its table, every count against the limits,
so a hostile profile produces an `InvalidProfileError`, never an exception from deep inside.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from google.protobuf.message import DecodeError

from otel_leakproc.errors import InvalidProfileError, RejectReason
from otel_leakproc.model import GoroutineGroup, ProfileKind, ProfileSummary, SiteValue
from otel_leakproc.receiver.decode.frames import is_runtime_frame, is_system_frame
from otel_leakproc.receiver.decode.gzip_bound import inflate_body
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.proto import profile_pb2

# Labels a summary keeps from the profile-level label set supplied by the receiver.
KEPT_LABELS = ("__session_id__",)

_Frame = tuple[str, str, int]  # function, file, line
_WHERE = "profile.sample.location_id"

# Runtime/sync frames that tell the wait state of a parked goroutine in a proto goroutine profile
# (the text dump prints it; the proto form only has the stack). Checked from the leaf outwards.
_WAIT_STATES: tuple[tuple[str, str], ...] = (
    ("runtime.chanrecv", "chan receive"),
    ("runtime.chansend", "chan send"),
    ("runtime.selectgo", "select"),
    ("runtime.block", "select (no cases)"),
    ("sync.(*WaitGroup).Wait", "sync.WaitGroup.Wait"),
    ("sync.(*Cond).Wait", "sync.Cond.Wait"),
    ("sync.(*RWMutex).RLock", "sync.RWMutex.RLock"),
    ("sync.(*RWMutex).Lock", "sync.RWMutex.Lock"),
    ("sync.(*Mutex).Lock", "sync.Mutex.Lock"),
    ("sync.runtime_Semacquire", "semacquire"),
    ("runtime.semacquire", "semacquire"),
    ("internal/poll.runtime_pollWait", "IO wait"),
    ("runtime.netpollblock", "IO wait"),
    ("time.Sleep", "sleep"),
    ("runtime.timeSleep", "sleep"),
)


def decode_pprof(
    data: bytes,
    limits: DecodeLimits,
    *,
    kind_hint: ProfileKind | None = None,
    time_fallback_nanos: int | None = None,
    labels: Mapping[str, str] | None = None,
    alloc_cumulative: bool = True,
) -> ProfileSummary:
    """Decode pprof bytes (gzipped or raw) into a summary.

    Raises:
        InvalidProfileError: corrupt gzip, invalid protobuf, bad references, limits exceeded.
    """
    raw = inflate_body(data, limits.max_decompressed_bytes)
    profile = parse_pprof(raw)
    return summarize_pprof(
        profile,
        limits,
        kind_hint=kind_hint,
        time_fallback_nanos=time_fallback_nanos,
        labels=labels,
        alloc_cumulative=alloc_cumulative,
    )


def parse_pprof(raw: bytes) -> profile_pb2.ProfileLazySamples:
    """Parse uncompressed pprof protobuf bytes (samples stay raw until needed)."""
    profile = profile_pb2.ProfileLazySamples()
    try:
        profile.ParseFromString(raw)
    except DecodeError as exc:
        raise InvalidProfileError(f"profile: not a valid pprof protobuf ({exc})", RejectReason.BAD_PROTOBUF) from exc
    return profile


def _check_counts(profile: profile_pb2.ProfileLazySamples, limits: DecodeLimits) -> None:
    for name, have, limit in (
        ("sample", len(profile.sample), limits.max_samples),
        ("location", len(profile.location), limits.max_locations),
        ("function", len(profile.function), limits.max_functions),
        ("string_table", len(profile.string_table), limits.max_strings),
    ):
        if have > limit:
            raise InvalidProfileError(
                f"profile.{name}: {have} entries exceed the limit of {limit}", RejectReason.TOO_MANY_ITEMS
            )


def _string(strings: Sequence[str], index: int, where: str) -> str:
    if 0 <= index < len(strings):
        return strings[index]
    raise InvalidProfileError(
        f"{where}: string index {index} out of range (string_table has {len(strings)} entries)",
        RejectReason.BAD_REFERENCE,
    )


def sample_type_names(profile: profile_pb2.ProfileLazySamples) -> list[str]:
    strings = profile.string_table
    return [_string(strings, vt.type, f"profile.sample_type[{i}].type") for i, vt in enumerate(profile.sample_type)]


def classify(
    profile: profile_pb2.ProfileLazySamples, types: Sequence[str], kind_hint: ProfileKind | None
) -> ProfileKind:
    """Which detector family a profile belongs to, from its sample types (and a hint for mutex/block)."""
    if "inuse_space" in types:
        return ProfileKind.HEAP
    if "goroutineleak" in types:
        return ProfileKind.GOROUTINELEAK
    if "goroutine" in types or "goroutines" in types:
        return ProfileKind.GOROUTINE
    if "delay" in types and "contentions" in types:
        if kind_hint in (ProfileKind.MUTEX, ProfileKind.BLOCK):
            return kind_hint
        return _mutex_or_block(profile)
    shown = ", ".join(types) or "none"
    raise InvalidProfileError(
        f"profile.sample_type: [{shown}] is not a heap, goroutine, goroutineleak, mutex or block profile",
        RejectReason.UNSUPPORTED,
    )


def _mutex_or_block(profile: profile_pb2.ProfileLazySamples) -> ProfileKind:
    """Mutex and block profiles share sample types; a mutex profile charges delay to the unlocker."""
    strings = profile.string_table
    functions = {f.id: f.name for f in profile.function}
    leaf_names: dict[int, str] = {}
    for loc in profile.location:
        if loc.line:
            index = functions.get(loc.line[0].function_id, 0)
            leaf_names[loc.id] = strings[index] if 0 <= index < len(strings) else ""
    for raw in profile.sample:
        loc_ids = profile_pb2.Sample.FromString(raw).location_id
        if loc_ids:
            leaf = leaf_names.get(loc_ids[0], "")
            if "Unlock" in leaf or leaf.endswith(".unlock"):
                return ProfileKind.MUTEX
    return ProfileKind.BLOCK


def summarize_pprof(
    profile: profile_pb2.Profile | profile_pb2.ProfileLazySamples,
    limits: DecodeLimits,
    *,
    kind_hint: ProfileKind | None = None,
    time_fallback_nanos: int | None = None,
    labels: Mapping[str, str] | None = None,
    alloc_cumulative: bool = True,
) -> ProfileSummary:
    """Summarise a parsed pprof profile.

    Args:
        profile: the parsed message.
        limits: bounds and top-K sizes.
        kind_hint: the kind the sender declared (only decides mutex vs block, which share sample types).
        time_fallback_nanos: used when the profile has no `time_nanos`.
        labels: series labels from the upload; `__session_id__` is kept for restart detection.
        alloc_cumulative: False when the sender makes `alloc_*` per-interval deltas (godeltaprof,
            pyroscope-io); then alloc totals cannot reveal restarts.

    Raises:
        InvalidProfileError: on any inconsistency, naming the field.
    """
    try:
        return _summarize(profile, limits, kind_hint, time_fallback_nanos, labels, alloc_cumulative)
    except DecodeError as exc:  # samples stay raw bytes until read, so their errors surface here
        raise InvalidProfileError(
            f"profile.sample: not a valid pprof Sample message ({exc})", RejectReason.BAD_PROTOBUF
        ) from exc


def _summarize(
    profile: profile_pb2.Profile | profile_pb2.ProfileLazySamples,
    limits: DecodeLimits,
    kind_hint: ProfileKind | None = None,
    time_fallback_nanos: int | None = None,
    labels: Mapping[str, str] | None = None,
    alloc_cumulative: bool = True,
) -> ProfileSummary:
    if isinstance(profile, profile_pb2.Profile):  # e.g. converted from OTLP: same wire format
        profile = profile_pb2.ProfileLazySamples.FromString(profile.SerializeToString())
    _check_counts(profile, limits)
    strings = profile.string_table
    if strings and strings[0] != "":
        raise InvalidProfileError("profile.string_table[0]: must be the empty string", RejectReason.BAD_REFERENCE)
    types = sample_type_names(profile)
    kind = classify(profile, types, kind_hint)
    time_nanos = profile.time_nanos or time_fallback_nanos or 0
    if time_nanos <= 0:
        raise InvalidProfileError("profile.time_nanos: missing and no upload time given", RejectReason.BAD_VALUES)

    if kind is ProfileKind.HEAP:
        value_index = types.index("inuse_space")
        count_index = types.index("inuse_objects") if "inuse_objects" in types else value_index
        cumulative_index = types.index("alloc_objects") if "alloc_objects" in types else -1
    elif kind in (ProfileKind.MUTEX, ProfileKind.BLOCK):
        value_index = types.index("delay")
        count_index = types.index("contentions")
        cumulative_index = count_index
    else:
        value_index = types.index("goroutineleak" if kind is ProfileKind.GOROUTINELEAK else _goroutine_type(types))
        count_index = value_index
        cumulative_index = -1

    resolver = _Resolver(profile)
    location = resolver.location
    n_types = len(types)
    sites: dict[str, _SiteAcc] = {}
    group_acc: dict[tuple[str, str, str, str, int], int] = {}
    user_cache: dict[int, _Frame | None] = {}
    total = 0.0
    total_count = 0.0
    cumulative = 0.0
    goroutine_kind = kind in (ProfileKind.GOROUTINE, ProfileKind.GOROUTINELEAK)

    # Read every sample's values in one C-level parse: concatenated Sample messages parse as one
    # message whose repeated `value` holds all values in order. Python objects are then built only for
    # samples with a nonzero value (most heap samples are allocation-only, with zero in-use).
    raw_samples = profile.sample
    merged = profile_pb2.SampleValuesOnly.FromString(b"".join(raw_samples))
    n_samples = len(raw_samples)
    if len(merged.value) != n_samples * n_types:
        _raise_bad_value_count(raw_samples, n_types)
    value_column = merged.value[value_index::n_types]
    count_column = value_column if count_index == value_index else merged.value[count_index::n_types]
    if cumulative_index >= 0:
        cumulative = float(sum(merged.value[cumulative_index::n_types]))
    parse_sample = profile_pb2.Sample.FromString

    for i, value in enumerate(value_column):
        if value == 0:
            continue
        count = count_column[i]
        total += value
        total_count += count
        loc_ids = parse_sample(raw_samples[i]).location_id
        if not loc_ids:
            raise InvalidProfileError(f"profile.sample[{i}].location_id: empty stack", RejectReason.BAD_REFERENCE)
        user: _Frame | None = None
        for loc_id in loc_ids:
            if loc_id in user_cache:
                user = user_cache[loc_id]
            else:
                user = None
                for frame in location(loc_id, _WHERE):
                    if not is_system_frame(frame[0], frame[1]):
                        user = frame
                        break
                user_cache[loc_id] = user
            if user is not None:
                break
        if user is None:  # only runtime/library frames: name the innermost non-runtime one, else the leaf
            user = _fallback_frame(loc_ids, resolver)
        acc = sites.get(user[0])
        if acc is None:
            sites[user[0]] = _SiteAcc(user, value, count, loc_ids[0])
        else:
            acc.add(user, value, count, loc_ids[0])
        if goroutine_kind:
            state, blocking = _wait_state(loc_ids, resolver)
            gkey = (state, blocking, user[0], user[1], user[2])
            group_acc[gkey] = group_acc.get(gkey, 0) + int(value)

    ranked = sorted(sites.items(), key=lambda item: (-item[1].value, item[0]))[: limits.top_sites]
    kept = tuple(
        SiteValue(
            function=name,
            file=acc.file,
            line=acc.line,
            value=acc.value,
            count=acc.count,
            leaf=location(acc.leaf_location, _WHERE)[0][0],
        )
        for name, acc in ranked
    )
    groups: tuple[GoroutineGroup, ...] = ()
    if goroutine_kind:
        leaked = kind is ProfileKind.GOROUTINELEAK
        groups = tuple(
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
            for (state, blocking, function, file, line), n in sorted(
                group_acc.items(), key=lambda item: (-item[1], item[0])
            )[: limits.top_groups]
        )
    kept_labels = {k: v for k, v in (labels or {}).items() if k in KEPT_LABELS}
    is_cumulative = cumulative_index >= 0 and (kind is not ProfileKind.HEAP or alloc_cumulative)
    return ProfileSummary(
        kind=kind,
        time_nanos=time_nanos,
        duration_nanos=profile.duration_nanos,
        total=total,
        total_count=total_count,
        cumulative=cumulative if is_cumulative and profile.duration_nanos == 0 else None,
        sites=kept,
        other=total - sum(s.value for s in kept),
        groups=groups,
        labels=kept_labels,
        source_format="pprof",
    )


def _raise_bad_value_count(raw_samples: Sequence[bytes], n_types: int) -> None:
    for i, raw in enumerate(raw_samples):
        have = len(profile_pb2.SampleValuesOnly.FromString(raw).value)
        if have != n_types:
            raise InvalidProfileError(
                f"profile.sample[{i}].value: {have} values for {n_types} sample types", RejectReason.BAD_VALUES
            )
    raise InvalidProfileError("profile.sample: value count does not match the sample types", RejectReason.BAD_VALUES)


def _goroutine_type(types: Sequence[str]) -> str:
    return "goroutine" if "goroutine" in types else "goroutines"


class _SiteAcc:
    """Running totals of one attributed function; file/line/leaf follow its largest sample."""

    __slots__ = ("best", "count", "file", "leaf_location", "line", "value")

    def __init__(self, frame: _Frame, value: int, count: int, leaf_location: int) -> None:
        self.value = float(value)
        self.count = float(count)
        self.best = value
        self.file = frame[1]
        self.line = frame[2]
        self.leaf_location = leaf_location

    def add(self, frame: _Frame, value: int, count: int, leaf_location: int) -> None:
        self.value += value
        self.count += count
        if value > self.best:
            self.best = value
            self.file = frame[1]
            self.line = frame[2]
            self.leaf_location = leaf_location


class _Resolver:
    """Resolves location ids to frames lazily, validating only what samples actually reference.

    Go numbers locations and functions 1..N in order, so `table[id - 1]` is tried before building an
    id map; resolving only referenced locations keeps summarising close to the cost of parsing.
    """

    __slots__ = (
        "_fn_map",
        "_functions",
        "_loc_map",
        "_locations",
        "_n_functions",
        "_n_locations",
        "_strings",
        "frames",
    )

    def __init__(self, profile: profile_pb2.ProfileLazySamples) -> None:
        self._strings = profile.string_table
        self._functions = profile.function
        self._locations = profile.location
        self._n_functions = len(profile.function)
        self._n_locations = len(profile.location)
        self._fn_map: dict[int, int] | None = None
        self._loc_map: dict[int, int] | None = None
        self.frames: dict[int, tuple[_Frame, ...]] = {}

    def location(self, loc_id: int, where: str) -> tuple[_Frame, ...]:
        frames = self.frames.get(loc_id)
        if frames is not None:
            return frames
        locations = self._locations
        index = loc_id - 1
        loc = locations[index] if 0 <= index < self._n_locations else None
        if loc is None or loc.id != loc_id:
            if self._loc_map is None:
                self._loc_map = _id_map((item.id for item in locations), "location")
            found = self._loc_map.get(loc_id)
            if found is None:
                raise InvalidProfileError(f"{where}: {loc_id} is not a location id", RejectReason.BAD_REFERENCE)
            index = found
            loc = locations[index]
        out = [self._function(line.function_id, index, j, line.line) for j, line in enumerate(loc.line)]
        if not out:  # unsymbolised: name it by address so it stays distinguishable
            out.append((f"0x{loc.address:x}", "", 0))
        frames = tuple(out)
        self.frames[loc_id] = frames
        return frames

    def _function(self, fn_id: int, loc_index: int, line_index: int, line: int) -> _Frame:
        functions = self._functions
        index = fn_id - 1
        fn = functions[index] if 0 <= index < self._n_functions else None
        if fn is None or fn.id != fn_id:
            if self._fn_map is None:
                self._fn_map = _id_map((item.id for item in functions), "function")
            found = self._fn_map.get(fn_id)
            if found is None:
                raise InvalidProfileError(
                    f"profile.location[{loc_index}].line[{line_index}].function_id: {fn_id} is not a function id",
                    RejectReason.BAD_REFERENCE,
                )
            index = found
            fn = functions[index]
        strings = self._strings
        name, filename = fn.name, fn.filename
        try:
            if name < 0 or filename < 0:
                raise IndexError
            return strings[name], strings[filename], line
        except IndexError:
            bad = filename if 0 <= name < len(strings) else name
            raise InvalidProfileError(
                f"profile.function[{index}]: string index {bad} out of range (string_table has {len(strings)} entries)",
                RejectReason.BAD_REFERENCE,
            ) from None


def _id_map(ids: Iterable[int], what: str) -> dict[int, int]:
    mapping: dict[int, int] = {}
    for i, item_id in enumerate(ids):
        if item_id == 0:
            raise InvalidProfileError(f"profile.{what}[{i}].id: must be nonzero", RejectReason.BAD_REFERENCE)
        mapping[item_id] = i
    return mapping


def _fallback_frame(loc_ids: Sequence[int], resolver: _Resolver) -> _Frame:
    """For stacks made only of runtime/library frames: the innermost frame outside the runtime."""
    first: _Frame | None = None
    for loc_id in loc_ids:
        for frame in resolver.location(loc_id, _WHERE):
            if first is None:
                first = frame
            if not is_runtime_frame(frame[0]):
                return frame
    return first if first is not None else ("(unknown)", "", 0)


def _wait_state(loc_ids: Sequence[int], resolver: _Resolver) -> tuple[str, str]:
    """(wait state, blocking frame) of a goroutine stack from a proto goroutine profile.

    The blocking frame is the innermost one outside the runtime and its `sync.runtime_*` shims; the state
    is the most specific wait primitive seen up to it (`sync.RWMutex.RLock` beats `semacquire`).
    """
    state = ""
    parked = False
    for loc_id in loc_ids:
        for function, _file, _line in resolver.location(loc_id, _WHERE):
            parked = parked or function.startswith("runtime.gopark")
            for prefix, name in _WAIT_STATES:
                if function.startswith(prefix):
                    state = name
                    break
            if not is_runtime_frame(function) and ".runtime_" not in function:
                return (state or ("" if parked else "running")), function
    return (state or ("" if parked else "running")), ""
