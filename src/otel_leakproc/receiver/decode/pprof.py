"""pprof (`perftools.profiles.Profile`) -> `ProfileSummary`.

Pure functions: bytes in, a compact summary out. The summary keeps what the detectors need and no more:
totals, the top-K attributed sites (named by the frame a human would change) and, for goroutine
profiles, goroutine groups. Every index is checked against its table, every count against the limits,
so a hostile profile produces an `InvalidProfileError`, never an exception from deep inside.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import starmap
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from otel_leakproc.errors import InvalidProfileError, RejectReason
from otel_leakproc.model import GoroutineGroup, ProfileKind, ProfileSummary, SiteValue
from otel_leakproc.receiver.decode.frames import is_runtime_frame, is_system_frame
from otel_leakproc.receiver.decode.gzip_bound import inflate_body
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.proto import profile_pb2

# Appended after each sample for the sample-by-sample path's value parse: field 2 (`value`), unpacked,
# holding a value no profiler writes; see `_attribute_slow`.
_SENTINEL = -(2**63) + 0x5EB
_SEPARATOR = b"\x10" + bytes(
    (((_SENTINEL & (2**64 - 1)) >> (7 * k)) & 0x7F) | (0x80 if k < 9 else 0) for k in range(10)
)

# Profiles with at least this many samples are read through the vectorised path (see `_scan_samples`).
FAST_PATH_MIN_SAMPLES = 1024

# Labels a summary keeps from the profile-level label set supplied by the receiver.
KEPT_LABELS = ("__session_id__",)

_Frame = tuple[str, str, int]  # function, file, line
IntArray = npt.NDArray[Any]  # int64 or uint64
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
    return _summarize_checked(profile, raw, limits, kind_hint, time_fallback_nanos, labels, alloc_cumulative)


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
    return _summarize_checked(profile, None, limits, kind_hint, time_fallback_nanos, labels, alloc_cumulative)


def _summarize_checked(
    profile: profile_pb2.Profile | profile_pb2.ProfileLazySamples,
    raw: bytes | None,
    limits: DecodeLimits,
    kind_hint: ProfileKind | None,
    time_fallback_nanos: int | None,
    labels: Mapping[str, str] | None,
    alloc_cumulative: bool,
) -> ProfileSummary:
    """`_summarize`, with the errors of samples (read late) reported as a bad protobuf."""
    try:
        return _summarize(profile, raw, limits, kind_hint, time_fallback_nanos, labels, alloc_cumulative)
    except DecodeError as exc:  # samples stay raw bytes until read, so their errors surface here
        raise InvalidProfileError(
            f"profile.sample: not a valid pprof Sample message ({exc})", RejectReason.BAD_PROTOBUF
        ) from exc


def _summarize(
    profile: profile_pb2.Profile | profile_pb2.ProfileLazySamples,
    raw: bytes | None,
    limits: DecodeLimits,
    kind_hint: ProfileKind | None = None,
    time_fallback_nanos: int | None = None,
    labels: Mapping[str, str] | None = None,
    alloc_cumulative: bool = True,
) -> ProfileSummary:
    if isinstance(profile, profile_pb2.Profile):  # e.g. converted from OTLP: same wire format
        raw = profile.SerializeToString()
        profile = profile_pb2.ProfileLazySamples.FromString(raw)
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
    goroutine_kind = kind in (ProfileKind.GOROUTINE, ProfileKind.GOROUTINELEAK)
    raw_samples = profile.sample
    n_types = len(types)
    columns = (value_index, count_index, cumulative_index)
    # Small profiles (what most services push) are cheaper sample by sample than through numpy's fixed costs.
    parts = None if goroutine_kind or len(raw_samples) < FAST_PATH_MIN_SAMPLES else _raw_parts(profile, raw)
    fast = None if parts is None else _scan_samples(parts[0], len(raw_samples), n_types)
    group_acc: dict[tuple[str, str, str, str, int], int] = {}
    attributed = None
    if fast is not None and parts is not None:
        attributed = _attribute_fast(fast, columns, profile, parts[1:], resolver, limits.top_sites)
    if attributed is not None:
        sites, total, total_count, cumulative = attributed
    else:  # also where the fast path found something to report: this path names it precisely
        sites, total, total_count, cumulative = _attribute_slow(
            raw_samples, n_types, columns, resolver, group_acc if goroutine_kind else None
        )

    ranked = sorted(sites.items(), key=lambda item: (-item[1].value, item[0]))[: limits.top_sites]
    kept = tuple(
        SiteValue(
            function=name,
            file=acc.file,
            line=acc.line,
            value=acc.value,
            count=acc.count,
            leaf=acc.leaf_name if acc.leaf_name is not None else location(acc.leaf_location, _WHERE)[0][0],
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


def _attribute_slow(
    raw_samples: Sequence[bytes],
    n_types: int,
    columns: tuple[int, int, int],
    resolver: _Resolver,
    group_acc: dict[tuple[str, str, str, str, int], int] | None,
) -> tuple[dict[str, _SiteAcc], float, float, float]:
    """Sample by sample: goroutine profiles (wait states need whole stacks) and unusual encodings."""
    value_index, count_index, cumulative_index = columns
    location = resolver.location
    sites: dict[str, _SiteAcc] = {}
    user_cache: dict[int, _Frame | None] = {}
    total = 0.0
    total_count = 0.0
    cumulative = 0.0

    # Read every sample's values in one C-level parse: concatenated Sample messages parse as one
    # message whose repeated `value` holds all values in order. A separator after each sample (one
    # more `value`, the sentinel) shows where each sample's values end, so counts that cancel out in
    # the total cannot shift the columns. Python objects are then built only for samples with a nonzero
    # value (most heap samples are allocation-only, with zero in-use).
    separated = _SEPARATOR.join(raw_samples) + _SEPARATOR if raw_samples else b""
    merged = profile_pb2.SampleValuesOnly.FromString(separated)
    n_samples = len(raw_samples)
    stride = n_types + 1
    all_values = merged.value[:]
    if (
        len(all_values) != n_samples * stride
        or all_values.count(_SENTINEL) != n_samples  # a sample holding the sentinel itself: check each
        or all_values[n_types::stride].count(_SENTINEL) != n_samples  # each separator where expected
    ):
        _check_value_counts(raw_samples, n_types)
        if len(all_values) != n_samples * stride:
            _raise_bad_value_count(raw_samples, n_types)
    value_column = all_values[value_index::stride]
    count_column = value_column if count_index == value_index else all_values[count_index::stride]
    if cumulative_index >= 0:
        cumulative = float(sum(all_values[cumulative_index::stride]))
    parse_sample = profile_pb2.Sample.FromString

    for i, value in enumerate(value_column):
        if value == 0:
            continue
        count = count_column[i]
        total += value
        total_count += count
        loc_ids = parse_sample(raw_samples[i]).location_id
        if not loc_ids:
            # Go writes these (a goroutine caught with no stack, e.g. between creation and its first run):
            # the value counts in the total, under "(other)", since there is no site to name.
            continue
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
        if group_acc is not None:
            state, blocking = _wait_state(loc_ids, resolver)
            gkey = (state, blocking, user[0], user[1], user[2])
            group_acc[gkey] = group_acc.get(gkey, 0) + int(value)
    return sites, total, total_count, cumulative


# -- the fast path: samples and tables read with numpy, in byte space ------------------------------------
#
# A Sample holds only varint-encoded data (packed uint64 location ids, packed int64 values, Label
# messages of int64 fields). The fast path reads, at arrays of byte positions (one per sample), only the
# varints it needs: each sample's two packed fields (values and locations, in either order), its labels
# skipped over, its values, then its location ids one stack level at a time for the samples still without
# a user frame. Locations and functions are read the same way from their encoded bytes, so no Python
# object is built per sample, location or line. Anything unusual (unpacked fields, other layouts, value
# counts that do not match, bad references) returns None and the sample-by-sample path handles it, with
# its precise error messages.

_TAG_LOCATIONS = 0x0A  # field 1, length-delimited (packed)
_TAG_VALUES = 0x12  # field 2, length-delimited (packed)
_TAG_LABEL = 0x1A  # field 3, length-delimited
_TAG_LOCATION = 0x22  # Profile.location (4), Location.line (4)
_TAG_FUNCTION = 0x2A  # Profile.function (5)
_MAX_LABEL_ROUNDS = 64  # labels per sample the fast path walks before giving up
_MAX_FIELD_ROUNDS = 256  # fields per location/line/function message the fast path walks before giving up
_MAX_LENGTH = 1 << 40  # a larger length field is corrupt (and would overflow the position arithmetic)
_U7 = np.uint64(7)


def _raw_parts_class() -> Any:
    """A message reading a Profile's samples (2), locations (4) and functions (5) as raw bytes (nothing
    else kept)."""
    bytes_type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
    repeated = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    file = descriptor_pb2.FileDescriptorProto(name="otel_leakproc_pprof_parts.proto", package="otel_leakproc")
    message = file.message_type.add(name="RawParts")
    message.field.add(name="sample", number=2, type=bytes_type, label=repeated)
    message.field.add(name="location", number=4, type=bytes_type, label=repeated)
    message.field.add(name="function", number=5, type=bytes_type, label=repeated)
    pool = descriptor_pool.DescriptorPool()  # private: nothing else sees this type
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("otel_leakproc.RawParts"))


_RawParts = _raw_parts_class()


def _raw_parts(profile: profile_pb2.ProfileLazySamples, raw: bytes | None) -> tuple[bytes, int, int] | None:
    """(the profile's samples, locations and functions re-serialised by protobuf, so each kind comes back
    to back (writers interleave them), with canonical framing and no Python object per item; the number
    of locations; of functions)."""
    if raw is None:
        raw = profile.SerializeToString()
    try:
        parts = _RawParts.FromString(raw)
    except DecodeError:
        return None
    parts.DiscardUnknownFields()
    return parts.SerializeToString(), len(parts.location), len(parts.function)


def _read_varints(data: npt.NDArray[np.uint8], pos: IntArray) -> tuple[IntArray, IntArray] | None:
    """The varints starting at byte positions `pos`: (values as uint64, position after each), or None if
    one is wider than 64 bits. `data` must end with a byte below 0x80, so every read stays inside it."""
    byte = data[pos]
    values = (byte & 0x7F).astype(np.uint64)
    after = pos + 1
    more = np.flatnonzero(byte >= 0x80)
    for k in range(1, 10):  # byte k of the varints still going, on the few that are this wide
        if not len(more):
            return values, after
        byte = data[after[more]]
        values[more] |= (byte & 0x7F).astype(np.uint64) << np.uint64(7 * k)
        after[more] += 1
        if k == 9 and bool((byte > 1).any()):
            return None  # a tenth byte above 1 (or an eleventh byte): wider than 64 bits
        more = more[byte >= 0x80]
    return values, after


def _well_formed(data: npt.NDArray[np.uint8]) -> bool:
    """`data` is a run of varints of at most 64 bits each (what a stream of Samples must be)."""
    if len(data) == 0 or data[-1] >= 0x80:
        return False
    going = data >= 0x80
    # Usually no varint is 10 bytes wide: no 9 continuation bytes in a row, seen on the bits as an integer.
    bits = int.from_bytes(np.packbits(going).tobytes(), "big")
    runs_of = bits & (bits >> 1)  # bit i: bits i..i+1 set; then i..i+3, i..i+7, i..i+8
    runs_of &= runs_of >> 2
    runs_of &= runs_of >> 4
    if not runs_of & (bits >> 8):
        return True
    runs = going[:-1] & going[1:]  # runs[i]: bytes i..i+1 both continue; then i..i+3, then i..i+7
    for width in (2, 4):
        runs = runs[:-width] & runs[width:]
    nine = np.flatnonzero(runs[:-1] & going[8:]) if len(runs) > 1 else np.zeros(0, dtype=np.int64)
    return not len(nine) or bool((data[nine + 9] <= 1).all())  # a varint's tenth byte holds one bit


def _field(data: npt.NDArray[np.uint8], at: IntArray, end: IntArray) -> tuple[IntArray, IntArray, IntArray] | None:
    """(tag, body start, body end) of the length-delimited fields starting at `at`, each ending by `end`.

    Tags are read as one byte (the Sample fields the fast path reads have one-byte tags; a longer tag is
    left to the sample-by-sample path)."""
    tag = data[at]
    if bool((tag >= 0x80).any()) or not bool((at + 1 < end).all()):
        return None
    length = _read_varints(data, at + 1)
    if length is None or bool((length[0] > np.uint64(_MAX_LENGTH)).any()):
        return None
    body_start = length[1]
    body_end = body_start + length[0].astype(np.int64)
    if bool((body_end > end).any()):
        return None
    return tag, body_start, body_end


class _Scan:
    """Where each sample's location ids sit in the concatenated sample bytes, and its values."""

    __slots__ = ("data", "loc_end", "loc_start", "sample_end", "sample_start", "tables_at", "values")

    def __init__(
        self,
        data: npt.NDArray[np.uint8],
        loc_start: IntArray,
        loc_end: IntArray,
        values: IntArray,
        sample_start: IntArray,
        sample_end: IntArray,
        tables_at: int,
    ) -> None:
        self.data = data  # every sample, as a Profile.sample field, back to back
        self.loc_start = loc_start  # byte position of each sample's first (leaf) location id
        self.loc_end = loc_end  # end of each sample's packed location ids (at least one id each)
        self.values = values  # int64, one row per sample type, one column per sample
        self.sample_start = sample_start  # where each sample's message starts in `data`
        self.sample_end = sample_end
        self.tables_at = tables_at  # where the locations and functions follow the samples in `data`

    def sample(self, i: int) -> bytes:
        """The encoded Sample message `i`."""
        return self.data[self.sample_start[i] : self.sample_end[i]].tobytes()


