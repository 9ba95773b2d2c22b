"""pprof (`perftools.profiles.Profile`) -> `ProfileSummary`.

Pure functions: bytes in, a compact summary out. The summary keeps what the detectors need and no more:
totals, the top-K attributed sites (named by the frame a human would change) and, for goroutine
profiles, goroutine groups. Every index is checked against its table, every count against the limits,
so a hostile profile produces an `InvalidProfileError`, never an exception from deep inside.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
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
    goroutine_kind = kind in (ProfileKind.GOROUTINE, ProfileKind.GOROUTINELEAK)
    raw_samples = profile.sample
    n_types = len(types)
    columns = (value_index, count_index, cumulative_index)
    # Small profiles (what most services push) are cheaper sample by sample than through numpy's fixed costs.
    fast = None if goroutine_kind or len(raw_samples) < FAST_PATH_MIN_SAMPLES else _scan_samples(raw_samples, n_types)
    group_acc: dict[tuple[str, str, str, str, int], int] = {}
    if fast is not None:
        sites, total, total_count, cumulative = _attribute_fast(fast, columns, resolver)
    else:
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


# -- the fast path: every sample's fields read at once with numpy ---------------------------------------
#
# A Sample holds only varint-encoded data (packed uint64 location ids, packed int64 values, Label
# messages of int64 fields), so the concatenation of all samples is one stream of varints. Decoding that
# stream with numpy and checking each sample's layout (field 1, then field 2, then field-3 labels, which
# is what Go and every pprof writer we know of emit) gives every location id and value without a Python
# object per sample. Anything else (unpacked fields, other orders, truncated varints, value counts that
# do not match) returns None and the sample-by-sample path handles it, with its precise error messages.

_TAG_LOCATIONS = 0x0A  # field 1, length-delimited (packed)
_TAG_VALUES = 0x12  # field 2, length-delimited (packed)
_TAG_LABEL = 0x1A  # field 3, length-delimited
_MAX_LABEL_ROUNDS = 64  # labels per sample the fast path walks before giving up


class _Scan:
    """Where each sample's location ids and values sit in the decoded varint stream."""

    __slots__ = ("loc_count", "loc_start", "tokens", "val_start")

    def __init__(self, tokens: IntArray, loc_start: IntArray, loc_count: IntArray, val_start: IntArray) -> None:
        self.tokens = tokens  # every varint of every sample, as uint64
        self.loc_start = loc_start  # token index of each sample's first (leaf) location id
        self.loc_count = loc_count  # location ids per sample (>= 1)
        self.val_start = val_start  # token index of each sample's first value


def _varints(data: npt.NDArray[np.uint8]) -> tuple[IntArray, IntArray] | None:
    """All varints of `data`: (values as uint64, tokens ending before each byte offset), or None if malformed.

    The second array has one entry per byte offset 0..len(data): the index of the varint that starts
    there (when one does), so byte offsets map to token indices without a search.
    """
    if len(data) == 0 or data[-1] & 0x80:
        return None
    # Indices in int32 where they fit: this path's peak memory is a few arrays as long as the samples.
    index_type = np.int32 if len(data) < 2**31 - 1 else np.int64
    is_end = data < 0x80
    tokens_before = np.zeros(len(data) + 1, dtype=index_type)
    np.cumsum(is_end, out=tokens_before[1:])
    last = np.flatnonzero(is_end).astype(index_type, copy=False)
    del is_end
    widths = np.empty_like(last)
    widths[0] = last[0] + 1
    np.subtract(last[1:], last[:-1], out=widths[1:])
    longest = int(widths.max())
    if longest > 10 or (longest == 10 and bool((data[last[widths == 10]] > 1).any())):
        return None  # wider than 64 bits
    values = data[last].astype(np.uint64)  # the last byte of a varint holds its highest 7 bits
    wide = np.flatnonzero(widths > 1)
    seven = np.uint64(7)
    for k in range(1, longest):  # Horner over the lower bytes of the few wider varints
        if k > 1:
            wide = wide[widths[wide] > k]
        values[wide] = (values[wide] << seven) | (data[last[wide] - k] & 0x7F).astype(np.uint64)
    return values, tokens_before


