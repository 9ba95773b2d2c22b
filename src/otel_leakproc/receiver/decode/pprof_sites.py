"""Attribution pieces shared by both pprof summarising paths: frames, location resolution, site totals.

A location id resolves to its frames (function, file, line), validated only when a sample references it;
a site (one function) accumulates the values charged to it, its file and line following its largest sample.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy.typing as npt

from otel_leakproc.errors import InvalidProfileError, RejectReason
from otel_leakproc.receiver.decode.frames import is_primitive_frame
from otel_leakproc.receiver.proto import profile_messages as profile_pb2

Frame = tuple[str, str, int]  # function, file, line
IntArray = npt.NDArray[Any]  # int64 or uint64
WHERE = "profile.sample.location_id"
# A parsed profile: converted from OTLP (samples as messages), or parsed from bytes with samples (and, for
# `ProfileLazyParts`, locations and functions) left as bytes.
AnyProfile = profile_pb2.Profile | profile_pb2.ProfileLazySamples | profile_pb2.ProfileLazyParts


class SiteAcc:
    """Running totals of one attributed function; file/line/leaf follow its largest sample."""

    __slots__ = ("best", "count", "file", "leaf_location", "leaf_name", "line", "value")

    def __init__(self, frame: Frame, value: int, count: int, leaf_location: int) -> None:
        self.value = float(value)
        self.count = float(count)
        self.best = value
        self.file = frame[1]
        self.line = frame[2]
        self.leaf_location = leaf_location
        self.leaf_name: str | None = None  # the leaf location's first function, when already known

    def add(self, frame: Frame, value: int, count: int, leaf_location: int) -> None:
        self.value += value
        self.count += count
        if value > self.best:
            self.best = value
            self.file = frame[1]
            self.line = frame[2]
            self.leaf_location = leaf_location


class Tables:
    """What resolving one set of location, function and string tables found: frames per location id, (name,
    file) per function id, the user frame per location id (None: only system frames) and whether the
    locations are numbered 1..N. All of it depends on the tables alone, so uploads carrying the same tables
    (a service's small profiles, upload after upload) share it through `TablesCache`."""

    __slots__ = ("frames", "named", "numbered", "user")

    def __init__(self) -> None:
        self.frames: dict[int, tuple[Frame, ...]] = {}
        self.named: dict[int, tuple[str, str]] = {}
        self.user: dict[int, Frame | None] = {}
        self.numbered: bool | None = None


TablesKey = tuple[tuple[bytes, ...], tuple[bytes, ...], tuple[str, ...]]


class TablesCache:
    """A bounded LRU of `Tables`, keyed by the encoded locations and functions and the string table: at
    most `max_entries` entries whose keys' sizes (as given to `put`) add up to at most `max_bytes`. For one
    thread (each process decodes on one: the event loop or a worker's)."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self._entries: OrderedDict[TablesKey, tuple[Tables, int]] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: TablesKey) -> Tables | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: TablesKey, tables: Tables, size: int) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        self._entries[key] = (tables, size)
        self.bytes += size
        while self._entries and (len(self._entries) > self._max_entries or self.bytes > self._max_bytes):
            self.bytes -= self._entries.popitem(last=False)[1][1]


class Resolver:
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
        "_parse_function",
        "_parse_location",
        "_strings",
        "_tables",
        "frames",
        "n_locations",
        "user",
    )

    def __init__(self, profile: AnyProfile, tables: Tables | None = None) -> None:
        """`tables`: what earlier uploads with the same tables resolved (filled further here)."""
        self._strings = profile.string_table
        # Locations and functions kept as bytes (`ProfileLazyParts`, whose tables the vectorised reader
        # validated) are parsed one by one, only those samples reach.
        self._functions: Sequence[Any] = profile.function
        self._locations: Sequence[Any] = profile.location
        self._parse_location: Callable[[bytes], Any] | None = None
        self._parse_function: Callable[[bytes], Any] | None = None
        if isinstance(profile, profile_pb2.ProfileLazyParts):
            self._parse_location = profile_pb2.Location.FromString
            self._parse_function = profile_pb2.Function.FromString
        self._n_functions = len(profile.function)
        self._n_locations = len(profile.location)
        self.n_locations = self._n_locations
        self._fn_map: dict[int, int] | None = None
        self._loc_map: dict[int, int] | None = None
        self._tables = Tables() if tables is None else tables
        self.frames = self._tables.frames
        self._named = self._tables.named  # function id -> (name, file)
        self.user = self._tables.user  # location id -> its user frame (None: system frames only)

    def location(self, loc_id: int, where: str) -> tuple[Frame, ...]:
        frames = self.frames.get(loc_id)
        if frames is not None:
            return frames
        index = loc_id - 1
        loc = self._location_at(index) if 0 <= index < self._n_locations else None
        if loc is None or loc.id != loc_id:
            if self._loc_map is None:
                ids = (self._location_at(i).id for i in range(self._n_locations))
                self._loc_map = id_map(ids, "location")
            found = self._loc_map.get(loc_id)
            if found is None:
                raise InvalidProfileError(f"{where}: {loc_id} is not a location id", RejectReason.BAD_REFERENCE)
            index = found
            loc = self._location_at(index)
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

    def check_samples(self, all_ids: Sequence[int], ids_of: Callable[[int], Sequence[int]], n_samples: int) -> None:
        """Reject a sample referencing a location id the table lacks, anywhere in its stack (attribution
        reads stacks only up to their user frame). `all_ids`: every sample's ids; `ids_of(i)`: sample i's.
        Go's tables (ids 1..N) need only the smallest and largest id; others look up the ids not resolved."""
        distinct = set(all_ids[:])
        if not distinct or (min(distinct) >= 1 and max(distinct) <= self._n_locations and self._numbered_1_to_n()):
            return
        has = self._has
        missing = [loc_id for loc_id in distinct.difference(self.frames) if not has(loc_id)]
        if not missing:
            return
        for i in range(n_samples):
            for loc_id in ids_of(i):
                if loc_id in missing:
                    raise InvalidProfileError(
                        f"profile.sample[{i}].location_id: {loc_id} is not a location id", RejectReason.BAD_REFERENCE
                    )

    def _numbered_1_to_n(self) -> bool:
        """Whether the locations are numbered 1..N in order (what Go writes)."""
        numbered = self._tables.numbered
        if numbered is None:
            if self._parse_location is None:
                ids = [loc.id for loc in self._locations]
            else:
                ids = [self._location_at(i).id for i in range(self._n_locations)]
            numbered = self._tables.numbered = ids == list(range(1, self._n_locations + 1))
        return numbered

    def _has(self, loc_id: int) -> bool:
        index = loc_id - 1
        if 0 <= index < self._n_locations and self._location_at(index).id == loc_id:
            return True
        if self._loc_map is None:
            self._loc_map = id_map((self._location_at(i).id for i in range(self._n_locations)), "location")
        return loc_id in self._loc_map

    def _location_at(self, index: int) -> Any:
        parse = self._parse_location
        return self._locations[index] if parse is None else parse(self._locations[index])

    def _function_at(self, index: int) -> Any:
        parse = self._parse_function
        return self._functions[index] if parse is None else parse(self._functions[index])

    def _function(self, fn_id: int, loc_index: int, line_index: int, line: int) -> Frame:
        index = fn_id - 1
        fn = self._function_at(index) if 0 <= index < self._n_functions else None
        if fn is None or fn.id != fn_id:
            if self._fn_map is None:
                self._fn_map = id_map((self._function_at(i).id for i in range(self._n_functions)), "function")
            found = self._fn_map.get(fn_id)
            if found is None:
                raise InvalidProfileError(
                    f"profile.location[{loc_index}].line[{line_index}].function_id: {fn_id} is not a function id",
                    RejectReason.BAD_REFERENCE,
                )
            index = found
            fn = self._function_at(index)
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


def id_map(ids: Iterable[int], what: str) -> dict[int, int]:
    mapping: dict[int, int] = {}
    for i, item_id in enumerate(ids):
        if item_id == 0:
            raise InvalidProfileError(f"profile.{what}[{i}].id: must be nonzero", RejectReason.BAD_REFERENCE)
        mapping[item_id] = i
    return mapping


def fallback_frame(loc_ids: Sequence[int], resolver: Resolver) -> Frame:
    """For stacks made only of runtime/library frames: the innermost frame outside the runtime and the
    `sync` primitives (the lock's user), else the leaf."""
    first: Frame | None = None
    for loc_id in loc_ids:
        for frame in resolver.location(loc_id, WHERE):
            if first is None:
                first = frame
            if not is_primitive_frame(frame[0]):
                return frame
    return first if first is not None else ("(unknown)", "", 0)


def exact_sum(values: IntArray) -> float:
    """The sum as the sample-by-sample path computes it (float accumulation), exactly and fast when the
    sum cannot round (every partial sum below 2**53); otherwise the same sequential float sum."""
    if len(values) == 0:
        return 0.0
    bound = max(-int(values.min()), int(values.max())) * len(values)
    if bound < 2**53:
        return float(values.sum())
    return sum(values.tolist(), 0.0)