def _scan_samples(region: bytes, n: int, n_types: int) -> _Scan | None:
    """Where each of the `n` samples in `region` (Profile.sample fields, back to back, then the tables)
    keeps its location ids, and its values; None when anything is unusual."""
    data = np.frombuffer(region, dtype=np.uint8)
    if n == 0 or n_types == 0 or not _well_formed(data):
        return None
    framed = _frame(data, n)
    if framed is None:
        return None
    start, end = framed
    tables_at = int(end[-1])
    if tables_at < len(data) and data[tables_at] not in (_TAG_LOCATION, _TAG_FUNCTION):
        return None
    if not bool((end > start).all()):
        return None
    # Locations and values come in either order (runtime/pprof writes values first, re-encoders of the
    # generated classes locations first), then the labels.
    first = _field(data, start, end)
    if first is None:
        return None
    locations_first = first[0] == _TAG_LOCATIONS
    if not bool((locations_first | (first[0] == _TAG_VALUES)).all()) or not bool((first[2] < end).all()):
        return None
    second = _field(data, first[2], end)
    if second is None or not bool((second[0] == np.where(locations_first, _TAG_VALUES, _TAG_LOCATIONS)).all()):
        return None
    loc_start = np.where(locations_first, first[1], second[1])
    loc_end = np.where(locations_first, first[2], second[2])
    # At least one location id each, the last one ending with the field (so ids never run past it).
    if not bool((loc_end > loc_start).all()) or not bool((data[loc_end - 1] < 0x80).all()):
        return None
    val_end = np.where(locations_first, second[2], first[2])
    values = _read_values(data, np.where(locations_first, second[1], first[1]), val_end, n_types)
    if values is None or not bool((values[1] == val_end).all()):
        return None  # not exactly one value per sample type
    if not _skip_labels(data, second[2], end):
        return None
    return _Scan(data, loc_start, loc_end, values[0], start, end, tables_at)


