"""pprof (`perftools.profiles.Profile`) -> `ProfileSummary`.

Pure functions: bytes in, a compact summary out. The summary keeps what the detectors need and no more:
totals, the top-K attributed sites (named by the frame a human would change) and, for goroutine
profiles, goroutine groups. Every index is checked against its table, every count against the limits,
so a hostile profile produces an `InvalidProfileError`, never an exception from deep inside.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from google.protobuf.message import DecodeError

from otel_leakproc.errors import InvalidProfileError, RejectReason
from otel_leakproc.model import GoroutineGroup, ProfileKind, ProfileSummary, SiteValue
from otel_leakproc.receiver.decode import pprof_fast
from otel_leakproc.receiver.decode.frames import is_runtime_frame, is_system_frame
from otel_leakproc.receiver.decode.groups import GroupKey, top_groups
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.decode.pprof_sites import (
    WHERE,
    AnyProfile,
    Frame,
    Resolver,
    SiteAcc,
    Tables,
    TablesCache,
    fallback_frame,
)
from otel_leakproc.receiver.proto import profile_pb2

# Appended after each sample for the sample-by-sample path's value parse: field 2 (`value`), unpacked,
# holding a value no profiler writes; see `_attribute_slow`.
_SENTINEL = -(2**63) + 0x5EB
_SEPARATOR = b"\x10" + bytes(
    (((_SENTINEL & (2**64 - 1)) >> (7 * k)) & 0x7F) | (0x80 if k < 9 else 0) for k in range(10)
)

# Profiles with at least this many samples are read through the vectorised path (see `scan_samples`).
FAST_PATH_MIN_SAMPLES = 1024

# Small profiles (what `serve` decodes on its event loop) of at most this many bytes share what resolving
# their tables found with earlier uploads carrying the same tables (a process's profiles repeat them while
# its allocation sites stay the same): at most 1,024 table sets and about 16 MiB. An entry's memory, its key
# (the tables) and what was resolved, measured with tracemalloc: 14 KiB for a 4 KiB profile, 31 KiB for an
# 18 KiB one; it is counted as `_TABLES_ENTRY_BYTES` plus twice the profile's size, above both.
TABLES_CACHE_MAX_BYTES = 64 * 1024
_TABLES_ENTRY_BYTES = 12 * 1024
_TABLES = TablesCache(max_entries=1024, max_bytes=16 * 1024 * 1024)
# Sample types whose kind `classify` tells without reading the tables (mutex and block need them).
_KIND_FROM_TYPES = ("inuse_space", "goroutineleak", "goroutine", "goroutines")

# Labels a summary keeps from the profile-level label set supplied by the receiver.
KEPT_LABELS = ("__session_id__",)
# A profile can say which version of the program wrote it in a pprof comment, `service.version=<version>`
# (`go tool pprof` prints comments); it is kept as the summary label `service.version`.
VERSION_COMMENT = "service.version="
VERSION_LABEL = "service.version"
MAX_COMMENTS = 16  # comments looked at
MAX_VERSION_LENGTH = 256


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


def summarize_pprof_bytes(
    raw: bytes,
    limits: DecodeLimits,
    *,
    kind_hint: ProfileKind | None = None,
    time_fallback_nanos: int | None = None,
    labels: Mapping[str, str] | None = None,
    alloc_cumulative: bool = True,
) -> ProfileSummary:
    """Summarise uncompressed pprof protobuf bytes: the one pprof path every receiver and `analyze` take
    (through `decode_profile`, which inflates and sniffs first; OTLP original payloads come straight here).

    Large profiles are parsed once with locations and functions left as bytes, which the vectorised
    reader decodes from the profile's bytes (the `_wire` extension); small ones are parsed with the
    tables as messages for the sample-by-sample path. Arguments as for `summarize_pprof`.

    Raises:
        InvalidProfileError: invalid protobuf, bad references, limits exceeded.
    """
    if len(raw) <= TABLES_CACHE_MAX_BYTES:
        profile, tables = _parse_small(raw)
    else:
        profile, tables = _parse_parts(raw), None
    return _summarize_checked(profile, raw, limits, kind_hint, time_fallback_nanos, labels, alloc_cumulative, tables)


def _parse_small(
    raw: bytes,
) -> tuple[profile_pb2.ProfileLazyParts | profile_pb2.ProfileLazySamples, Tables | None]:
    """A small profile parsed once with locations and functions as bytes, and what earlier uploads with the
    same tables resolved; or, for tables not seen yet, parsed in full (which validates the location and
    function bytes: those of a cached entry parsed once already) with a new entry for them. One with enough
    samples for the vectorised path goes there, without an entry."""
    parts = _parse_parts(raw)
    if not isinstance(parts, profile_pb2.ProfileLazyParts) or len(parts.sample) >= FAST_PATH_MIN_SAMPLES:
        return parts, None
    key = (tuple(parts.location), tuple(parts.function), tuple(parts.string_table))
    tables = _TABLES.get(key)
    if tables is not None:
        return parts, tables
    profile = parse_pprof(raw)
    tables = Tables()
    _TABLES.put(key, tables, _TABLES_ENTRY_BYTES + 2 * len(raw))
    return profile, tables


def _parse_parts(raw: bytes) -> profile_pb2.ProfileLazyParts | profile_pb2.ProfileLazySamples:
    """Parse with locations and functions left as bytes (the vectorised path reads them from `raw` and
    validates them); `parse_pprof`'s error when the profile is invalid outside them."""
    profile = profile_pb2.ProfileLazyParts()
    try:
        profile.ParseFromString(raw)
    except DecodeError:
        return parse_pprof(raw)  # fails too (it parses more strictly), with its message
    return profile


