"""Per-series leak detectors: fed one `ProfileSummary` at a time, in time order, with bounded state.

One `SeriesDetector` exists per (tenant, service, instance, kind). It keeps the current process
segment's history (cut at restarts), evaluates it after every profile and returns the series' current
`SeriesReport`. The same code runs in `serve` and in `analyze`.
"""

from __future__ import annotations

import base64
import itertools
import math
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from enum import Enum
from sys import intern
from typing import Any

import numpy as np
import numpy.typing as npt

from otel_leakproc.model import (
    OTHER_SITE,
    Evidence,
    FixSide,
    FixVerdict,
    FixVerification,
    Grower,
    ProfileKind,
    ProfileSummary,
    SeriesKey,
    SeriesReport,
    Status,
)
from otel_leakproc.processor import contention, goroutine, heap, history
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.fix import FixCheck, Segment, compare_age, judge, pending, top_lock
from otel_leakproc.processor.history import (
    INCREMENTS,
    LEVELS,
    CounterGrid,
    Grid,
    Point,
    Points,
    SiteMeta,
    ValueScale,
    dequantize,
    history_columns,
    naming_positions,
    shared_meta,
)
from otel_leakproc.processor.trend import (
    FloatArray,
    Trend,
    median_finite,
)

NANOS = 1_000_000_000
HOUR = 3600.0
MAX_META = 512  # bound on remembered site/group descriptions per series
MAX_TRANSITIONS = 64  # status changes remembered per series (the newest)
STATE_VERSION = 8  # version of the plain-data form written by `SeriesDetector.to_state`
# Versions `from_state` reads: 2 differs from 3 only in the grids' values, always packed as float64 (the grids
# held float64 then); heap and goroutine values are rounded to float32 on restore, as new profiles' are.
# 4 added merged points (history.py): their weights, and their levels as 16-bit log steps. A version 2 or 3
# history (every point whole) is merged on restore as it would have been merged when appended.
# 5 writes the grids' values as they are kept (`value_scale`): 16-bit level codes (uint16) for every kind but
# mutex and block (float32). Older states' float values are encoded on restore as new profiles' are.
# 6 writes mutex and block grids as they are kept now (`CounterGrid`): 16-bit increases (int16) and each name's
# `base` and `last`, its values before its first kept point and at its newest (float64).
# 7 writes each point's naming order as the grids keep it (`_grid_state`): 2-bit tie fields and the points kept
# whole, instead of a move per value.
# 8 writes the grids' 16-bit codes as each name's floor and the differences from it, grouped by width
# (history.py `values_by_width`): the same codes, in fewer bytes once deflated; which names each point has as a
# bitmap (`present`) where that is smaller than the ids; a site's function as None where it is the site's name;
# the tie fields of the values in runs of one code alone (`tied`, history.py `tied_of_ties`).
READ_STATE_VERSIONS = (2, 3, 4, 5, 6, 7, 8)
_ZLIB_LEVEL = 1  # state arrays: byte-shuffled then deflated; level 1 is ~5x faster than 6, a few % larger


def _grid_state(
    grid: Grid, ref: Callable[[str], int], pack: Callable[..., Any] | None = None
) -> dict[str, Any] | _Deferred:
    """A grid as state (version 8): `names` (indices into the state's names) and packed arrays: per point its
    count of values (`lengths`), then its values by id (`present`, a bit per point and name, or `ids` where
    that is smaller or the ids are not ascending; the values' codes as the grid keeps them, see `value_scale`,
    written as `floor` and `widths` per name and `values`, a packed array per width, history.py
    `values_by_width`; version 7 wrote `ids` and the codes as one array `values`, as version 8 does for a float
    grid) with the order the profile named them
    as the grid keeps it (history.py `ties_of_positions`): `ties`, a 2-bit field per value (0 but where values
    of one code were named out of name order; version 8: `tied`, the fields of the values in runs of one code
    alone, history.py `tied_of_ties`, where any is not 0), and the points named out of value order with their
    ids in naming order (`whole`, `whole_ids`). Mutex and block: each name's value before and after its
    increases (`base`, `last`). (Versions 5 and 6 wrote each value's `move` from the value order instead: a
    byte per value.) With `pack` `_same` (`to_state(arrays=True)`, a checkpoint), what follows the grid's
    export is left to the encoder, in its thread (`_Deferred`)."""
    pack = pack or _pack
    base = last = None
    if isinstance(grid, CounterGrid):
        base, last = grid.export_ends()
    kept = grid.export_ties(ref)  # the dense form: as the grid keeps them
    if kept is None:
        names, lengths, ids, codes, positions = grid.export_positions(ref)
        keys = history.export_keys(grid.scale, lengths, ids, codes, base)
        ties, whole, whole_ids = history.ties_of_positions(lengths, ids, keys, positions)
    else:
        names, lengths, ids, codes, ties, whole, whole_ids = kept
    if pack is _same:  # for a checkpoint: packed by the encoder, off the event loop (copies, see `_Deferred`)
        return _Deferred(
            lambda: _grid_arrays_state(grid.scale, names, lengths, ids, codes, ties, whole, whole_ids, base, last)
        )
    return _grid_arrays_state(grid.scale, names, lengths, ids, codes, ties, whole, whole_ids, base, last, pack)


class _Deferred:
    """A grid's state left for the checkpoint encoder to finish in its own thread (`state.records` calls
    `resolve_state`): its arrays are the grid's export, copies the grid does not share."""

    __slots__ = ("_finish",)

    def __init__(self, finish: Callable[[], dict[str, Any]]) -> None:
        self._finish = finish

    def resolve_state(self) -> dict[str, Any]:
        return self._finish()


def _resolved(g: Any) -> Any:
    return g.resolve_state() if isinstance(g, _Deferred) else g