def _frame(data: npt.NDArray[np.uint8], n: int) -> tuple[IntArray, IntArray] | None:
    """(start, end) of the message in each of the `n` length-delimited fields 2 at the start of `data`,
    back to back.

    A field starts at a 0x12 byte that starts a varint, with a length of one or two bytes, followed by
    what a Sample the fast path reads starts with (its locations or its values). Such a pattern is also
    found inside samples, now and then, so the fields are the chain of candidates from the first one, each
    reaching the next through its length: usually every candidate, else found by pointer doubling. `data`
    must be a stream of varints.
    """
    size = len(data)
    if size < 4 or data[0] != _TAG_VALUES:
        return None
    cand = np.flatnonzero(data[: size - 2] == _TAG_VALUES)  # with room for a length and a body
    starts = data[cand - 1] < 0x80  # starts a varint (the first byte does: data[-1] ends one)
    one = data[cand + 1] < 0x80  # a one-byte length, else two bytes
    body = cand + 3 - one
    first = data[np.minimum(body, size - 1)]  # what the body starts with: locations or values
    length_ok = one | (data[cand + 2] < 0x80)
    cand = cand[starts & length_ok & (body < size) & ((first == _TAG_LOCATIONS) | (first == _TAG_VALUES))]
    if not len(cand) or cand[0] != 0:
        return None
    length = _read_varints(data, cand + 1)
    if length is None:
        return None
    body = length[1]
    after = np.minimum(body + np.minimum(length[0], np.uint64(size)).astype(np.int64), size + 1)
    k = len(cand)
    if k >= n and bool((after[: n - 1] == cand[1:n]).all()):
        return body[:n], after[:n]  # the usual case: the first n candidates are the fields
    # Else most extra candidates reach neither another candidate nor a table field: without them, the
    # first n candidates may chain (checked as above, so what they are does not matter).
    at = np.searchsorted(cand, after).clip(0, k - 1)
    reach = np.minimum(after, size - 1)
    keep = (cand[at] == after) | (after == size) | (data[reach] == _TAG_LOCATION) | (data[reach] == _TAG_FUNCTION)
    kept = np.flatnonzero(keep)
    if len(kept) >= n and kept[0] == 0 and bool((after[kept[: n - 1]] == cand[kept[1:n]]).all()):
        return body[kept[:n]], after[kept[:n]]
    slot = np.full(size + 2, k + 1, dtype=np.int32)  # candidate starting at each byte; k: the end; k + 1: none
    slot[cand] = np.arange(k, dtype=np.int32)
    slot[size] = k
    succ = slot[after]  # where each candidate's field ends
    jump = np.append(succ, np.array([k, k + 1], dtype=np.int32))  # the end and a dead end stay put
    chain = np.zeros(1, dtype=np.int32)
    while len(chain) < n:  # chain[i]: the candidate i steps from the first; steps doubled each round
        step = jump[chain]
        chain = np.concatenate((chain, step))
        if bool((step >= k).any()):
            break
        jump = jump[jump]
    if len(chain) < n or bool((chain[:n] >= k).any()):
        return None
    return body[chain[:n]], after[chain[:n]]


