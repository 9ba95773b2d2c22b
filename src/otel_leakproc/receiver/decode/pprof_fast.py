"""The vectorised pprof reader: large profiles' samples and tables read as flat arrays, not messages.

The C extension `_wire` (see `_wire.c`) does the byte-level work: it finds the samples, locations and
functions among the profile's fields, and decodes their varints into flat arrays: every sample's values
and location ids (with a count per sample), and each location's, line's and function's fields as a table.
numpy does the rest on those arrays: each location's user frame, then the stacks walked one level at a time
from the leaf for the samples still without one, so no Python object is built per sample, location or line.
Anything unusual (wire data `_wire` rejects, value counts that do not match the sample types, a sample
without locations, bad references) returns None and the sample-by-sample path handles it, with its precise
error messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice, starmap
from typing import Any

import numpy as np
import numpy.typing as npt

try:
    from otel_leakproc.receiver.decode import _wire
except ImportError as exc:  # (a checkout run with PYTHONPATH=src, not built in place)
    raise ImportError(
        "otel_leakproc.receiver.decode._wire, the decoder's C extension, is not built: install the package"
        " (pip install -e .) or build it in place (python setup.py build_ext --inplace)"
    ) from exc
from otel_leakproc.receiver.decode._wire import WireError
from otel_leakproc.receiver.decode.frames import is_primitive_frame, is_system_frame
from otel_leakproc.receiver.decode.pprof_sites import IntArray, SiteAcc, exact_sum
from otel_leakproc.receiver.proto import profile_pb2

# Field numbers read from the wire.
_PROFILE_SAMPLE, _PROFILE_LOCATION, _PROFILE_FUNCTION = 2, 4, 5
_SAMPLE_LOCATION_ID, _SAMPLE_VALUE, _SAMPLE_LABEL = 1, 2, 3
_LOCATION_LINE = 4
# Table widths: fields 1..width-1 of each message (Location: id, mapping_id, address; Line: function_id,
# line; Function: id, name, system_name, filename).
_LOCATION_WIDTH, _LINE_WIDTH, _FUNCTION_WIDTH = 4, 3, 5


class Parts:
    """Where the profile's samples, locations and functions are in its bytes `data`: one (body start, body
    end) int64 row each, in order."""

    __slots__ = ("data", "functions", "locations", "samples")

    def __init__(self, data: bytes, samples: IntArray, locations: IntArray, functions: IntArray) -> None:
        self.data = data
        self.samples = samples
        self.locations = locations
        self.functions = functions


def raw_parts(profile: profile_pb2.ProfileLazySamples | profile_pb2.ProfileLazyParts, raw: bytes) -> Parts | None:
    """The profile's samples, locations and functions in `raw`, the bytes `profile` was parsed from (None
    when `_wire` rejects the profile's fields, or finds other counts than the parse: the sample-by-sample
    path then judges it)."""
    try:
        samples, locations, functions = _wire.index(
            raw, 0, len(raw), (_PROFILE_SAMPLE, _PROFILE_LOCATION, _PROFILE_FUNCTION)
        )
    except WireError:
        return None
    parts = Parts(raw, _pairs(samples), _pairs(locations), _pairs(functions))
    counts = (len(parts.samples), len(parts.locations), len(parts.functions))
    if counts != (len(profile.sample), len(profile.location), len(profile.function)):
        return None
    return parts


def _pairs(spans: bytearray) -> IntArray:
    return np.frombuffer(spans, dtype=np.int64).reshape(-1, 2)


class _Scan:
    """Every sample's location ids and values."""

    __slots__ = ("id_end", "id_start", "ids", "values")

    def __init__(self, ids: IntArray, id_start: IntArray, id_end: IntArray, values: IntArray) -> None:
        self.ids = ids  # uint64: every sample's location ids (leaf first), sample after sample
        self.id_start = id_start  # where each sample's ids start in `ids` (each has at least one)
        self.id_end = id_end
        self.values = values  # int64, one row per sample type, one column per sample

    def stack(self, i: int) -> list[int]:
        """The location ids of sample `i`."""
        return self.ids[self.id_start[i] : self.id_end[i]].tolist()  # type: ignore[no-any-return]