def _scan_samples(raw_samples: Sequence[bytes], n_types: int) -> _Scan | None:
    n = len(raw_samples)
    if n == 0 or n_types == 0:
        return None
    data = np.frombuffer(b"".join(raw_samples), dtype=np.uint8)
    decoded = _varints(data)
    if decoded is None:
        return None
    tokens, tokens_before = decoded
    n_tokens = len(tokens)
    lengths = np.fromiter(map(len, raw_samples), dtype=np.int64, count=n)
    if not lengths.all():
        return None
    sample_end = np.cumsum(lengths)
    cursor = sample_end - lengths

    def aligned(at: IntArray) -> bool:
        """Every byte offset in `at` starts a varint (or is the end of the data)."""
        inner = at[at > 0]
        return bool((data[inner - 1] < 0x80).all())

    def field(cursor: IntArray, tag: IntArray | int, sample_end: IntArray) -> tuple[IntArray, IntArray] | None:
        """(first body token, body end byte) of a length-delimited field `tag` starting at `cursor`."""
        if not aligned(cursor):
            return None
        t = tokens_before[cursor].astype(np.int64)
        if bool((t + 1 >= n_tokens).any()) or not bool((tokens[t] == tag).all()):
            return None
        length = tokens[t + 1]
        if bool((length > np.uint64(1 << 40)).any()):
            return None
        length = length.astype(np.int64)
        body_start = cursor + 1 + np.where(length < 128, 1, np.where(length < 16384, 2, 0))
        if bool((body_start == cursor + 1).any()):  # three-byte lengths: not worth a fast path
            return None
        body_end = body_start + length
        if bool((body_end > sample_end).any()):
            return None
        return t + 2, body_end

    def tokens_until(start: IntArray, end_byte: IntArray) -> IntArray | None:
        """Token count from `start` to the token boundary at `end_byte` (None when not on a boundary)."""
        if not aligned(end_byte):
            return None
        counts: IntArray = tokens_before[end_byte].astype(np.int64) - start
        return counts

    # Locations and values come in either order (runtime/pprof writes values first, re-encoders of the
    # generated classes locations first), then the labels.
    locations_first = data[cursor] == _TAG_LOCATIONS
    one = field(cursor, np.where(locations_first, _TAG_LOCATIONS, _TAG_VALUES), sample_end)
    if one is None:
        return None
    one_start, cursor = one
    one_count = tokens_until(one_start, cursor)
    two = field(cursor, np.where(locations_first, _TAG_VALUES, _TAG_LOCATIONS), sample_end)
    if one_count is None or two is None:
        return None
    two_start, cursor = two
    two_count = tokens_until(two_start, cursor)
    if two_count is None:
        return None
    loc_start = np.where(locations_first, one_start, two_start)
    loc_count = np.where(locations_first, one_count, two_count)
    val_start = np.where(locations_first, two_start, one_start)
    val_count = np.where(locations_first, two_count, one_count)
    if not bool((loc_count > 0).all()) or not bool((val_count == n_types).all()):
        return None
    for _ in range(_MAX_LABEL_ROUNDS):  # labels: skip them, but only over a well-formed layout
        open_ = cursor < sample_end
        if not open_.any():
            return _Scan(tokens, loc_start, loc_count, val_start)
        label = field(cursor[open_], _TAG_LABEL, sample_end[open_])
        if label is None:
            return None
        cursor = cursor.copy()
        cursor[open_] = label[1]
    return None