def _read_values(
    data: npt.NDArray[np.uint8], at: IntArray, end: IntArray, n_types: int
) -> tuple[IntArray, IntArray] | None:
    """`n_types` consecutive varints from each position: (int64 values, one row per type; end position)."""
    rows = np.empty((n_types, len(at)), dtype=np.uint64)
    for k in range(n_types):
        read = None if bool((at >= end).any()) else _read_varints(data, at)
        if read is None:
            return None
        rows[k], at = read
    return rows.view(np.int64), at


def _skip_labels(data: npt.NDArray[np.uint8], cursor: IntArray, end: IntArray) -> bool:
    """Whether what follows each sample's two packed fields is only Label fields filling it exactly."""
    for _ in range(_MAX_LABEL_ROUNDS):
        open_ = np.flatnonzero(cursor < end)
        if not len(open_):
            return True
        label = _field(data, cursor[open_], end[open_])
        # A label's last byte ends a varint, as everything in a Sample does.
        if label is None or not bool((label[0] == _TAG_LABEL).all()) or not bool((data[label[2] - 1] < 0x80).all()):
            return False
        cursor, end = label[2], end[open_]
    return False


class _Fields:
    """The varint fields of a run of messages, grouped by message, in order."""

    __slots__ = ("number", "owner", "value")

    def __init__(self, owner: IntArray, number: IntArray, value: IntArray) -> None:
        self.owner = owner  # index of the message holding each field (nondecreasing)
        self.number = number  # field number
        self.value = value  # uint64

    def columns(self, n: int, width: int) -> IntArray:
        """Fields 1..width-1 of each message as a (n, width) uint64 array (absent: 0; the last one wins).

        One scatter when no message holds one of these fields twice (what every writer does, in whatever
        field order); otherwise one `last` per field."""
        picked = np.flatnonzero(self.number < width)
        key = self.owner[picked] * width + self.number[picked]
        seen = np.full(n * width, -1, dtype=np.int64)
        order = np.arange(len(key))
        seen[key] = order
        if bool((seen[key] == order).all()):  # a repeated field would lose a write here
            out = np.zeros(n * width, dtype=np.uint64)
            out[key] = self.value[picked]
            return out.reshape(n, width)
        return np.stack([self.last(k, n) for k in range(width)], axis=1)

    def last(self, number: int, n: int) -> IntArray:
        """Each message's field `number` (the last one wins, as in protobuf; absent: 0), as uint64."""
        picked = np.flatnonzero(self.number == number)
        owners = self.owner[picked]
        last = picked[np.append(owners[1:] != owners[:-1], True)] if len(picked) else picked
        out = np.zeros(n, dtype=np.uint64)
        out[self.owner[last]] = self.value[last]
        return out