def scan_samples(parts: Parts, n: int, n_types: int) -> _Scan | None:
    """Every sample's location ids and values (the `n` samples of `parts`, `n_types` values each); None
    when anything is unusual (`_wire` rejects a sample, a sample has no location or another number of
    values)."""
    if n == 0 or n_types == 0 or len(parts.samples) != n:
        return None
    try:
        (values, value_counts), (ids, id_counts) = _wire.repeated_varints(
            parts.data, parts.samples, (_SAMPLE_VALUE, _SAMPLE_LOCATION_ID), (_SAMPLE_LABEL,)
        )
    except WireError:
        return None
    if not bool((np.frombuffer(value_counts, dtype=np.int64) == n_types).all()):
        return None
    per_sample = np.frombuffer(id_counts, dtype=np.int64)
    if not bool((per_sample > 0).all()):
        return None
    id_end = np.cumsum(per_sample)
    rows = np.frombuffer(values, dtype=np.int64).reshape(n, n_types).T
    return _Scan(np.frombuffer(ids, dtype=np.uint64), id_end - per_sample, id_end, rows)


def _starts_run(owner: IntArray) -> npt.NDArray[np.bool_]:
    """Whether each entry of a nondecreasing `owner` is the first of its run (np.insert costs more)."""
    return np.concatenate((np.ones(min(1, len(owner)), dtype=bool), owner[1:] != owner[:-1]))


def _lookup(ids: IntArray, wanted: IntArray) -> IntArray:
    """Table index of each wanted id as `Resolver` finds it (`table[id - 1]` first, else the last entry
    with that id), or -1 where `Resolver` would raise (absent, or its id map meets a zero id)."""
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

    `user_key` is -1 for locations made only of system frames and -2 for locations `Resolver` would reject.
    Every line's key and number are kept too, in location order, for `fallback`.
    When location ids are small numbers (Go numbers them 1..N), `key_by_id`, `line_by_id` and
    `leaf_by_id` hold the same per location id (-3: no such location), so a walk reads them in one gather.
    """

    __slots__ = (
        "dense",
        "ids",
        "key_by_id",
        "leaf_by_id",
        "leaf_key",
        "line_by_id",
        "line_count",
        "line_key",
        "line_no",
        "line_start",
        "pairs",
        "user_key",
        "user_line",
    )

    def __init__(
        self,
        ids: IntArray,
        pairs: dict[tuple[str, str], int],
        user_key: IntArray,
        user_line: IntArray,
        leaf_key: IntArray,
        lines: tuple[IntArray, IntArray, IntArray],
    ) -> None:
        self.ids = ids  # location id of each table entry
        self.pairs = pairs  # (function name, file) -> key
        self.user_key = user_key
        self.user_line = user_line
        self.leaf_key = leaf_key
        self.line_key, self.line_no, self.line_count = lines  # each line's key and number; lines per location
        self.line_start: list[int] | None = None
        self.key_by_id: IntArray | None = None
        self.line_by_id: IntArray | None = None
        self.leaf_by_id: IntArray | None = None
        top = int(ids.max()) if len(ids) else 0
        self.dense = top == len(ids) and bool((ids == np.arange(1, top + 1, dtype=np.uint64)).all())
        if self.dense:  # Go: 1..N
            self.key_by_id = np.concatenate(([-3], user_key, [-3]))
            self.line_by_id = np.concatenate(([0], user_line, [0]))
            self.leaf_by_id = np.concatenate(([-3], leaf_key, [-3]))
        elif top <= 4 * len(ids) + 64:  # dense enough for tables indexed by id (the last entry: any larger id)
            index = np.append(_lookup(ids, np.arange(top + 1, dtype=np.uint64)), -1)
            self.key_by_id = np.append(user_key, -3)[index]
            self.line_by_id = np.append(user_line, 0)[index]
            self.leaf_by_id = np.append(leaf_key, -3)[index]

    def user(self, wanted: IntArray) -> tuple[IntArray, IntArray]:
        """(user key, user line) of each wanted location id; key -3 where `Resolver` would raise."""
        if self.key_by_id is not None and self.line_by_id is not None:
            at = np.minimum(wanted, np.uint64(len(self.key_by_id) - 1))
            return self.key_by_id[at], self.line_by_id[at]
        index = _lookup(self.ids, wanted)
        return np.append(self.user_key, -3)[index], np.append(self.user_line, 0)[index]

    def fallback(self, stacks: Sequence[Sequence[int]], names: list[tuple[str, str]]) -> list[tuple[int, int]]:
        """(key, line) of the frame `fallback_frame` gives each stack of valid locations (the walk read
        each): the innermost one outside the runtime and the `sync` primitives, else the leaf frame. One
        lookup for all stacks."""
        index = _lookup(self.ids, np.array([loc for stack in stacks for loc in stack], dtype=np.uint64))
        line_start = np.concatenate(([0], np.cumsum(self.line_count)))
        spans = zip(line_start[index].tolist(), line_start[index + 1].tolist(), index.tolist(), strict=True)
        found = []
        for stack in stacks:
            first: tuple[int, int] | None = None
            frame: tuple[int, int] | None = None
            for start, stop, j in islice(spans, len(stack)):
                if frame is not None:
                    continue  # (the rest of this stack's spans)
                if start == stop:  # unsymbolised: its address frame
                    frames: Iterable[tuple[int, int]] = ((int(self.leaf_key[j]), 0),)
                else:
                    frames = zip(self.line_key[start:stop].tolist(), self.line_no[start:stop].tolist(), strict=True)
                for key, line in frames:
                    first = first or (key, line)
                    if not is_primitive_frame(names[key][0]):
                        frame = (key, line)
                        break
            frame = frame or first
            if frame is None:  # (no location: not a stack the walk leaves unresolved)
                raise ValueError("fallback of an empty stack")
            found.append(frame)
        return found

    def leaf(self, wanted: IntArray) -> IntArray:
        """The leaf frame's key of each wanted location id (-3 where `Resolver` would raise)."""
        if self.leaf_by_id is not None:
            return self.leaf_by_id[np.minimum(wanted, np.uint64(len(self.leaf_by_id) - 1))]
        return np.append(self.leaf_key, -3)[_lookup(self.ids, wanted)]