def _grid_arrays_state(
    scale: ValueScale,
    names: list[int],
    lengths: npt.NDArray[Any],
    ids: npt.NDArray[Any],
    codes: npt.NDArray[Any],
    ties: npt.NDArray[Any],
    whole: npt.NDArray[Any],
    whole_ids: npt.NDArray[Any],
    base: npt.NDArray[Any] | None,
    last: npt.NDArray[Any] | None,
    pack: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """`_grid_state` from a grid's export (the transforms of version 8); `pack` None: arrays as they are."""
    pack = pack or _same
    state = {"names": names, "lengths": pack(lengths)}
    # The presence bitmap and the codes by width in one call (the C form: a pass over the ids, two over the codes).
    present, floor, widths, groups = history.presence_and_widths(lengths, ids, codes, len(names))
    if present is None:
        state["ids"] = pack(ids)
    else:
        state["present"] = pack(present)
    if floor is None or widths is None or groups is None:  # (float codes: kept as they are)
        state["values"] = pack(codes)
    elif pack is _same:
        state["floor"], state["widths"], state["values"] = floor, widths, groups
    else:
        state.update(floor=pack(floor), widths=pack(widths), values={w: pack(v) for w, v in groups.items()})
    tied = None
    if base is None and np.count_nonzero(ties):  # (all 0, as in most series, they deflate to nothing as they
        # are; counter grids' ties are rare and their value order costs the counters: kept as they are)
        # (integer codes are their own keys: the C form reads them in their dtype, no int64 copy)
        keys = codes if codes.dtype.kind in "iu" else history.export_keys(scale, lengths, ids, codes, base)
        tied = history.tied_of_ties(lengths, ids, keys, ties, whole)
    if tied is None:
        state["ties"] = pack(ties)
    else:
        state["tied"] = pack(tied)
    state["whole"], state["whole_ids"] = pack(whole), pack(whole_ids)
    if base is not None and last is not None:
        state["base"], state["last"] = pack(base), pack(last)
    return state


def new_grid(kind: ProfileKind, columns: int, ordered: bool = True) -> Grid:
    """An empty grid for a series of `kind` (see `value_scale`); `ordered=False`: one that keeps no naming
    order (goroutine groups: nothing ranks them, see `Grid`)."""
    if kind in (ProfileKind.MUTEX, ProfileKind.BLOCK):
        return CounterGrid(columns, ordered=ordered)
    return Grid(columns, scale=value_scale(kind), ordered=ordered)


def _restore_grid(grid: Grid, names: list[str], g: Mapping[str, Any], version: int) -> None:
    """Rebuild `grid` from a grid state (`_grid_state`) of `version`."""
    counters = isinstance(grid, CounterGrid) and version >= 6
    base = _unpack(g["base"], "<f8") if counters else None
    lengths, ids, values, positions, kept = _grid_arrays(g, grid.scale, version, base, grid)
    if isinstance(grid, CounterGrid) and counters:
        grid.restore(names, lengths, ids, values, positions, base, _unpack(g["last"], "<f8"), kept=kept)
    else:
        grid.restore(names, lengths, ids, values, positions, kept=kept)


def _grid_arrays(
    g: Mapping[str, Any],
    scale: ValueScale,
    version: int,
    base: npt.NDArray[Any] | None = None,
    grid: Grid | None = None,
) -> tuple[
    npt.NDArray[Any],
    npt.NDArray[Any],
    npt.NDArray[Any],
    npt.NDArray[Any] | None,
    tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]] | None,
]:
    """A grid state's lengths, ids, values and (version 5 on, where each point's values come by id) their
    positions within their point, what `Grid.restore` takes; older versions list values in naming order.
    Version 7: the order as written (`kept`, for a dense `grid` that holds every point), else positions.
    (`base`: a counter grid's, for its value order.)"""
    lengths = _unpack(g["lengths"], "<i4")
    if "present" in g:  # version 8: a bitmap
        names = len(g["names"])
        dtype = next(d for d in (np.int8, np.int16, np.int32) if names <= np.iinfo(d).max)
        ids = history.ids_of_presence(lengths, _unpack(g["present"], "|u1"), names, dtype)
    else:
        ids = _unpack(g["ids"], _ids_dtype(g["ids"]))
    values = _grid_codes(g, scale, ids) if "floor" in g else _grid_values(g, scale, version)
    if version < 5:
        return lengths, ids, values, None, None
    if version < 7:
        moves = _unpack(g["moves"], _ids_dtype(g["moves"]))
        return lengths, ids, values, naming_positions(lengths, ids, values, moves), None
    if len(ids) != len(values) or int(lengths.sum()) != len(ids) or (lengths < 0).any():
        raise ValueError("grid lengths, ids and values do not match")
    if base is not None and len(ids) and (ids.min() < 0 or ids.max() >= len(base)):
        raise ValueError("grid id out of range")
    whole, whole_ids = _unpack(g["whole"], "<i4"), _unpack(g["whole_ids"], _ids_dtype(g["whole_ids"]))
    if "tied" in g:  # version 8: the fields of runs of equal keys only
        if len(whole) and ((np.diff(whole) <= 0).any() or whole[0] < 0 or whole[-1] >= len(lengths)):
            raise ValueError("grid ties: whole points out of order or range")
        keys = (
            values
            if base is None and values.dtype.kind in "iu"
            else history.export_keys(scale, lengths, ids, values, base)
        )  # (integer codes are their own keys, read in their dtype by the C form)
        ties = history.ties_of_tied(lengths, ids, keys, _unpack(g["tied"], "|u1"), whole)
    else:
        ties = _unpack(g["ties"], "|u1")
    if grid is not None and len(lengths) <= grid.columns and len(g["names"]) <= grid.max_rows:
        return lengths, ids, values, None, (ties, whole, whole_ids)
    keys = history.export_keys(scale, lengths, ids, values, base)
    return lengths, ids, values, history.positions_of_ties(lengths, ids, keys, ties, whole, whole_ids), None