def _parse_fully(raw: bytes | None) -> profile_pb2.ProfileLazySamples:
    """A `ProfileLazyParts`'s bytes `raw` parsed again with the tables as messages."""
    if raw is None:  # (a `ProfileLazyParts` only comes from `summarize_pprof_bytes`, with its bytes)
        raise ValueError("a ProfileLazyParts needs the bytes it was parsed from")
    return parse_pprof(raw)


def parse_pprof(raw: bytes) -> profile_pb2.ProfileLazySamples:
    """Parse uncompressed pprof protobuf bytes (samples stay raw until needed)."""
    profile = profile_pb2.ProfileLazySamples()
    try:
        profile.ParseFromString(raw)
    except DecodeError as exc:
        raise InvalidProfileError(f"profile: not a valid pprof protobuf ({exc})", RejectReason.BAD_PROTOBUF) from exc
    return profile


def _check_counts(profile: AnyProfile, limits: DecodeLimits) -> None:
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


def sample_type_names(profile: AnyProfile) -> list[str]:
    strings = profile.string_table
    return [_string(strings, vt.type, f"profile.sample_type[{i}].type") for i, vt in enumerate(profile.sample_type)]


def classify(profile: AnyProfile, types: Sequence[str], kind_hint: ProfileKind | None) -> ProfileKind:
    """Which detector family a profile belongs to, from its sample types (and a hint for mutex/block; without
    one, the tables tell: a `ProfileLazyParts`, whose tables are bytes, is parsed in full before)."""
    if "inuse_space" in types:
        return ProfileKind.HEAP
    if "goroutineleak" in types:
        return ProfileKind.GOROUTINELEAK
    if "goroutine" in types or "goroutines" in types:
        return ProfileKind.GOROUTINE
    if "delay" in types and "contentions" in types:
        if kind_hint in (ProfileKind.MUTEX, ProfileKind.BLOCK):
            return kind_hint
        if isinstance(profile, profile_pb2.ProfileLazyParts):  # (`_summarize` never passes one here)
            raise TypeError("classify: a mutex or block profile needs its tables parsed")
        return _mutex_or_block(profile)
    shown = ", ".join(types) or "none"
    what = " (a CPU profile)" if "cpu" in types else ""
    raise InvalidProfileError(
        f"profile.sample_type: [{shown}]{what} is not a heap, goroutine, goroutineleak, mutex or block profile",
        RejectReason.UNSUPPORTED,
    )