def _tokens(data: npt.NDArray[np.uint8]) -> tuple[IntArray, IntArray] | None:
    """Every varint of `data` (which must end with a byte below 0x80): (values, start byte of each)."""
    last = np.flatnonzero(data < 0x80)
    first = np.empty_like(last)
    first[0] = 0
    np.add(last[:-1], 1, out=first[1:])
    extra = last - first  # bytes before the last one
    top = int(extra.max())
    if top >= 9 and (top > 9 or bool((data[last[extra == 9]] > 1).any())):
        return None  # wider than 64 bits
    values = data[last].astype(np.uint64)  # the last byte of a varint holds its highest 7 bits
    if top:
        wide = np.flatnonzero(extra)
        at = last[wide]
        for k in range(1, top + 1):  # Horner over the lower bytes of the few wider varints
            if k > 1:
                keep = extra[wide] >= k
                wide, at = wide[keep], at[keep]
            values[wide] = (values[wide] << _U7) | (data[at - k] & 0x7F)
    return values, first


def _table_fields(
    region: npt.NDArray[np.uint8], n_locs: int, n_fns: int
) -> tuple[_Fields, _Fields, _Fields, IntArray] | None:
    """The varint fields of each location, of each function and of each line, and the location holding
    each line, from `region`: Profile.location and Profile.function fields, back to back.

    Locations, lines and functions hold only varints, so the region is a stream of (tag, value) varint
    pairs (a length-delimited field's tag and length are a pair too, its body more pairs), read in one
    pass with no walk per field: a pair is top level when it starts past every body opened before it,
    and inside a line when it starts before the end of a line opened before it. Anything else (other
    wire types, a top-level field that is not a location or function, a length-delimited field in a
    function or a line, bodies not made of whole pairs) returns None.
    """
    data = np.concatenate((region, np.zeros(1, dtype=np.uint8)))  # the zero: every varint ends inside
    size = len(region)
    tokens = _tokens(data)
    if tokens is None:
        return None
    values, first = tokens
    if len(values) % 2 == 0:  # the padding is the last token: the rest must pair up
        return None
    tag, value, pos = values[0:-1:2], values[1::2], first[0:-1:2]
    pair_end = first[2::2]  # where each pair ends (the next pair, or the padding)
    n_pairs = len(pos)
    wire = tag & np.uint64(7)
    is_open = wire == 2
    if not bool((is_open | (wire == 0)).all()):
        return None
    opens = np.flatnonzero(is_open)
    if bool((value[opens] > np.uint64(_MAX_LENGTH)).any()):
        return None
    body_end = pair_end[opens] + value[opens].astype(np.int64)
    pair_at = np.full(len(data), -1, dtype=np.int32)  # the pair starting at each byte (-1: none)
    pair_at[pos] = np.arange(n_pairs, dtype=np.int32)
    pair_at[size] = n_pairs  # the padding
    if bool((body_end > size).any()) or bool((pair_at[body_end] < 0).any()):
        return None  # a body not made of whole pairs
    # Top level: past every body opened before (each open's index in `opens`: how many opened before it).
    opened_before = np.cumsum(is_open) - is_open
    top = pos >= np.concatenate(([0], np.maximum.accumulate(body_end)))[opened_before]
    top_at = np.flatnonzero(top)
    top_tag = tag[top_at]
    is_loc = top_tag == _TAG_LOCATION
    if not bool(is_open[top_at].all()) or not bool((is_loc | (top_tag == _TAG_FUNCTION)).all()):
        return None
    top_end = body_end[opened_before[top_at]]
    if int(top_end[-1]) != size or not bool((pos[top_at[1:]] == top_end[:-1]).all()):
        return None
    if int(is_loc.sum()) != n_locs or len(top_at) != n_locs + n_fns:
        return None
    # Each pair's top-level message, as a location or function index (the tables come in their order).
    message = np.cumsum(top) - 1
    in_loc = is_loc[message]
    rank = np.where(is_loc, np.cumsum(is_loc) - 1, np.cumsum(~is_loc) - 1)[message]
    # Lines: the opens below the top level, only in locations, each ending inside its location.
    nested = is_open & ~top
    line_at = np.flatnonzero(nested)
    if not bool(in_loc[line_at].all()) or not bool((tag[line_at] == _TAG_LOCATION).all()):
        return None
    line_end = body_end[opened_before[line_at]]
    if not bool((line_end <= top_end[message[line_at]]).all()):
        return None
    lines_before = np.cumsum(nested) - nested
    inner = pos < np.concatenate(([0], np.maximum.accumulate(line_end)))[lines_before]
    if bool((inner & is_open).any()):
        return None  # a length-delimited field in a line
    fields = ~top & ~nested & ~inner
    loc_at = np.flatnonzero(fields & in_loc)
    fn_at = np.flatnonzero(fields & ~in_loc)
    inner_at = np.flatnonzero(inner)
    number = (tag >> np.uint64(3)).astype(np.int64)
    return (
        _Fields(rank[loc_at], number[loc_at], value[loc_at]),
        _Fields(rank[fn_at], number[fn_at], value[fn_at]),
        _Fields(lines_before[inner_at] - 1, number[inner_at], value[inner_at]),
        rank[line_at],
    )