def _tables(profile: profile_pb2.ProfileLazySamples | profile_pb2.ProfileLazyParts, parts: Parts) -> _Tables | None:
    """What the walk needs of the location and function tables; None when `_wire` rejects their bytes
    (a field the reader does not take, or malformed wire data: the full parse then reports it)."""
    n_locs, n_fns = len(parts.locations), len(parts.functions)
    if not n_locs:
        return None
    try:
        loc_table, nested = _wire.table(parts.data, parts.locations, _LOCATION_WIDTH, _LOCATION_LINE)
        line_spans = np.frombuffer(nested, dtype=np.int64).reshape(-1, 3)
        line_table, _ = _wire.table(parts.data, np.ascontiguousarray(line_spans[:, 1:]), _LINE_WIDTH, 0)
        fn_table, _ = _wire.table(parts.data, parts.functions, _FUNCTION_WIDTH, 0)
    except WireError:
        return None
    line_owner = line_spans[:, 0]  # the location holding each line
    loc_cols = np.frombuffer(loc_table, dtype=np.uint64).reshape(n_locs, _LOCATION_WIDTH)
    fn_cols = np.frombuffer(fn_table, dtype=np.uint64).reshape(n_fns, _FUNCTION_WIDTH)
    line_cols = np.frombuffer(line_table, dtype=np.uint64).reshape(len(line_owner), _LINE_WIDTH)
    n_lines = len(line_owner)
    strings = list(profile.string_table)
    # Functions: `Resolver` rejects one whose name or file is not a string index.
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
    first = user[_starts_run(owners)]
    user_key = np.full(n_locs, -1, dtype=np.int64)
    user_line = np.zeros(n_locs, dtype=np.int64)
    user_key[line_owner[first]] = line_key[first]
    user_line[line_owner[first]] = line_cols[:, 2].view(np.int64)[first]
    user_key[line_owner[line_key < 0]] = -2
    # The leaf frame: each location's first line.
    leaf_key = np.full(n_locs, -3, dtype=np.int64)
    if n_lines:
        starts = np.flatnonzero(_starts_run(line_owner))
        leaf_key[line_owner[starts]] = line_key[starts]
    line_count = np.bincount(line_owner, minlength=n_locs)
    no_lines = np.flatnonzero(line_count == 0)
    addresses = loc_cols[:, 3][no_lines].tolist()
    for i, address in zip(no_lines.tolist(), addresses, strict=True):  # unsymbolised: named by address
        name = f"0x{address:x}"
        key = pairs.setdefault((name, ""), len(pairs))
        user_key[i] = -1 if is_system_frame(name, "") else key
        leaf_key[i] = key
    every_line = (line_key, line_cols[:, 2].view(np.int64), line_count)
    return _Tables(loc_cols[:, 1].copy(), pairs, user_key, user_line, leaf_key, every_line)