def _grid_codes(g: Mapping[str, Any], scale: ValueScale, ids: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A grid state's codes written by width (version 8, history.py `values_by_width`)."""
    dtype = np.dtype(scale.dtype).str
    if dtype not in ("<u2", "<i2"):
        raise ValueError(f"grid values: written by width for a grid of {scale.name} values")
    groups = {}
    for width, packed in _req(g["values"], dict).items():
        w = int(width)
        if not 0 < w <= history.MAX_WIDTH or str(w) != width:
            raise ValueError(f"grid values: a group of width {width!r}")
        groups[w] = _unpack(packed, "|u1" if w <= 8 else "<u2")
    floor, widths = _unpack(g["floor"], dtype), _unpack(g["widths"], "|u1")
    if len(floor) != len(g["names"]):
        raise ValueError(f"grid values: {len(floor)} floors for {len(g['names'])} names")
    return history.codes_of_widths(ids, floor, widths, groups)


def _grid_values(g: Mapping[str, Any], scale: ValueScale, version: int) -> npt.NDArray[Any]:
    """A grid state's values, merged points' steps first (version 4) then the rest: the scale's codes as
    written (version 5), or float values to encode (older versions, and merged points' steps)."""
    values = _unpack_values(g["values"])
    # Version 5 kept mutex and block values as float32 (counters, not increases: re-encoded on restore).
    expected = np.float32 if version == 5 and scale is INCREMENTS else scale.dtype
    if version >= 5 and ("steps" in g or values.dtype != expected):
        raise ValueError(f"grid values: {values.dtype} (or merged steps) written for a grid of {scale.name} values")
    if "steps" not in g:
        return values
    steps = dequantize(_unpack(g["steps"], "<u2"))
    return np.concatenate([steps, scale.decode(values)])


def _pack(array: npt.NDArray[Any]) -> dict[str, Any]:
    """A 1-d array as plain data: dtype (little-endian), length, which of its byte planes are stored, and
    base64 of those planes deflated (byte k of every element together: the all-zero low mantissa bytes
    of counts and byte sizes stored as float64 are left out, the exponent bytes compress well)."""
    dtype = array.dtype.newbyteorder("<")
    planes = np.ascontiguousarray(array, dtype=dtype).view(np.uint8).reshape(-1, dtype.itemsize).T
    stored = planes.any(axis=1)
    raw = np.ascontiguousarray(planes[stored]).tobytes()
    return {
        "dtype": dtype.str,
        "n": len(array),
        "planes": sum(1 << k for k in np.flatnonzero(stored).tolist()),
        "data": base64.b64encode(zlib.compress(raw, _ZLIB_LEVEL)).decode(),
    }


_PACKED_DTYPES = {
    "|i1": np.int8,
    "<f8": np.float64,
    "<f4": np.float32,
    "<i2": np.int16,
    "<u2": np.uint16,
    "<i4": np.int32,
    "<i8": np.int64,
    "|u1": np.uint8,
}


def _same(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return array


def _ids_dtype(packed: Any) -> str:
    """The dtype of a grid's name ids as written (int8, int16 or int32 by the number of names)."""
    dtype = packed.dtype.str if isinstance(packed, np.ndarray) else packed["dtype"]
    if dtype not in ("|i1", "<i2", "<i4"):
        raise ValueError(f"grid ids: unexpected dtype {dtype!r}")
    return str(dtype)


_VALUE_DTYPES = ("<f8", "<f4", "<u2", "<i2")


def _unpack_values(packed: Any) -> npt.NDArray[Any]:
    """A grid's values: level codes (uint16) or increases (int16, version 6), level codes or float32
    (version 5, see `value_scale`), float32 or float64
    (version 3), float64 (version 2)."""
    dtype = np.dtype(packed.dtype).str if isinstance(packed, np.ndarray) else packed["dtype"]
    if dtype not in _VALUE_DTYPES:
        raise ValueError(f"grid values: unexpected dtype {dtype!r}")
    return _unpack(packed, dtype)


def _meta_rows(meta: Any) -> list[Mapping[str, Any]]:
    """The site descriptions of a state: by column (version 3) or a list of mappings (version 2)."""
    if isinstance(meta, list):
        return meta
    columns = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in _req(meta, dict).items()}
    n = len(_req(columns["name"], list))
    if any(len(_req(column, list)) != n for column in columns.values()):
        raise ValueError("meta: columns of different lengths")
    return [{field: column[i] for field, column in columns.items()} for i in range(n)]


def value_scale(kind: ProfileKind) -> ValueScale:
    """How a series' grids keep values (history.py): cumulative counters (mutex, block) as 16-bit increases
    (`CounterGrid`), the levels of every other kind in 16 bits."""
    return INCREMENTS if kind in (ProfileKind.MUTEX, ProfileKind.BLOCK) else LEVELS


def _unpack(packed: Any, dtype: str) -> npt.NDArray[Any]:
    """An array written by `_pack`, or given as an array (`to_state(arrays=True)`): checked, of `dtype`."""
    if isinstance(packed, np.ndarray):
        if packed.dtype != np.dtype(dtype) or packed.ndim != 1 or dtype not in _PACKED_DTYPES:
            raise ValueError(f"expected an array of dtype {dtype}, got {packed.dtype.str} of {packed.ndim} dimensions")
        return packed.astype(_PACKED_DTYPES[dtype])
    if packed["dtype"] != dtype or dtype not in _PACKED_DTYPES:
        raise ValueError(f"expected an array of dtype {dtype}, got {packed['dtype']!r}")
    n: int = _req(packed["n"], int)
    item = np.dtype(dtype).itemsize
    mask: int = _req(packed["planes"], int)
    if n < 0 or not 0 <= mask < 1 << item:
        raise ValueError(f"bad array length {n} or plane mask {mask}")
    stored = [k for k in range(item) if mask >> k & 1]
    try:
        raw = zlib.decompress(base64.b64decode(_req(packed["data"], str), validate=True), bufsize=max(n * item, 1))
    except zlib.error as exc:
        raise ValueError(f"array data: {exc}") from exc
    if len(raw) != n * len(stored):
        raise ValueError(f"array data holds {len(raw)} bytes, not {n} x {len(stored)} planes")
    planes = np.zeros((item, n), dtype=np.uint8)
    planes[stored] = np.frombuffer(raw, dtype=np.uint8).reshape(len(stored), n)
    return np.ascontiguousarray(planes.T).view(dtype).reshape(n).astype(_PACKED_DTYPES[dtype])


class SeriesDetector:
    """Bounded history and verdict of one series.

    Args:
        key: the series identity.
        config: detector settings.
        memory_limit_bytes: limit for time-to-limit (overrides the config's), e.g. from the resource.
    """

    # Slots, not a __dict__ per series (tens of thousands are held).
    __slots__ = (
        "_early",
        "_evaluated_at",
        "_groups",
        "_last_groups",
        "_memory_limit_override",
        "_own",
        "_report",
        "_sites",
        "config",
        "deferred",
        "first_flagged_at",
        "first_time",
        "fix",
        "flagged_since",
        "ignored",
        "key",
        "last_restart_reason",
        "last_time",
        "memory_limit_bytes",
        "meta",
        "points",
        "profiles",
        "resolving_since",
        "restarts",
        "sample_period",
        "segment_start",
        "session",
        "sizes",
        "status",
        "transitions",
        "version",
    )

    def __init__(self, key: SeriesKey, config: ProcessorConfig, memory_limit_bytes: int | None = None) -> None:
        self.key = key
        self.config = config
        self._memory_limit_override = memory_limit_bytes
        self.memory_limit_bytes = memory_limit_bytes or config.heap.memory_limit_bytes
        columns = history_columns(config.max_points, config.fine_points)
        self.points = Points(columns)
        self._sites = new_grid(key.kind, columns)
        self._groups = new_grid(key.kind, columns, ordered=False)  # (read by name, never ranked)
        self._last_groups: dict[str, tuple[int, int, int]] = {}  # the newest point's: count, wait, leaked
        self.meta: dict[str, SiteMeta] = {}
        # Heap sites: the mean size of one in-use object (value / count) in the latest profile naming it.
        self.sizes: dict[str, float] = {}
        self.profiles = 0
        self.first_time: int | None = None
        self.last_time: int | None = None
        self.restarts = 0
        self.ignored = 0
        self.segment_start: float = 0.0
        self.session: str | None = None
        self.status = Status.INSUFFICIENT_DATA
        self.flagged_since: float | None = None
        self.first_flagged_at: int | None = None
        self.last_restart_reason = ""
        self.sample_period = 0.0  # the latest profile's sampling period (its `sample_period`)
        self.resolving_since: float | None = None  # a flagged series has shown no evidence since then
        self.transitions: list[tuple[int, Status, Status]] = []
        self._report: SeriesReport | None = None
        self.version: str | None = None  # `service.version` of the current segment, when known
        # The points of the current segment younger than `fix.compare_seconds` that have left the history
        # (a process older than the window): what a fix verification compares its new version with.
        # (Allocated only once a segment outlives the window: most series never need it.)
        self._early: tuple[Points, Grid] | None = None
        self.fix: FixCheck | None = None
        # While a fix verdict is pending: the status, flagged_since and resolving_since the detectors give
        # the new version on its own (the series reports the held flag meanwhile).
        self._own: tuple[Status, float | None, float | None] = (Status.INSUFFICIENT_DATA, None, None)
        # Cheap appends (`update(..., may_defer=True)`): when the last full evaluation ran (monotonic clock),
        # and whether points have been appended since without one (`settle` evaluates them).
        self._evaluated_at = -math.inf
        self.deferred = False

    # -- intake ---------------------------------------------------------------------------------

    def update(self, summary: ProfileSummary, version: str | None = None, *, may_defer: bool = False) -> SeriesReport:
        """Add one profile (in time order) and return the series' new report.

        With `may_defer` (serve's live path) a series that is ok and was fully evaluated less than
        `evaluate_every_seconds` ago only appends the point: its report keeps the last verdict with the new
        profile count and time, `deferred` is set, and `settle` evaluates it later. Without it (analyze, the
        evaluation, a state restore) every profile is evaluated.

        A profile older than or as old as the last one is ignored (counted in the evidence as
        `ignored_out_of_order`), so replays and duplicates cannot corrupt the history. `version` is the
        monitored process's `service.version` (None: unknown); a change is a restart, and a flagged series
        restarted with a new version gets a fix verification (`processor/fix.py`).
        """
        now = summary.time_nanos / NANOS
        version = version or summary.labels.get("service.version") or None  # else the profile's own comment
        last = self.points[-1] if self.points else None
        if last is not None and now <= last.time:
            self.ignored += 1
            if self._report is not None:
                self._report.evidence.ignored_out_of_order = self.ignored
            return self.report()
        restart_reason = self._restart_reason(summary, last, now, version)
        if restart_reason and self.deferred:
            self.settle()  # the old process's last points get their verdict before the restart
        previous = self.status
        if restart_reason:
            self.restarts += 1
            self._restart_fix(version, summary.time_nanos)
            self._clear_points()
            self.segment_start = now
            self.status = Status.INSUFFICIENT_DATA
            self.flagged_since = None
            self.resolving_since = None
            self.last_restart_reason = restart_reason
            if self.fix is not None and self.fix.verdict is not FixVerdict.FIXED:
                self._own = (Status.INSUFFICIENT_DATA, None, None)  # the new process, judged on its own
                self.status, self.flagged_since = self.fix.held, self.fix.held_since
        elif last is None:
            self.segment_start = now
        if version:
            self.version = version
        self.session = summary.labels.get("__session_id__", self.session)
        self._remember(summary)
        # Interned: every profile brings its own copies of the same names; one shared copy per name
        # (across series) keeps a full window's memory to its numbers. The dicts keep the first position
        # and the last value of a name a profile repeats, as the history always did.
        sites = {intern(s.function): s.value for s in summary.sites}
        groups = {intern(g.key): (g.count, g.max_wait_minutes, g.leaked) for g in summary.groups}
        self._append_point(summary.time_nanos, now, summary.total, summary.cumulative, sites, groups)
        horizon = now - self.config.window_seconds
        while len(self.points) > 2 and self.points.first_time() < horizon:
            self._popleft_point()
        self.profiles += 1
        if self.first_time is None:
            self.first_time = summary.time_nanos
        self.last_time = summary.time_nanos
        if may_defer and not restart_reason and self._may_defer():
            self.deferred = True
            assert self._report is not None
            self._report = replace(self._report, profiles=self.profiles, last_time_nanos=summary.time_nanos)
            return self._report
        return self._evaluate_point(now, summary.time_nanos, previous)

    def settle(self) -> SeriesReport | None:
        """Evaluate the points appended without an evaluation (`deferred`); None when there are none."""
        if not self.deferred or not self.points:
            self.deferred = False
            return None
        last = self.points[-1]
        return self._evaluate_point(last.time, last.time_nanos, self.status)

    def _may_defer(self) -> bool:
        """Whether this point may skip the evaluation: only an ok series, no fix verification in progress,
        evaluated less than `evaluate_every_seconds` ago. (Warming up, flagged or resolving series, whose
        status can change on any point, are always evaluated.)"""
        every = self.config.evaluate_every_seconds
        return (
            every > 0
            and self.status is Status.OK
            and self.resolving_since is None
            and self.fix is None
            and self._report is not None
            and time.monotonic() - self._evaluated_at < every
        )

    def _evaluate_point(self, now: float, time_nanos: int, previous: Status) -> SeriesReport:
        self.deferred = False
        self._evaluated_at = time.monotonic()
        report = self._evaluate_with_fix(now)
        if report.status is not previous:
            self.transitions.append((time_nanos, previous, report.status))
            del self.transitions[:-MAX_TRANSITIONS]
        if self.transitions:
            report = replace(report, transitions=tuple(self.transitions))
        self._report = report
        return report

    def report(self) -> SeriesReport:
        """The current report (re-evaluated lazily after `update`)."""
        if self._report is None:
            self._report = self._empty_report()
        return self._report

    def _append_point(
        self,
        time_nanos: int,
        time: float,
        total: float,
        cumulative: float | None,
        sites: dict[str, float],
        groups: dict[str, tuple[int, int, int]],
    ) -> None:
        while self.points.profiles >= self.config.max_points:
            self._popleft_point()
        self.points.append(time_nanos, total, cumulative)
        # Goroutine kinds are judged on their groups; their sites (the groups' user frames) are not kept.
        self._sites.append(() if self._by_groups else sites.items())
        self._groups.append((k, float(v[0])) for k, v in groups.items())
        self._last_groups = groups
        if self.points.fine() >= self.config.fine_points + history.COARSE_FACTOR:
            self._coarsen()

    @property
    def _by_groups(self) -> bool:
        return self.key.kind in (ProfileKind.GOROUTINE, ProfileKind.GOROUTINELEAK)

    def _coarsen(self) -> None:
        """Merge the oldest whole points beyond the newest `fine_points` (see history.py)."""
        first, count = self.points.coarse, history.COARSE_FACTOR
        self.points.merge(count)
        # Not `snap`ped (state version 4 did): a levels grid keeps merged values in 16 bits as it keeps all.
        self._sites.merge(first, count, quantized=False)
        self._groups.merge(first, count, quantized=False)

    def _popleft_point(self) -> None:
        first = self.points[0]
        if first.time - self.segment_start <= self.config.fix.compare_seconds:
            # The start of a process outlives the window for a fix verification's like-with-like comparison.
            if self._early is None:  # small at first: it grows as points come (at most max_points profiles)
                self._early = (Points(4), new_grid(self.key.kind, 4))
            points, grid = self._early
            if points.profiles < self.config.max_points:
                points.append(first.time_nanos, first.total, first.cumulative, weight=first.weight)
                sites = self.key.kind in (ProfileKind.HEAP, ProfileKind.MUTEX, ProfileKind.BLOCK)
                grid.append(self._sites.first_items() if sites else ())
        elif self._early is not None and self._early[0].capacity > max(4, len(self._early[0])):
            # The start is complete (later points are older than `compare_seconds` into the process): its
            # arrays shrink to what they hold instead of keeping the room of their last growth step.
            points, grid = self._early
            size = max(4, len(points))
            points.resize(size)
            grid.resize(size)
        self.points.popleft()
        self._sites.popleft()
        self._groups.popleft()

    def _clear_points(self) -> None:
        self._early = None
        self.points.clear()
        self._sites.clear()
        self._groups.clear()
        self._last_groups = {}

    # -- persistence ------------------------------------------------------------------------------

    def to_state(self, *, arrays: bool = False) -> dict[str, Any]:
        """Everything needed to continue exactly where this detector is, as JSON-ready plain data.

        The history is written as arrays (`_pack`: dtype, length, base64 of shuffled, deflated
        little-endian bytes): per point its time, total and cumulative counter, and per grid (sites,
        goroutine groups) the values of every point with the ids of their names. Names are written once
        in `names` and referenced by index. The current report is kept as it is (not recomputed on
        restore): re-evaluating would cost a full evaluation per series at start-up and would re-apply
        the status hysteresis.

        With `arrays`, the history's arrays are left as numpy arrays (copies) instead of packed strings:
        for the checkpoint codec, which writes them as one column block (`state.codec.Columns`), off the
        event loop. `from_state` reads either form.
        """
        names: dict[str, int] = {}

        def ref(name: str) -> int:
            index = names.get(name)
            if index is None:
                index = names[name] = len(names)
            return index

        # By column (version 3): the codec packs the numbers and front-codes the names, and decodes a
        # handful of lists instead of a dict per site.
        metas = list(self.meta.values())
        pack: Callable[..., Any] = _same if arrays else _pack
        numbers: Callable[[list[Any], Any], Any] = (
            (lambda v, dtype: np.array(v, dtype=dtype)) if arrays else (lambda v, dtype: v)
        )
        meta = {
            "name": numbers([ref(name) for name in self.meta], np.int32),
            "function": [None if m.function == name else m.function for name, m in self.meta.items()],  # 8: None
            "file": [m.file for m in metas],
            "line": numbers([int(m.line) for m in metas], np.int64),
            "state": [m.state for m in metas],
            "leaf": [m.leaf for m in metas],
            "creator": [m.creator for m in metas],
            "blocking": [m.blocking for m in metas],
            "size": numbers([self.sizes.get(name, 0.0) for name in self.meta], np.float64),
        }
        order = self.points.order()
        points = {
            "time_nanos": pack(self.points.time_nanos[order]),
            "total": pack(self.points.total[order]),
            "cumulative": pack(self.points.cumulative[order]),  # NaN: the profile had none
            "weight": pack(self.points.weight[order]),  # profiles per point: > 1 for merged points
        }
        sites = _grid_state(self._sites, ref, pack)
        groups = _grid_state(self._groups, ref, pack)
        last_groups = [[ref(k), count, wait, leaked] for k, (count, wait, leaked) in self._last_groups.items()]
        # The arrays are packed into strings and the meta fields are plain by construction; the scalars
        # and the report (numpy scalars, enums in its evidence) go through `_plain`.
        state: dict[str, Any] = _plain(
            {
                "version": STATE_VERSION,
                "kind": self.key.kind.value,
                "memory_limit_bytes": self._memory_limit_override,
                "profiles": self.profiles,
                "first_time": self.first_time,
                "last_time": self.last_time,
                "restarts": self.restarts,
                "ignored": self.ignored,
                "segment_start": self.segment_start,
                "session": self.session,
                "status": self.status.value,
                "flagged_since": self.flagged_since,
                "first_flagged_at": self.first_flagged_at,
                "last_restart_reason": self.last_restart_reason,
                "sample_period": self.sample_period,
                "resolving_since": self.resolving_since,
                "transitions": [[t, a.value, b.value] for t, a, b in self.transitions],
                "last_groups": last_groups,
                "report": None if self._report is None else _report_to_state(self._report),
                "service_version": self.version,
                "own": [self._own[0].value, self._own[1], self._own[2]],
            },
            "state",
        )
        state.update(meta=meta, points=points, sites=sites, groups=groups, names=list(names))
        # Fix verification (absent from states written before it): the start of the current segment that
        # left the history, and the flagged process a new version is compared with.
        state["early"] = None
        if self._early is not None and self._early[0]:
            early_points, early_sites = self._early
            early = early_points.order()
            state["early"] = {
                "time_nanos": pack(early_points.time_nanos[early]),
                "total": pack(early_points.total[early]),
                "cumulative": pack(early_points.cumulative[early]),
                "weight": pack(early_points.weight[early]),
                "sites": _grid_state(early_sites, ref, pack=pack),
            }
            state["names"] = list(names)  # `ref` may have named more sites
        state["fix"] = None if self.fix is None else _fix_to_state(self.fix, pack)
        return state

    @classmethod
    def from_state(
        cls,
        key: SeriesKey,
        config: ProcessorConfig,
        state: Mapping[str, Any],
        memory_limit_bytes: int | None = None,
    ) -> SeriesDetector:
        """Rebuild a detector from `to_state` output (after a JSON round trip or not).

        Args:
            key: the series identity (its kind must match the state's).
            config: detector settings (may differ from the ones the state was written with).
            state: the output of `to_state`.
            memory_limit_bytes: overrides the limit saved in the state, like the constructor's argument.

        Raises:
            ValueError: unknown state version, a state written for another kind, or malformed state.
        """
        if not isinstance(state, Mapping):
            raise ValueError(f"detector state for {key}: expected a mapping, got {type(state).__name__}")
        version = state.get("version")
        if version == 1:
            raise ValueError(
                f"detector state for {key}: unsupported version 1 (expected {STATE_VERSION}): written by an older"
                " release (one record per point), not read; the series starts over"
            )
        if version not in READ_STATE_VERSIONS:
            raise ValueError(f"detector state for {key}: unsupported version {version!r} (expected {STATE_VERSION})")
        if state.get("kind") != key.kind.value:
            raise ValueError(
                f"detector state for {key}: written for kind {state.get('kind')!r}, not {key.kind.value!r}"
            )
        try:
            return cls._restore(key, config, state, memory_limit_bytes)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise ValueError(f"detector state for {key}: malformed ({type(exc).__name__}: {exc})") from exc

    @classmethod
    def _restore(
        cls, key: SeriesKey, config: ProcessorConfig, state: Mapping[str, Any], memory_limit_bytes: int | None
    ) -> SeriesDetector:
        version: int = state["version"]
        saved_limit = _opt(state["memory_limit_bytes"], int)
        detector = cls(key, config, memory_limit_bytes if memory_limit_bytes is not None else saved_limit)
        names = [intern(_req(name, str)) for name in state["names"]]

        def name_at(index: Any) -> str:
            i: int = _req(index, int)
            if not 0 <= i < len(names):
                raise IndexError(f"name index {i} out of range")
            return names[i]

        for m in _meta_rows(state["meta"]):
            name = name_at(m["name"])
            function = m["function"]
            detector.meta[name] = shared_meta(
                name if function is None and version >= 8 else _req(function, str),  # 8: None is the name
                _req(m["file"], str),
                _req(m["line"], int),
                _opt(m["state"], str),
                _req(m["leaf"], str),
                _req(m["creator"], str),
                _req(m["blocking"], str),
            )
            size = _num(m.get("size", 0.0))  # absent from states written before sampling was modelled
            if size:
                detector.sizes[name] = size
        p = state["points"]
        time_nanos = _unpack(p["time_nanos"], "<i8")
        total = _unpack(p["total"], "<f8")
        cumulative = _unpack(p["cumulative"], "<f8")
        n = len(time_nanos)
        weight = _unpack(p["weight"], "<i2") if "weight" in p else np.ones(n, dtype=np.int16)
        if len(total) != n or len(cumulative) != n or len(weight) != n:
            raise ValueError(
                f"points: {n} times, {len(total)} totals, {len(cumulative)} cumulative counters, {len(weight)} weights"
            )
        times = [t / NANOS for t in time_nanos.tolist()]  # as `update` computes them
        if any(b <= a for a, b in itertools.pairwise(times)):
            raise ValueError("points are not in increasing time order")
        merged = int(np.argmin(weight > 1)) if (weight <= 1).any() else n  # merged points come first
        if (weight < 1).any() or (weight[merged:] != 1).any():
            raise ValueError("points: bad weights (merged points must come first)")
        ring = detector.points
        if n > ring.capacity:
            ring.resize(n)  # a longer history (an older state, or a larger max_points): cut below
        ring.n = n
        ring.time_nanos[:n] = time_nanos
        ring.total[:n] = total
        ring.cumulative[:n] = cumulative
        ring.weight[:n] = weight
        ring.coarse = merged
        ring.profiles = int(weight.sum())
        quantized = key.kind not in (ProfileKind.MUTEX, ProfileKind.BLOCK)
        for field_name, grid in (("sites", detector._sites), ("groups", detector._groups)):
            g = _resolved(state[field_name])
            lengths = _unpack(g["lengths"], "<i4")
            if len(lengths) != n:
                raise ValueError(f"{field_name}: {len(lengths)} points, not {n}")
            if n > grid.columns:
                grid.resize(n)
            if field_name == "sites" and detector._by_groups:  # older states kept them: unused, dropped
                grid.restore([], np.zeros(n, dtype=np.int32), np.zeros(0, dtype=np.int16), np.zeros(0))
                continue
            if "steps" in g and (not quantized or len(_unpack(g["steps"], "<u2")) != int(lengths[:merged].sum())):
                raise ValueError(f"{field_name}: merged values do not match the merged points")
            _restore_grid(grid, [name_at(i) for i in g["names"]], g, version)
        detector._fit_history()
        detector._last_groups = {
            name_at(g[0]): (_req(g[1], int), _req(g[2], int), _req(g[3], int)) for g in state["last_groups"]
        }
        detector.profiles = _req(state["profiles"], int)
        detector.first_time = _opt(state["first_time"], int)
        detector.last_time = _opt(state["last_time"], int)
        detector.restarts = _req(state["restarts"], int)
        detector.ignored = _req(state["ignored"], int)
        detector.segment_start = _num(state["segment_start"])
        detector.session = _opt(state["session"], str)
        detector.status = Status(state["status"])
        flagged_since = state["flagged_since"]
        detector.flagged_since = None if flagged_since is None else _num(flagged_since)
        detector.first_flagged_at = _opt(state["first_flagged_at"], int)
        detector.last_restart_reason = _req(state["last_restart_reason"], str)
        detector.sample_period = _num(state.get("sample_period", 0.0))
        resolving = state.get("resolving_since")  # these three keys are absent from older states
        detector.resolving_since = None if resolving is None else _num(resolving)
        detector.transitions = [(_req(t[0], int), Status(t[1]), Status(t[2])) for t in state.get("transitions", [])][
            -MAX_TRANSITIONS:
        ]
        report = state["report"]
        detector._report = None if report is None else _report_from_state(key, report)
        detector.version = _opt(state.get("service_version"), str)
        own = state.get("own") or [Status.INSUFFICIENT_DATA.value, None, None]
        detector._own = (Status(own[0]), *(None if v is None else _num(v) for v in own[1:3]))  # type: ignore[assignment]
        early = state.get("early")
        if early is not None:
            e_nanos = _unpack(early["time_nanos"], "<i8")
            e_total, e_cumulative = _unpack(early["total"], "<f8"), _unpack(early["cumulative"], "<f8")
            if not len(e_total) == len(e_cumulative) == len(e_nanos) <= config.max_points:
                raise ValueError("early: array lengths differ or exceed max_points")
            e_weight = _unpack(early["weight"], "<i2") if "weight" in early else np.ones(len(e_nanos), dtype=np.int16)
            if len(e_weight) != len(e_nanos) or (e_weight < 1).any():
                raise ValueError("early: bad weights")
            size = max(4, len(e_nanos))
            early_points, early_sites = Points(size), new_grid(key.kind, size)
            detector._early = (early_points, early_sites)
            for t, total_, cum, w in zip(
                e_nanos.tolist(), e_total.tolist(), e_cumulative.tolist(), e_weight.tolist(), strict=True
            ):
                early_points.append(t, total_, None if math.isnan(cum) else cum, weight=w)
            g = _resolved(early["sites"])
            lengths = _unpack(g["lengths"], "<i4")
            if len(lengths) != len(e_nanos):
                raise ValueError(f"early.sites: {len(lengths)} points, not {len(e_nanos)}")
            _restore_grid(early_sites, [name_at(i) for i in g["names"]], g, version)
        fix = state.get("fix")
        detector.fix = None if fix is None else _fix_from_state(fix, config.max_points)
        return detector

    def _fit_history(self) -> None:
        """After a restore: keep the newest `max_points` profiles, merge what `update` would have merged,
        and give the arrays their usual size (a history written with other settings or an older version)."""
        points = self.points
        while points.profiles > self.config.max_points and len(points) > 1:
            points.popleft()
            self._sites.popleft()
            self._groups.popleft()
        while points.fine() >= self.config.fine_points + history.COARSE_FACTOR:
            self._coarsen()
        columns = history_columns(self.config.max_points, self.config.fine_points)
        if points.capacity != columns and len(points) <= columns:
            points.resize(columns)
            self._sites.resize(columns)
            self._groups.resize(columns)

    def timeline(self) -> list[tuple[int, float]]:
        """(time_nanos, value) for the points of the current history, for charts.

        Heap: in-use bytes; goroutine kinds: goroutines; mutex/block: the lock delay rate in ns per second
        between consecutive profiles (one point fewer than the history; the last value is the report's
        `current`).
        """
        points = self.points
        if self.key.kind in (ProfileKind.MUTEX, ProfileKind.BLOCK):
            if len(points) < 2:
                return []
            t = points.times()
            total = contention.cumulative_delay(self, contention.lock_sites(self)).sum(axis=0)
            rates = np.diff(total) / np.diff(t)
            stamps = points.time_nanos[points.order()].tolist()
            return [(stamp, float(r)) for stamp, r in zip(stamps[1:], rates, strict=True)]
        order = points.order()
        return list(zip(points.time_nanos[order].tolist(), points.total[order].tolist(), strict=True))

    def _restart_reason(self, summary: ProfileSummary, last: Point | None, now: float, version: str | None) -> str:
        if last is None:
            return ""
        if version and self.version and version != self.version:
            return f"new version {version} (was {self.version})"
        if summary.cumulative is not None and last.cumulative is not None and summary.cumulative < last.cumulative:
            return "cumulative totals went down"
        session = summary.labels.get("__session_id__")
        if session is not None and self.session is not None and session != self.session:
            return "new __session_id__"
        if now - last.time > self.config.max_gap_seconds:
            return f"gap of {now - last.time:.0f} s"
        return ""

    def _remember(self, summary: ProfileSummary) -> None:
        self.sample_period = summary.sample_period
        heap = summary.kind is ProfileKind.HEAP
        for s in () if self._by_groups else summary.sites:
            if s.function not in self.meta:
                # Shared like the names: the series of one service (its pods) hold one copy.
                self.meta[intern(s.function)] = shared_meta(s.function, s.file, s.line, leaf=s.leaf)
            if heap and s.count > 0:
                self.sizes[intern(s.function)] = s.value / s.count
        for g in summary.groups:
            if g.key not in self.meta:
                self.meta[intern(g.key)] = shared_meta(
                    g.function, g.file, g.line, state=g.state, creator=g.creator, blocking=g.blocking
                )
        if len(self.meta) > MAX_META:
            live = {*self._sites.index, *self._groups.index}
            live.update(s.function for s in summary.sites)
            live.update(g.key for g in summary.groups)
            self.meta = {k: v for k, v in self.meta.items() if k in live}
            self.sizes = {k: v for k, v in self.sizes.items() if k in live}

    # -- fix verification -------------------------------------------------------------------------

    def _restart_fix(self, version: str | None, time_nanos: int) -> None:
        """At a restart (before the history is cleared): start, carry on or leave the fix verification."""
        check = self.fix
        new_version = bool(version and self.version and version != self.version)
        if not new_version:
            return  # the same version restarted: a verification in progress goes on with the new process
        assert version is not None
        assert self.version is not None
        if check is not None and check.verdict is not FixVerdict.FIXED:
            # Another deploy while the first is unverified or did not fix it: compare with the same flagged process.
            check.after_version, check.restart_time_nanos = version, time_nanos
            check.result = pending(check.before, check.sites, version, time_nanos, self.config.fix)
            return
        if not self.status.flagged:
            return
        cfg = self.config.fix
        sites: tuple[str, ...] = ()
        growers = self._report.top_growers if self._report is not None else ()
        if self.key.kind is ProfileKind.HEAP:
            # The sites that grew significantly (what the flag rests on), not churn that happened to rise.
            z_min = self.config.heap.z_suspect
            significant = [g for g in growers if _num_or(g.detail.get("slope_low_per_hour")) > 0]
            sites = tuple(g.function for g in significant if _num_or(g.detail.get("z")) >= z_min)[: cfg.max_sites]
        elif self.key.kind in (ProfileKind.MUTEX, ProfileKind.BLOCK):
            # The locks the flag named (a tenth of the delay or more); the verdict compares all lock sites.
            sites = tuple(g.function for g in growers if g.share >= 0.1)[: cfg.max_sites]
        # Contention comes with load, not age: compared at least up to `min_compare_seconds` past the age its
        # flag was raised at (capped at the flagged process's life, see `fix.compare_age`).
        flag_age = 0.0 if self.flagged_since is None else self.flagged_since - self.segment_start
        before = self._segment(self.version, sites, cfg.compare_seconds, min_age=flag_age + cfg.min_compare_seconds)
        before = before.upto(compare_age(before, cfg))
        if before.span < cfg.min_compare_seconds or len(before.ages) < 4:
            return  # too short a life to compare with: the restart resolves the series as any restart does
        self.fix = FixCheck(
            before=before,
            sites=sites,
            after_version=version,
            restart_time_nanos=time_nanos,
            held=self.status,
            held_since=self.flagged_since,
            result=pending(before, sites, version, time_nanos, cfg),
        )

    def _segment(self, version: str, sites: tuple[str, ...], age: float, min_age: float = 0.0) -> Segment:
        """The current segment (with its start that left the history) as a fix verification compares it at
        `age` since it began: totals and what a fix is judged on (the `sites`' bytes for heap, the
        lock sites' cumulative delay and the most contended one's for mutex and block, else the totals).
        Mutex and block: `min_age` is the segment's `min_age` (see `fix.Segment`)."""
        parts = [self._early] if self._early is not None and self._early[0] else []
        parts.append((self.points, self._sites))
        ages = np.concatenate([points.times() - self.segment_start for points, _ in parts])
        totals = np.concatenate([points.totals() for points, _ in parts])
        if self.key.kind in (ProfileKind.MUTEX, ProfileKind.BLOCK):
            names, ages, cumulative = self._lock_delay()
            top_site, top = top_lock(names, ages, cumulative, min(max(age, min_age), float(ages[-1])))
            measured = cumulative.sum(axis=0) if len(names) else np.zeros(len(ages))
            return Segment(version, ages, totals, measured, top_site, top, min_age)
        if self.key.kind is ProfileKind.HEAP:
            measured = np.concatenate(
                [
                    grid.matrix(names).sum(axis=0)
                    if (names := [n for n in sites if n in grid.index])
                    else np.zeros(len(points))
                    for points, grid in parts
                ]
            )
        else:
            measured = totals
        return Segment(version, ages, totals, measured)

    def _lock_delay(self) -> tuple[list[str], FloatArray, FloatArray]:
        """Mutex and block: the lock sites, ages since the segment began and the sites' cumulative delay
        (rows) over the current segment, with its start that left the history."""
        parts = [self._early] if self._early is not None and self._early[0] else []
        parts.append((self.points, self._sites))
        ages = np.concatenate([points.times() - self.segment_start for points, _ in parts])
        names, cumulative = contention.segment_delay(self, [grid for _, grid in parts])
        return names, ages, cumulative

    def _evaluate_with_fix(self, now: float) -> SeriesReport:
        """Evaluate, then apply a fix verification: hold the flag while its verdict is pending, drop it
        when the deploy fixed the leak (the new version's own status shows), keep it when it did not."""
        check = self.fix
        if check is None:
            return self._evaluate(now)
        if check.verdict is FixVerdict.PENDING:
            self.status, self.flagged_since, self.resolving_since = self._own
            report = self._evaluate(now)
            self._own = (self.status, self.flagged_since, self.resolving_since)
            new = self._segment(check.after_version, check.sites, compare_age(check.before, self.config.fix))
            floor = self.config.contention.min_delay_rate * NANOS
            result = judge(check, new, self.config.fix, floor)
            if result is not None:
                check.result = result
            held = result is None or result.verdict is FixVerdict.NOT_FIXED
            # The held flag, unless the new version is flagged on its own (then the graver of the two).
            if held and (not self.status.flagged or check.held is Status.CONFIRMED):
                self.status, self.flagged_since, self.resolving_since = check.held, check.held_since, None
        else:
            report = self._evaluate(now)
            if check.verdict is FixVerdict.NOT_FIXED and self.status is Status.INSUFFICIENT_DATA:
                # The unfixed version's warm-up: the leak it still has keeps the flag.
                self.status, self.flagged_since = check.held, check.held_since
        if report.status is not self.status:
            score = max(report.score, 0.5) if self.status.flagged else report.score
            report = replace(report, status=self.status, score=score)
        return replace(report, fix=check.result)

    # -- evaluation -----------------------------------------------------------------------------

    def _evaluate(self, now: float) -> SeriesReport:
        kind = self.key.kind
        if kind is ProfileKind.HEAP:
            return heap.evaluate(self, now)
        if kind in (ProfileKind.GOROUTINE, ProfileKind.GOROUTINELEAK):
            return goroutine.evaluate(self, now)
        return contention.evaluate(self, now)

    def _series(self) -> tuple[FloatArray, FloatArray]:
        return self.points.times(), self.points.totals()

    def _bucket(self, t: FloatArray) -> float:
        if self.config.bucket_seconds > 0:
            return self.config.bucket_seconds
        auto = self.config.auto_bucket_below_seconds
        if len(t) >= 3 and median_finite(np.diff(t)) < auto:  # float(np.median(...)), times are finite
            return self.config.auto_bucket_seconds
        return 0.0

    def _matrix(self, names: list[str], attr: str) -> FloatArray:
        grid = self._sites if attr == "sites" else self._groups
        return grid.matrix(names)

    def _transition(self, flag: bool, keep: bool, confirm: bool, now: float) -> Status:
        """Apply hysteresis: suspect on `flag`, stay flagged while `keep`, confirm on `confirm`."""
        flagged = self.status.flagged
        if flagged and not flag and not keep:
            # No flapping: back to ok only once the evidence has been gone for `resolve_seconds` (a restart
            # resolves at once, in `update`).
            if self.resolving_since is None:
                self.resolving_since = now
            if now - self.resolving_since < self.config.resolve_seconds:
                keep = True
        elif flag or keep:
            self.resolving_since = None
        if flag or (flagged and keep):
            if not flagged:
                self.flagged_since = now
                if self.first_flagged_at is None:
                    self.first_flagged_at = int(now * NANOS)
            status = Status.CONFIRMED if confirm or self.status is Status.CONFIRMED else Status.SUSPECTED
        else:
            self.flagged_since = None
            self.resolving_since = None
            status = Status.OK
        self.status = status
        return status

    def _flag_age(self, now: float) -> float:
        return 0.0 if self.flagged_since is None else now - self.flagged_since

    def _site_names(self) -> list[str]:
        return self._sites.ranked(self.config.screened_sites, OTHER_SITE)

    def _growers(
        self, trends: list[tuple[str, Trend, float]], keep: frozenset[str] = frozenset(), first: str = ""
    ) -> tuple[Grower, ...]:
        positive = [(name, tr, cur) for name, tr, cur in trends if tr.slope > 0 or name in keep]
        positive.sort(key=lambda item: (item[0] != first, -item[1].slope))  # `first`: what the verdict rests on
        total = sum(tr.slope for _, tr, _ in positive) or 1.0
        out = []
        for name, tr, cur in positive[: self.config.top_growers]:
            meta = self.meta.get(name) or SiteMeta(name, "", 0)
            detail: dict[str, object] = {"z": round(tr.z, 3), "slope_low_per_hour": tr.low}
            if meta.leaf and meta.leaf != meta.function:
                detail["leaf"] = meta.leaf
            if meta.creator:
                detail["created_by"] = meta.creator
            if meta.blocking and meta.blocking != meta.function:
                detail["blocking"] = meta.blocking
            out.append(
                Grower(
                    function=meta.function,
                    file=meta.file,
                    line=meta.line,
                    growth_per_hour=tr.slope,
                    share=tr.slope / total,
                    current=cur,
                    state=meta.state,
                    detail=detail,
                )
            )
        return tuple(out)

    # -- reports --------------------------------------------------------------------------------

    def _build(
        self,
        now: float,
        current: float,
        growth: float,
        slope_per_hour: float,
        growers: tuple[Grower, ...],
        evidence: Evidence,
        strength: float = 0.0,
    ) -> SeriesReport:
        ttl = None
        limit = self.memory_limit_bytes if self.key.kind is ProfileKind.HEAP else None
        if limit:
            evidence.memory_limit_bytes = limit
            if current >= limit:
                ttl = 0.0
            elif slope_per_hour > 0:
                ttl = (limit - current) / slope_per_hour * HOUR
        if self.restarts:
            evidence.last_restart = self.last_restart_reason
        if self.ignored:
            evidence.ignored_out_of_order = self.ignored
        score = 0.0 if self.status is Status.INSUFFICIENT_DATA else min(1.0, max(0.0, strength) / 5.0)
        if self.status.flagged:
            score = max(score, 0.5)
        return SeriesReport(
            key=self.key,
            profiles=self.profiles,
            first_time_nanos=self.first_time or int(now * NANOS),
            last_time_nanos=self.last_time or int(now * NANOS),
            status=self.status,
            first_flagged_at_nanos=self.first_flagged_at,
            score=round(score, 3),
            current=current,
            growth_per_hour=growth,
            time_to_limit_seconds=ttl,
            restarts=self.restarts,
            top_growers=growers,
            evidence=evidence,
        )

    def _empty_report(self) -> SeriesReport:
        return SeriesReport(
            key=self.key,
            profiles=0,
            first_time_nanos=0,
            last_time_nanos=0,
            status=Status.INSUFFICIENT_DATA,
            first_flagged_at_nanos=None,
            score=0.0,
            current=0.0,
            growth_per_hour=0.0,
            time_to_limit_seconds=None,
            restarts=0,
            top_growers=(),
        )


# -- plain-data helpers for persistence ---------------------------------------------------------------


def _plain(value: object, where: str) -> Any:
    """A deep copy of `value` made only of dict/list/str/int/float/bool/None (numpy scalars converted)."""
    try:
        return _plain_fast(value)
    except TypeError:
        return _plain_slow(value, where)  # names where the offending value is


_PLAIN_TYPES = (str, bool, int, float, type(None))


def _plain_fast(value: object) -> Any:
    kind = type(value)
    if kind in _PLAIN_TYPES:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): _plain_fast(v) for k, v in value.items()}  # type: ignore[attr-defined]
    if kind is list or kind is tuple:
        return [_plain_fast(v) for v in value]  # type: ignore[attr-defined]
    return _plain_slow(value, "")