def _lookup(ids: IntArray, wanted: IntArray) -> IntArray:
    """Table index of each wanted id as `_Resolver` finds it (`table[id - 1]` first, else the last entry
    with that id), or -1 where `_Resolver` would raise (absent, or its id map meets a zero id)."""
    index = wanted.astype(np.int64) - 1
    direct = (index >= 0) & (index < len(ids))
    direct[direct] = ids[index[direct]] == wanted[direct]
    if bool(direct.all()):
        return index
    other = np.flatnonzero(~direct)
    index[other] = -1
    if len(ids) and not bool((ids == 0).any()):
        order = np.argsort(ids, kind="stable")  # equal ids in table order: the last one is found
        at = np.searchsorted(ids[order], wanted[other], side="right") - 1
        found = (at >= 0) & (ids[order[at.clip(0)]] == wanted[other])
        index[other[found]] = order[at[found]]
    return index


class _Tables:
    """Each location's user frame (the first line not in a system frame) as a (name, file) key and a line,
    and the key naming its leaf frame (its first line, or its address when it has no lines).

    `user_key` is -1 for locations made only of system frames and -2 for locations `_Resolver` would reject.
    When location ids are small numbers (Go numbers them 1..N), `key_by_id`, `line_by_id` and
    `leaf_by_id` hold the same per location id (-3: no such location), so a walk reads them in one gather.
    """

    __slots__ = ("ids", "key_by_id", "leaf_by_id", "leaf_key", "line_by_id", "pairs", "user_key", "user_line")

    def __init__(
        self,
        ids: IntArray,
        pairs: dict[tuple[str, str], int],
        user_key: IntArray,
        user_line: IntArray,
        leaf_key: IntArray,
    ) -> None:
        self.ids = ids  # location id of each table entry
        self.pairs = pairs  # (function name, file) -> key
        self.user_key = user_key
        self.user_line = user_line
        self.leaf_key = leaf_key
        self.key_by_id: IntArray | None = None
        self.line_by_id: IntArray | None = None
        self.leaf_by_id: IntArray | None = None
        top = int(ids.max()) if len(ids) else 0
        if top == len(ids) and bool((ids == np.arange(1, top + 1, dtype=np.uint64)).all()):  # Go: 1..N
            self.key_by_id = np.concatenate(([-3], user_key, [-3]))
            self.line_by_id = np.concatenate(([0], user_line, [0]))
            self.leaf_by_id = np.concatenate(([-3], leaf_key, [-3]))
        elif top <= 4 * len(ids) + 64:  # dense enough for tables indexed by id (the last entry: any larger id)
            index = np.append(_lookup(ids, np.arange(top + 1, dtype=np.uint64)), -1)
            self.key_by_id = np.append(user_key, -3)[index]
            self.line_by_id = np.append(user_line, 0)[index]
            self.leaf_by_id = np.append(leaf_key, -3)[index]

    def user(self, wanted: IntArray) -> tuple[IntArray, IntArray]:
        """(user key, user line) of each wanted location id; key -3 where `_Resolver` would raise."""
        if self.key_by_id is not None and self.line_by_id is not None:
            at = np.minimum(wanted, np.uint64(len(self.key_by_id) - 1))
            return self.key_by_id[at], self.line_by_id[at]
        index = _lookup(self.ids, wanted)
        return np.append(self.user_key, -3)[index], np.append(self.user_line, 0)[index]

    def leaf(self, wanted: IntArray) -> IntArray:
        """The leaf frame's key of each wanted location id (-3 where `_Resolver` would raise)."""
        if self.leaf_by_id is not None:
            return self.leaf_by_id[np.minimum(wanted, np.uint64(len(self.leaf_by_id) - 1))]
        return np.append(self.leaf_key, -3)[_lookup(self.ids, wanted)]