def attribute_fast(
    scan: _Scan,
    columns: tuple[int, int, int],
    profile: profile_pb2.ProfileLazySamples | profile_pb2.ProfileLazyParts,
    parts: Parts,
    top: int,
) -> tuple[dict[str, SiteAcc], float, float, float] | None:
    """Charge every nonzero sample to its user frame, as the sample-by-sample path does; None to leave
    the profile to it (bad references, odd table encodings). Only sites that can rank in the `top` are
    returned (all those tied with the last one included), which is all the summary keeps."""
    value_index, count_index, cumulative_index = columns
    values = scan.values[value_index]
    counts = scan.values[count_index]
    cumulative = exact_sum(scan.values[cumulative_index]) if cumulative_index >= 0 else 0.0
    nonzero = np.flatnonzero(values != 0)  # (faster than on the int64 values)
    nz_values = values[nonzero]
    nz_counts = counts[nonzero]
    tables = _tables(profile, parts)
    if tables is None or not _known_locations(scan, tables):
        return None  # (the sample-by-sample path names the sample and the id)
    if not len(nonzero):
        return {}, 0.0, 0.0, cumulative
    walked = _walk(scan, nonzero, tables)
    if walked is None:
        return None
    leaves, keys, lines = walked
    names = list(tables.pairs)
    unresolved = np.flatnonzero(keys < 0)  # only runtime/library frames: rare
    if len(unresolved):
        stacks = [scan.stack(i) for i in nonzero[unresolved].tolist()]
        frames = np.array(tables.fallback(stacks, names), dtype=np.int64).reshape(-1, 2)
        keys[unresolved], lines[unresolved] = frames[:, 0], frames[:, 1]
    sites = _sites(nz_values, nz_counts, keys, lines, leaves, names, top)
    if sites:  # leaf frames named from the tables (each leaf was read, so its location is valid)
        accs = list(sites.values())
        leaf_keys = tables.leaf(np.array([acc.leaf_location for acc in accs], dtype=np.uint64)).tolist()
        for acc, key in zip(accs, leaf_keys, strict=True):
            if key >= 0:
                acc.leaf_name = names[key][0]
    return sites, exact_sum(nz_values), exact_sum(nz_counts), cumulative


def _known_locations(scan: _Scan, tables: _Tables) -> bool:
    """Whether every location id of every sample is in the table, not only those the walk reads (up to
    the user frame). Go's tables (ids 1..N) need only the smallest and largest id."""
    n = len(tables.ids)
    if tables.dense and n:
        return bool(scan.ids.min() >= 1) and int(scan.ids.max()) <= n
    return bool((tables.leaf(scan.ids) != -3).all())


def _walk(scan: _Scan, samples: IntArray, tables: _Tables) -> tuple[IntArray, IntArray, IntArray] | None:
    """(leaf location id, user frame key (-1: none), user frame line) of each of `samples`.

    Stacks are walked one level at a time from the leaf for all samples at once; at each level only the
    samples still without a user frame read their next location id. Most resolve in a level or two; the
    few left (often with a dozen system frames to cross) read the rest of their stacks in one go, rather
    than paying a level's fixed cost per frame.
    """
    ids = scan.ids
    pos = scan.id_start[samples]
    end = scan.id_end[samples]
    leaves = ids[pos]
    keys, lines = tables.user(leaves)
    if bool((keys < -1).any()):
        return None  # a bad reference (or a location `Resolver` rejects): the sample-by-sample path names it
    pos += 1
    pending = np.flatnonzero((keys < 0) & (pos < end))
    while len(pending) > len(samples) // 8:
        at = pos[pending]
        key, line = tables.user(ids[at])
        if bool((key < -1).any()):
            return None
        found = key >= 0
        keys[pending[found]] = key[found]
        lines[pending[found]] = line[found]
        pos[pending] = at + 1
        pending = pending[~found]
        pending = pending[pos[pending] < end[pending]]
    if len(pending) and not _walk_rest(ids, pos[pending], end[pending], pending, tables, keys, lines):
        return None
    return leaves, keys, lines