def _mutex_or_block(profile: profile_pb2.Profile | profile_pb2.ProfileLazySamples) -> ProfileKind:
    """Mutex and block profiles share sample types; a mutex profile charges delay to the unlocker."""
    strings = profile.string_table
    functions = {f.id: f.name for f in profile.function}
    leaf_names: dict[int, str] = {}
    for loc in profile.location:
        if loc.line:
            index = functions.get(loc.line[0].function_id, 0)
            leaf_names[loc.id] = strings[index] if 0 <= index < len(strings) else ""
    parse = profile_pb2.Sample.FromString
    for sample in profile.sample:
        loc_ids = sample.location_id if isinstance(sample, profile_pb2.Sample) else parse(sample).location_id
        if loc_ids:
            leaf = leaf_names.get(loc_ids[0], "")
            if "Unlock" in leaf or leaf.endswith(".unlock"):
                return ProfileKind.MUTEX
    return ProfileKind.BLOCK


def summarize_pprof(
    profile: profile_pb2.Profile,
    limits: DecodeLimits,
    *,
    kind_hint: ProfileKind | None = None,
    time_fallback_nanos: int | None = None,
    labels: Mapping[str, str] | None = None,
    alloc_cumulative: bool = True,
) -> ProfileSummary:
    """Summarise a parsed pprof profile: a `Profile` converted from OTLP, read from its messages as they
    are (never serialised to be parsed again). Bytes take `summarize_pprof_bytes`.

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
    profile: profile_pb2.Profile | profile_pb2.ProfileLazySamples | profile_pb2.ProfileLazyParts,
    raw: bytes | None,
    limits: DecodeLimits,
    kind_hint: ProfileKind | None,
    time_fallback_nanos: int | None,
    labels: Mapping[str, str] | None,
    alloc_cumulative: bool,
    tables: Tables | None = None,
) -> ProfileSummary:
    """`_summarize`, with the errors of samples (read late) reported as a bad protobuf."""
    try:
        try:
            return _summarize(profile, raw, limits, kind_hint, time_fallback_nanos, labels, alloc_cumulative, tables)
        except DecodeError as exc:  # samples stay raw bytes until read, so their errors surface here
            raise InvalidProfileError(
                f"profile.sample: not a valid pprof Sample message ({exc})", RejectReason.BAD_PROTOBUF
            ) from exc
    except Exception:
        if isinstance(profile, profile_pb2.ProfileLazyParts) and raw is not None:
            parse_pprof(raw)  # bad location or function bytes are the first thing a full parse reports
        raise


def _summarize(
    profile: profile_pb2.Profile | profile_pb2.ProfileLazySamples | profile_pb2.ProfileLazyParts,
    raw: bytes | None,
    limits: DecodeLimits,
    kind_hint: ProfileKind | None = None,
    time_fallback_nanos: int | None = None,
    labels: Mapping[str, str] | None = None,
    alloc_cumulative: bool = True,
    tables: Tables | None = None,
) -> ProfileSummary:
    """`tables`: set for a small profile, whose tables (parsed or as bytes) resolve through it."""
    _check_counts(profile, limits)
    strings = profile.string_table
    if strings and strings[0] != "":
        raise InvalidProfileError("profile.string_table[0]: must be the empty string", RejectReason.BAD_REFERENCE)
    types = sample_type_names(profile)
    if isinstance(profile, profile_pb2.ProfileLazyParts) and (
        not any(t in types for t in _KIND_FROM_TYPES)
        if tables is not None
        else len(profile.sample) < FAST_PATH_MIN_SAMPLES or "inuse_space" not in types
    ):  # large profiles: only heap ones take the vectorised path from it; small ones whose tables were
        # resolved before need them parsed only for `classify` of mutex and block profiles
        profile = _parse_fully(raw)
    # (what `classify` says of a large heap profile, without reading the tables; a small one's kind is told
    # by its sample types alone, see above)
    kind = (
        ProfileKind.HEAP
        if isinstance(profile, profile_pb2.ProfileLazyParts) and tables is None
        else classify(profile, types, kind_hint)
    )
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

    resolver = Resolver(profile, tables)
    location = resolver.location
    goroutine_kind = kind in (ProfileKind.GOROUTINE, ProfileKind.GOROUTINELEAK)
    n_samples = len(profile.sample)
    n_types = len(types)
    columns = (value_index, count_index, cumulative_index)
    # Small profiles (what most services push) are cheaper sample by sample than through numpy's fixed costs.
    # A `Profile` (converted from OTLP) has its samples as messages, read one by one with no bytes to scan.
    parts = (
        None
        if goroutine_kind
        or n_samples < FAST_PATH_MIN_SAMPLES
        or raw is None
        or isinstance(profile, profile_pb2.Profile)
        else pprof_fast.raw_parts(profile, raw)
    )
    fast = None if parts is None else pprof_fast.scan_samples(parts, n_samples, n_types)
    group_acc: dict[GroupKey, int] = {}
    attributed = None
    if fast is not None and parts is not None and not isinstance(profile, profile_pb2.Profile):
        attributed = pprof_fast.attribute_fast(fast, columns, profile, parts, limits.top_sites)
    if (
        isinstance(profile, profile_pb2.ProfileLazyParts)
        and tables is None
        and (attributed is None or not attributed[0])
    ):
        # Its tables were not read (no site), or the sample-by-sample path needs them parsed: a full
        # parse, which also reports bad location or function bytes.
        profile = _parse_fully(raw)
        resolver = Resolver(profile)
        location = resolver.location
    if attributed is not None:
        sites, total, total_count, cumulative = attributed
    else:  # also where the fast path found something to report: this path names it precisely
        if isinstance(profile, profile_pb2.Profile):
            all_values, stride, loc_ids_of, all_ids = _message_samples(profile.sample, n_types)
        else:
            all_values, stride, loc_ids_of, all_ids = _raw_samples(profile.sample, n_types)
        try:
            sites, total, total_count, cumulative = _attribute_slow(
                all_values, stride, loc_ids_of, columns, resolver, group_acc if goroutine_kind else None
            )
        except InvalidProfileError:
            resolver.check_samples(all_ids, loc_ids_of, n_samples)  # a missing location id: name its sample
            raise
        resolver.check_samples(all_ids, loc_ids_of, n_samples)  # ids below the frames attribution read

    ranked = sorted(sites.items(), key=lambda item: (-item[1].value, item[0]))[: limits.top_sites]
    kept = tuple(
        SiteValue(
            function=name,
            file=acc.file,
            line=acc.line,
            value=acc.value,
            count=acc.count,
            leaf=acc.leaf_name if acc.leaf_name is not None else location(acc.leaf_location, WHERE)[0][0],
        )
        for name, acc in ranked
    )
    groups: tuple[GoroutineGroup, ...] = ()
    if goroutine_kind:
        groups = top_groups(group_acc, limits.top_groups, leaked=kind is ProfileKind.GOROUTINELEAK)
    kept_labels = {k: v for k, v in (labels or {}).items() if k in KEPT_LABELS}
    version = comment_version(profile)
    if version:
        kept_labels[VERSION_LABEL] = version
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
        sample_period=float(max(profile.period, 0)),
    )


def comment_version(profile: AnyProfile) -> str:
    """The `service.version=<version>` comment of a profile (pprof `comment`: string table indices), or ""."""
    strings = profile.string_table
    for index in list(profile.comment)[:MAX_COMMENTS]:
        if 0 < index < len(strings) and strings[index].startswith(VERSION_COMMENT):
            return strings[index][len(VERSION_COMMENT) :].strip()[:MAX_VERSION_LENGTH]
    return ""


def _raw_samples(
    raw_samples: Sequence[bytes], n_types: int
) -> tuple[list[int], int, Callable[[int], Sequence[int]], Sequence[int]]:
    """Every value of encoded samples in one list (`stride` apart per sample), each sample's location
    ids on demand, and every sample's location ids (for `Resolver.check_samples`).

    All values and ids are read in one C-level parse: concatenated Sample messages parse as one message
    whose repeated `value` holds all values in order (`location_id` all ids). A separator after each
    sample (one more `value`, the sentinel) shows where each sample's values end, so counts that cancel
    out in the total cannot shift the columns.
    """
    separated = _SEPARATOR.join(raw_samples) + _SEPARATOR if raw_samples else b""
    merged = profile_pb2.Sample.FromString(separated)
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
    parse_sample = profile_pb2.Sample.FromString
    return all_values, stride, lambda i: parse_sample(raw_samples[i]).location_id, merged.location_id


def _message_samples(
    samples: Sequence[profile_pb2.Sample], n_types: int
) -> tuple[list[int], int, Callable[[int], Sequence[int]], Sequence[int]]:
    """`_raw_samples` for samples already parsed as messages (a `Profile` converted from OTLP)."""
    all_values: list[int] = []
    for i, sample in enumerate(samples):
        values = sample.value
        if len(values) != n_types:
            raise InvalidProfileError(
                f"profile.sample[{i}].value: {len(values)} values for {n_types} sample types", RejectReason.BAD_VALUES
            )
        all_values.extend(values)
    all_ids = [loc_id for sample in samples for loc_id in sample.location_id]
    return all_values, n_types, lambda i: samples[i].location_id, all_ids


def _attribute_slow(
    all_values: list[int],
    stride: int,
    loc_ids_of: Callable[[int], Sequence[int]],
    columns: tuple[int, int, int],
    resolver: Resolver,
    group_acc: dict[tuple[str, str, str, str, int], int] | None,
) -> tuple[dict[str, SiteAcc], float, float, float]:
    """Sample by sample: goroutine profiles (wait states need whole stacks) and unusual encodings.

    Python objects are built only for samples with a nonzero value (most heap samples are
    allocation-only, with zero in-use)."""
    value_index, count_index, cumulative_index = columns
    location = resolver.location
    sites: dict[str, SiteAcc] = {}
    user_cache = resolver.user  # (shared by uploads with the same tables)
    total = 0.0
    total_count = 0.0
    cumulative = 0.0
    value_column = all_values[value_index::stride]
    count_column = value_column if count_index == value_index else all_values[count_index::stride]
    if cumulative_index >= 0:
        cumulative = float(sum(all_values[cumulative_index::stride]))

    for i, value in enumerate(value_column):
        if value == 0:
            continue
        count = count_column[i]
        total += value
        total_count += count
        loc_ids = loc_ids_of(i)
        if not loc_ids:
            # Go writes these (a goroutine caught with no stack, e.g. between creation and its first run):
            # the value counts in the total, under "(other)", since there is no site to name.
            continue
        user: Frame | None = None
        for loc_id in loc_ids:
            if loc_id in user_cache:
                user = user_cache[loc_id]
            else:
                user = None
                for frame in location(loc_id, WHERE):
                    if not is_system_frame(frame[0], frame[1]):
                        user = frame
                        break
                user_cache[loc_id] = user
            if user is not None:
                break
        if user is None:  # only runtime/library frames: name the innermost non-runtime one, else the leaf
            user = fallback_frame(loc_ids, resolver)
        acc = sites.get(user[0])
        if acc is None:
            sites[user[0]] = SiteAcc(user, value, count, loc_ids[0])
        else:
            acc.add(user, value, count, loc_ids[0])
        if group_acc is not None:
            state, blocking = _wait_state(loc_ids, resolver)
            gkey = (state, blocking, user[0], user[1], user[2])
            group_acc[gkey] = group_acc.get(gkey, 0) + int(value)
    return sites, total, total_count, cumulative


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


def _wait_state(loc_ids: Sequence[int], resolver: Resolver) -> tuple[str, str]:
    """(wait state, blocking frame) of a goroutine stack from a proto goroutine profile.

    The blocking frame is the innermost one outside the runtime and its `sync.runtime_*` shims; the state
    is the most specific wait primitive seen up to it (`sync.RWMutex.RLock` beats `semacquire`).
    """
    state = ""
    parked = False
    for loc_id in loc_ids:
        for function, _file, _line in resolver.location(loc_id, WHERE):
            parked = parked or function.startswith("runtime.gopark")
            for prefix, name in _WAIT_STATES:
                if function.startswith(prefix):
                    state = name
                    break
            if not is_runtime_frame(function) and ".runtime_" not in function:
                return (state or ("" if parked else "running")), function
    return (state or ("" if parked else "running")), ""