def _tables(
    profile: profile_pb2.ProfileLazySamples, region: npt.NDArray[np.uint8], n_locs: int, n_fns: int
) -> _Tables | None:
    parsed = _table_fields(region, n_locs, n_fns) if len(region) else None
    if parsed is None:
        return None
    locs, fns, lines, line_owner = parsed
    loc_cols = locs.columns(n_locs, 4)
    fn_cols = fns.columns(n_fns, 5)
    line_cols = lines.columns(len(line_owner), 3)
    n_lines = len(line_owner)
    strings = list(profile.string_table)
    # Functions: `_Resolver` rejects one whose name or file is not a string index.
    names, files = fn_cols[:, 2].view(np.int64), fn_cols[:, 4].view(np.int64)
    fn_ok = (names >= 0) & (names < len(strings)) & (files >= 0) & (files < len(strings))
    pairs: dict[tuple[str, str], int] = {}
    fn_key = np.full(n_fns, -1, dtype=np.int64)
    if bool(fn_ok.all()):
        fn_key[:] = [
            pairs.setdefault((strings[n], strings[f]), len(pairs))
            for n, f in zip(names.tolist(), files.tolist(), strict=True)
        ]
    else:
        ok = np.flatnonzero(fn_ok)
        fn_key[ok] = [
            pairs.setdefault((strings[n], strings[f]), len(pairs))
            for n, f in zip(names[ok].tolist(), files[ok].tolist(), strict=True)
        ]
    # Lines: the key of their function (-1 when the reference is bad) and whether it is a system frame.
    line_fn = _lookup(fn_cols[:, 1], line_cols[:, 1])
    line_key = np.append(fn_key, -1)[line_fn]
    system = np.fromiter(starmap(is_system_frame, pairs), dtype=bool, count=len(pairs))
    line_user = ~np.append(system, True)[line_key]
    # Locations: the first user line; a location with a bad line is rejected even when not reached.
    user = np.flatnonzero(line_user)
    owners = line_owner[user]
    first = user[np.insert(owners[1:] != owners[:-1], 0, True)] if len(user) else user
    user_key = np.full(n_locs, -1, dtype=np.int64)
    user_line = np.zeros(n_locs, dtype=np.int64)
    user_key[line_owner[first]] = line_key[first]
    user_line[line_owner[first]] = line_cols[:, 2].view(np.int64)[first]
    user_key[line_owner[line_key < 0]] = -2
    # The leaf frame: each location's first line.
    leaf_key = np.full(n_locs, -3, dtype=np.int64)
    if n_lines:
        starts = np.flatnonzero(np.insert(line_owner[1:] != line_owner[:-1], 0, True))
        leaf_key[line_owner[starts]] = line_key[starts]
    no_lines = np.flatnonzero(np.bincount(line_owner, minlength=n_locs) == 0)
    addresses = loc_cols[:, 3][no_lines].tolist()
    for i, address in zip(no_lines.tolist(), addresses, strict=True):  # unsymbolised: named by address
        name = f"0x{address:x}"
        key = pairs.setdefault((name, ""), len(pairs))
        user_key[i] = -1 if is_system_frame(name, "") else key
        leaf_key[i] = key
    return _Tables(loc_cols[:, 1].copy(), pairs, user_key, user_line, leaf_key)


def _attribute_fast(
    scan: _Scan,
    columns: tuple[int, int, int],
    profile: profile_pb2.ProfileLazySamples,
    table_sizes: tuple[int, int],
    resolver: _Resolver,
    top: int,
) -> tuple[dict[str, _SiteAcc], float, float, float] | None:
    """Charge every nonzero sample to its user frame, as the sample-by-sample path does; None to leave
    the profile to it (bad references, odd table encodings). Only sites that can rank in the `top` are
    returned (all those tied with the last one included), which is all the summary keeps."""
    value_index, count_index, cumulative_index = columns
    values = scan.values[value_index]
    counts = scan.values[count_index]
    cumulative = _exact_sum(scan.values[cumulative_index]) if cumulative_index >= 0 else 0.0
    nonzero = np.flatnonzero(values)
    nz_values = values[nonzero]
    nz_counts = counts[nonzero]
    if not len(nonzero):
        return {}, 0.0, 0.0, cumulative
    tables = _tables(profile, scan.data[scan.tables_at :], *table_sizes)
    walked = None if tables is None else _walk(scan, nonzero, tables)
    if tables is None or walked is None:
        return None
    leaves, keys, lines = walked
    pairs = tables.pairs
    for i in np.flatnonzero(keys < 0).tolist():  # only runtime/library frames: rare, in Python
        sample = profile_pb2.Sample.FromString(scan.sample(int(nonzero[i])))
        frame = _fallback_frame(sample.location_id, resolver)
        keys[i] = pairs.setdefault(frame[:2], len(pairs))
        lines[i] = frame[2]
    names = list(pairs)
    sites = _sites(nz_values, nz_counts, keys, lines, leaves, names, top)
    if sites:  # leaf frames named from the tables (each leaf was read, so its location is valid)
        accs = list(sites.values())
        leaf_keys = tables.leaf(np.array([acc.leaf_location for acc in accs], dtype=np.uint64)).tolist()
        for acc, key in zip(accs, leaf_keys, strict=True):
            if key >= 0:
                acc.leaf_name = names[key][0]
    return sites, _exact_sum(nz_values), _exact_sum(nz_counts), cumulative


def _walk(scan: _Scan, samples: IntArray, tables: _Tables) -> tuple[IntArray, IntArray, IntArray] | None:
    """(leaf location id, user frame key (-1: none), user frame line) of each of `samples`.

    Stacks are walked one level at a time from the leaf for all samples at once; at each level only the
    samples still without a user frame read their next location id (most resolve in a few levels).
    """
    pos = scan.loc_start[samples]
    end = scan.loc_end[samples]
    read = _read_varints(scan.data, pos)
    if read is None:
        return None
    leaves, pos = read
    keys, lines = tables.user(leaves)
    if bool((keys < -1).any()):
        return None  # a bad reference (or a location `_Resolver` rejects): the sample-by-sample path names it
    pending = np.flatnonzero((keys < 0) & (pos < end))
    while len(pending):
        read = _read_varints(scan.data, pos[pending])
        if read is None:
            return None
        ids, pos[pending] = read
        key, line = tables.user(ids)
        if bool((key < -1).any()):
            return None
        found = key >= 0
        keys[pending[found]] = key[found]
        lines[pending[found]] = line[found]
        pending = pending[~found]
        pending = pending[pos[pending] < end[pending]]
    return leaves, keys, lines