def _walk_rest(
    ids: IntArray,
    pos: IntArray,
    end: IntArray,
    pending: IntArray,
    tables: _Tables,
    keys: IntArray,
    lines: IntArray,
) -> bool:
    """Finish the walk of the `pending` samples, whose remaining location ids are `ids[pos:end]`: all are
    read at once, and each sample takes its first user frame. False where a bad reference comes before it
    (what the level-by-level walk would stop at)."""
    size = end - pos
    into = np.cumsum(size) - size  # where each sample's ids start in the gathered run
    owner = np.repeat(np.arange(len(size)), size)  # the pending sample of each id
    key, line = tables.user(ids[np.arange(int(into[-1] + size[-1])) + (pos - into)[owner]])
    stop = np.flatnonzero(key != -1)  # a user frame, or a bad reference
    stop_owner = owner[stop]
    first = stop[_starts_run(stop_owner)]
    if bool((key[first] < -1).any()):
        return False
    keys[pending[owner[first]]] = key[first]
    lines[pending[owner[first]]] = line[first]
    return True


def _sites(
    values: IntArray,
    counts: IntArray,
    keys: IntArray,
    lines: IntArray,
    leaves: IntArray,
    pairs: list[tuple[str, str]],
    top: int,
) -> dict[str, SiteAcc]:
    """Sites are functions: frames of one function (other lines, even other files) share a site, whose
    file and line follow its largest sample (the first of equal ones), as the sample-by-sample path does."""
    site_names = list(dict.fromkeys([name for name, _file in pairs]))  # numbered in order of first key
    if len(site_names) == len(pairs):  # each name in one file (the usual case): a site per key
        site_of_sample = keys
    else:
        site_of = {name: i for i, name in enumerate(site_names)}
        site_of_sample = np.array([site_of[name] for name, _file in pairs], dtype=np.int64)[keys]
    n_sites = len(site_names)
    site_values = np.bincount(site_of_sample, weights=values, minlength=n_sites)
    site_counts = np.bincount(site_of_sample, weights=counts, minlength=n_sites)
    # Each site's largest value, then the first sample holding it (no sort: unbuffered scatters).
    peaks = np.full(n_sites, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(peaks, site_of_sample, values)
    at_peak = np.flatnonzero(values == peaks[site_of_sample])
    n = len(values)
    first_best = np.full(n_sites, n, dtype=np.int64)
    np.minimum.at(first_best, site_of_sample[at_peak], at_peak)
    present = np.flatnonzero(first_best < n)  # the sites with samples (names of every function got a number)
    best = first_best[present]  # first largest sample of each site
    sites: dict[str, SiteAcc] = {}
    ranked = np.flatnonzero(site_values[present] >= _top_threshold(site_values[present], top))
    site_at, best = present[ranked], best[ranked]
    for site, key, line, value, leaf, total, count in zip(  # (lists: no numpy scalar per site)
        site_at.tolist(),
        keys[best].tolist(),
        lines[best].tolist(),
        values[best].tolist(),
        leaves[best].tolist(),
        site_values[site_at].tolist(),
        site_counts[site_at].tolist(),
        strict=True,
    ):
        name, file = pairs[key]
        acc = SiteAcc((name, file, line), value, 0, leaf)
        acc.value = total
        acc.count = count
        sites[site_names[site]] = acc
    return sites


def _top_threshold(values: npt.NDArray[Any], top: int) -> float:
    """The `top`-th largest of `values` (-inf when there are no more than `top`; +inf when `top` is 0)."""
    if len(values) <= top:
        return -np.inf
    if top <= 0:
        return np.inf
    return float(-np.partition(-values, top - 1)[top - 1])