def _plain_slow(value: object, where: str) -> Any:
    if value is None or type(value) in (str, bool, int, float):
        return value
    if isinstance(value, Enum):  # e.g. Status, ProfileKind: their string value
        return _plain_slow(value.value, where)
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):  # np.float64 is a float subclass: made a plain float
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain_slow(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_slow(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{where}: {type(value).__name__} is not plain data")


def _num_or(value: object, default: float = 0.0) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _req(value: Any, kind: type[Any]) -> Any:
    if isinstance(value, bool) and kind is not bool:
        raise TypeError(f"expected {kind.__name__}, got bool")
    if not isinstance(value, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def _opt(value: Any, kind: type[Any]) -> Any:
    return None if value is None else _req(value, kind)


def _num(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _report_to_state(report: SeriesReport) -> dict[str, Any]:
    return {
        "profiles": report.profiles,
        "first_time_nanos": report.first_time_nanos,
        "last_time_nanos": report.last_time_nanos,
        "status": report.status.value,
        "first_flagged_at_nanos": report.first_flagged_at_nanos,
        "score": report.score,
        "current": report.current,
        "growth_per_hour": report.growth_per_hour,
        "time_to_limit_seconds": report.time_to_limit_seconds,
        "restarts": report.restarts,
        "top_growers": [
            {
                "function": g.function,
                "file": g.file,
                "line": g.line,
                "growth_per_hour": g.growth_per_hour,
                "share": g.share,
                "current": g.current,
                "state": g.state,
                "detail": _plain(g.detail, "detail"),
            }
            for g in report.top_growers
        ],
        "evidence": _plain(report.evidence.to_dict(), "evidence"),
        "transitions": [[t, a.value, b.value] for t, a, b in report.transitions],
        "fix": None if report.fix is None else _fix_result_to_state(report.fix),
    }


def _side_to_state(side: FixSide) -> dict[str, Any]:
    return {
        "version": side.version,
        "growth_per_hour": side.growth_per_hour,
        "growth_low_per_hour": side.growth_low_per_hour,
        "growth_high_per_hour": side.growth_high_per_hour,
        "total_growth_per_hour": side.total_growth_per_hour,
        "current": side.current,
        **(
            {}
            if side.delay_rate is None
            else {
                "delay_rate": side.delay_rate,
                "delay_rate_low": side.delay_rate_low,
                "delay_rate_high": side.delay_rate_high,
                "top_site": side.top_site,
                "top_site_share": side.top_site_share,
            }
        ),
    }


def _side_from_state(s: Mapping[str, Any]) -> FixSide:
    delay = "delay_rate" in s  # contention sides only
    return FixSide(
        version=_req(s["version"], str),
        growth_per_hour=_num(s["growth_per_hour"]),
        growth_low_per_hour=_num(s["growth_low_per_hour"]),
        growth_high_per_hour=_num(s["growth_high_per_hour"]),
        total_growth_per_hour=_num(s["total_growth_per_hour"]),
        current=_num(s["current"]),
        delay_rate=_num(s["delay_rate"]) if delay else None,
        delay_rate_low=_num(s["delay_rate_low"]) if delay else None,
        delay_rate_high=_num(s["delay_rate_high"]) if delay else None,
        top_site=_req(s["top_site"], str) if delay else "",
        top_site_share=_num(s["top_site_share"]) if delay else None,
    )


def _fix_result_to_state(fix: FixVerification) -> dict[str, Any]:
    state: dict[str, Any] = _plain(
        {
            "verdict": fix.verdict.value,
            "restart_time_nanos": fix.restart_time_nanos,
            "age_seconds": fix.age_seconds,
            "sites": list(fix.sites),
            "before": _side_to_state(fix.before),
            "after": None if fix.after is None else _side_to_state(fix.after),
            "after_version": fix.after_version,
        },
        "fix",
    )
    return state


def _fix_result_from_state(f: Mapping[str, Any]) -> FixVerification:
    after = f["after"]
    return FixVerification(
        verdict=FixVerdict(f["verdict"]),
        restart_time_nanos=_req(f["restart_time_nanos"], int),
        age_seconds=_num(f["age_seconds"]),
        sites=tuple(_req(s, str) for s in f["sites"]),
        before=_side_from_state(f["before"]),
        after=None if after is None else _side_from_state(after),
        after_version=_req(f["after_version"], str),
    )


def _fix_to_state(check: FixCheck, pack: Callable[..., Any]) -> dict[str, Any]:
    """A fix verification in progress or done; the flagged segment's arrays packed like the history's."""
    state: dict[str, Any] = _plain(
        {
            "sites": list(check.sites),
            "after_version": check.after_version,
            "restart_time_nanos": check.restart_time_nanos,
            "held": check.held.value,
            "held_since": check.held_since,
            "result": _fix_result_to_state(check.result),
            "before_version": check.before.version,
        },
        "fix",
    )
    b = check.before
    state.update(ages=pack(b.ages.copy()), totals=pack(b.totals.copy()), measured=pack(b.measured.copy()))
    if b.top_measured is not None:  # contention: the most contended lock site of the flagged process
        state.update(top_site=b.top_site, top_measured=pack(b.top_measured.copy()), min_age=b.min_age)
    return state


def _fix_from_state(f: Mapping[str, Any], max_points: int) -> FixCheck:
    ages, totals, measured = _unpack(f["ages"], "<f8"), _unpack(f["totals"], "<f8"), _unpack(f["measured"], "<f8")
    if not len(ages) == len(totals) == len(measured) <= max_points or not len(ages):
        raise ValueError("fix: segment arrays differ in length, are empty or exceed max_points")
    held = None if f["held_since"] is None else _num(f["held_since"])
    top = None if f.get("top_measured") is None else _unpack(f["top_measured"], "<f8")
    if top is not None and len(top) != len(ages):
        raise ValueError("fix: top_measured differs in length from the segment")
    top_site = _req(f.get("top_site", ""), str)
    return FixCheck(
        before=Segment(
            _req(f["before_version"], str), ages, totals, measured, top_site, top, _num(f.get("min_age", 0.0))
        ),
        sites=tuple(_req(s, str) for s in f["sites"]),
        after_version=_req(f["after_version"], str),
        restart_time_nanos=_req(f["restart_time_nanos"], int),
        held=Status(f["held"]),
        held_since=held,
        result=_fix_result_from_state(f["result"]),
    )


def _report_from_state(key: SeriesKey, r: Mapping[str, Any]) -> SeriesReport:
    ttl = r["time_to_limit_seconds"]
    return SeriesReport(
        key=key,
        profiles=_req(r["profiles"], int),
        first_time_nanos=_req(r["first_time_nanos"], int),
        last_time_nanos=_req(r["last_time_nanos"], int),
        status=Status(r["status"]),
        first_flagged_at_nanos=_opt(r["first_flagged_at_nanos"], int),
        score=_num(r["score"]),
        current=_num(r["current"]),
        growth_per_hour=_num(r["growth_per_hour"]),
        time_to_limit_seconds=None if ttl is None else _num(ttl),
        restarts=_req(r["restarts"], int),
        top_growers=tuple(
            Grower(
                function=_req(g["function"], str),
                file=_req(g["file"], str),
                line=_req(g["line"], int),
                growth_per_hour=_num(g["growth_per_hour"]),
                share=_num(g["share"]),
                current=_num(g["current"]),
                state=_opt(g["state"], str),
                detail=dict(_req(g["detail"], dict)),
            )
            for g in r["top_growers"]
        ),
        evidence=Evidence.from_dict(_req(r["evidence"], dict)),
        transitions=tuple((_req(t[0], int), Status(t[1]), Status(t[2])) for t in r.get("transitions", [])),
        fix=None if r.get("fix") is None else _fix_result_from_state(r["fix"]),
    )