def _sites(
    values: IntArray,
    counts: IntArray,
    keys: IntArray,
    lines: IntArray,
    leaves: IntArray,
    pairs: list[tuple[str, str]],
    top: int,
) -> dict[str, _SiteAcc]:
    """Sites are functions: frames of one function (other lines, even other files) share a site, whose
    file and line follow its largest sample (the first of equal ones), as the sample-by-sample path does."""
    names: dict[str, int] = {}
    site_of_key = np.array([names.setdefault(name, len(names)) for name, _file in pairs], dtype=np.int64)
    site_of_sample = site_of_key[keys]
    n_sites = len(names)
    site_values = np.bincount(site_of_sample, weights=values, minlength=n_sites)
    site_counts = np.bincount(site_of_sample, weights=counts, minlength=n_sites)
    # By site, then sample order (a radix sort when the site numbers fit in 16 bits).
    order = np.argsort(site_of_sample.astype(np.uint16) if n_sites <= 1 << 16 else site_of_sample, kind="stable")
    ordered_sites = site_of_sample[order]
    ordered_values = values[order]
    starts = np.flatnonzero(np.insert(ordered_sites[1:] != ordered_sites[:-1], 0, True))
    peaks = np.maximum.reduceat(ordered_values, starts)
    at_peak = np.flatnonzero(ordered_values == np.repeat(peaks, np.diff(np.append(starts, len(order)))))
    best = order[at_peak[np.searchsorted(at_peak, starts)]]  # first largest sample of each site
    site_names = list(names)
    sites: dict[str, _SiteAcc] = {}
    present = ordered_sites[starts]  # the sites with samples (names of every function got a number)
    ranked = np.flatnonzero(site_values[present] >= _top_threshold(site_values[present], top))
    for site, sample in zip(present[ranked].tolist(), best[ranked].tolist(), strict=True):
        name, file = pairs[int(keys[sample])]
        acc = _SiteAcc((name, file, int(lines[sample])), int(values[sample]), 0, int(leaves[sample]))
        acc.value = float(site_values[site])
        acc.count = float(site_counts[site])
        sites[site_names[site]] = acc
    return sites


def _top_threshold(values: npt.NDArray[Any], top: int) -> float:
    """The `top`-th largest of `values` (-inf when there are no more than `top`; +inf when `top` is 0)."""
    if len(values) <= top:
        return -np.inf
    if top <= 0:
        return np.inf
    return float(-np.partition(-values, top - 1)[top - 1])


def _exact_sum(values: IntArray) -> float:
    """The sum as the sample-by-sample path computes it (float accumulation), exactly and fast when the
    sum cannot round (every partial sum below 2**53); otherwise the same sequential float sum."""
    if len(values) == 0:
        return 0.0
    bound = max(-int(values.min()), int(values.max())) * len(values)
    if bound < 2**53:
        return float(values.sum())
    return sum(values.tolist(), 0.0)


def _check_value_counts(raw_samples: Sequence[bytes], n_types: int) -> None:
    parse = profile_pb2.SampleValuesOnly.FromString
    for i, raw in enumerate(raw_samples):
        have = len(parse(raw).value)
        if have != n_types:
            raise InvalidProfileError(
                f"profile.sample[{i}].value: {have} values for {n_types} sample types", RejectReason.BAD_VALUES
            )


def _raise_bad_value_count(raw_samples: Sequence[bytes], n_types: int) -> None:
    _check_value_counts(raw_samples, n_types)
    raise InvalidProfileError("profile.sample: value count does not match the sample types", RejectReason.BAD_VALUES)


def _goroutine_type(types: Sequence[str]) -> str:
    return "goroutine" if "goroutine" in types else "goroutines"


class _SiteAcc:
    """Running totals of one attributed function; file/line/leaf follow its largest sample."""

    __slots__ = ("best", "count", "file", "leaf_location", "leaf_name", "line", "value")

    def __init__(self, frame: _Frame, value: int, count: int, leaf_location: int) -> None:
        self.value = float(value)
        self.count = float(count)
        self.best = value
        self.file = frame[1]
        self.line = frame[2]
        self.leaf_location = leaf_location
        self.leaf_name: str | None = None  # the leaf location's first function, when already known

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
        "_named",
        "_strings",
        "frames",
        "n_locations",
    )

    def __init__(self, profile: profile_pb2.ProfileLazySamples) -> None:
        self._strings = profile.string_table
        self._functions = profile.function
        self._locations = profile.location
        self._n_functions = len(profile.function)
        self._n_locations = len(profile.location)
        self.n_locations = self._n_locations
        self._fn_map: dict[int, int] | None = None
        self._loc_map: dict[int, int] | None = None
        self.frames: dict[int, tuple[_Frame, ...]] = {}
        self._named: dict[int, tuple[str, str]] = {}  # function id -> (name, file)

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
        named = self._named
        out = []
        for j, line in enumerate(loc.line):
            fn_id = line.function_id
            name_file = named.get(fn_id)
            if name_file is None:
                name_file = named[fn_id] = self._function(fn_id, index, j, 0)[:2]
            out.append((name_file[0], name_file[1], line.line))
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