def _attribute_fast(
    scan: _Scan, columns: tuple[int, int, int], resolver: _Resolver
) -> tuple[dict[str, _SiteAcc], float, float, float]:
    """Charge every nonzero sample to its user frame, resolving each distinct location once.

    Stacks are walked level by level from the leaf for all samples at once: at each level only the
    samples still without a user frame take part, and only their distinct location ids are resolved.
    """
    value_index, count_index, cumulative_index = columns
    tokens = scan.tokens
    values = tokens[scan.val_start + value_index].view(np.int64)
    counts = tokens[scan.val_start + count_index].view(np.int64)
    cumulative = 0.0
    if cumulative_index >= 0:
        cumulative = _exact_sum(tokens[scan.val_start + cumulative_index].view(np.int64))
    nonzero = np.flatnonzero(values)
    nz_values = values[nonzero]
    nz_counts = counts[nonzero]
    total = _exact_sum(nz_values)
    total_count = _exact_sum(nz_counts)
    loc_start = scan.loc_start[nonzero]
    loc_count = scan.loc_count[nonzero]
    leaves = tokens[loc_start]

    frames: list[_Frame] = []  # distinct user frames
    frame_index: dict[_Frame, int] = {}
    # location id -> index into frames; -1: no user frame; -2: not resolved yet. Go numbers locations
    # 1..N, so a dense table; sparse or huge ids (other writers) use a dict through np.unique.
    max_id = int(tokens[loc_start].max()) if len(loc_start) else 0
    dense = max_id <= 4 * resolver.n_locations + 1024
    user_table = np.full(max_id + 1 if dense else 0, -2, dtype=np.int64)
    user_map: dict[int, int] = {}

    def resolve(loc_id: int) -> int:
        for frame in resolver.location(loc_id, _WHERE):
            if not is_system_frame(frame[0], frame[1]):
                user = frame_index.get(frame, -1)
                if user < 0:
                    user = frame_index[frame] = len(frames)
                    frames.append(frame)
                return user
        return -1

    frame_of_sample = np.full(len(nonzero), -1, dtype=np.int64)
    pending = np.arange(len(nonzero))
    level = 0
    while len(pending):
        pending = pending[loc_count[pending] > level]
        if not len(pending):
            break
        ids = tokens[loc_start[pending] + level]
        if dense and int(ids.max()) <= max_id:
            hit = user_table[ids]
            new = np.unique(ids[hit == -2])
            if len(new):
                user_table[new] = [resolve(loc_id) for loc_id in new.tolist()]
                hit = user_table[ids]
        else:
            distinct, inverse = np.unique(ids, return_inverse=True)
            found = [user_map.get(i) for i in distinct.tolist()]
            for j, loc_id in enumerate(distinct.tolist()):
                if found[j] is None:
                    found[j] = user_map[loc_id] = resolve(loc_id)
            hit = np.array(found, dtype=np.int64)[inverse.reshape(-1)]
        frame_of_sample[pending[hit >= 0]] = hit[hit >= 0]
        pending = pending[hit < 0]
        level += 1
    for i in np.flatnonzero(frame_of_sample < 0).tolist():  # only runtime/library frames
        start = int(loc_start[i])
        frame = _fallback_frame(tokens[start : start + int(loc_count[i])].tolist(), resolver)
        user = frame_index.get(frame, -1)
        if user < 0:
            user = frame_index[frame] = len(frames)
            frames.append(frame)
        frame_of_sample[i] = user

    # Sites are functions: frames of one function (different lines) share a site, whose file and line
    # follow its largest sample (the first of equal ones), as the sample-by-sample path does.
    names: dict[str, int] = {}
    site_of_frame = np.array([names.setdefault(f[0], len(names)) for f in frames], dtype=np.int64)
    site_of_sample = site_of_frame[frame_of_sample] if frames else frame_of_sample
    n_sites = len(names)
    site_values = np.bincount(site_of_sample, weights=nz_values, minlength=n_sites)
    site_counts = np.bincount(site_of_sample, weights=nz_counts, minlength=n_sites)
    order = np.argsort(site_of_sample, kind="stable")  # by site, then sample order
    ordered_sites = site_of_sample[order]
    ordered_values = nz_values[order]
    starts = np.flatnonzero(np.r_[True, ordered_sites[1:] != ordered_sites[:-1]])
    peaks = np.maximum.reduceat(ordered_values, starts)
    at_peak = np.flatnonzero(ordered_values == np.repeat(peaks, np.diff(np.r_[starts, len(order)])))
    first_at_peak = at_peak[np.searchsorted(at_peak, starts)]  # first largest sample of each site
    best = order[first_at_peak]
    sites: dict[str, _SiteAcc] = {}
    site_names = list(names)
    for site, sample in zip(ordered_sites[starts].tolist(), best.tolist(), strict=True):
        acc = _SiteAcc(frames[int(frame_of_sample[sample])], int(nz_values[sample]), 0, int(leaves[sample]))
        acc.value = float(site_values[site])
        acc.count = float(site_counts[site])
        sites[site_names[site]] = acc
    return sites, total, total_count, cumulative


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
