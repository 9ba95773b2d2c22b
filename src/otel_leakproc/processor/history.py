"""The history of one series: its points (time, total, cumulative counter) and its grids of values per name.

`Points` keeps each point's numbers in a ring of arrays; `Grid` keeps the values per site (heap, mutex,
block) or goroutine group and point, dense or sparse, kept up to date as points come and go. Both are bounded
by the history's `max_points`; the detectors read matrices from them after every profile. `Grid.export` and
`Grid.restore` give and take the plain arrays the detector state is written from (`Grid.export_by_id`: the
layout of checkpoints, each point's values by id with their moves from the value order).

Coarser far history: the newest `processor.fine_points` points are kept whole; older ones are merged
`COARSE_FACTOR` (6) to one (`Points.merge`, `Grid.merge`: mean time, mean total, mean value of each name,
absent names counting as 0; the last cumulative counter). A merged point has a weight (how many profiles it
stands for), and the history holds at most `max_points` profiles by weight, so with `fine_points: 60` a full
window (240 profiles, 30 s apart) is 60 whole points (the last 30 minutes) and 30 merged ones (3 minutes
each). Merged levels are kept in 16 bits as every level is (`LEVELS` below; state version 4 stored them as
`quantize` steps, read back with `dequantize`). The default
`fine_points` (240, = `max_points`) merges nothing: the long-series study (docs/detection.md) found that
merging past 60 points changes verdicts of real series longer than that.
"""

from __future__ import annotations

import itertools
import math
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from sys import intern
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from otel_leakproc.processor import _grid_pack
from otel_leakproc.processor.trend import FloatArray

# Bound on the rows of a series' dense site-by-point grid (live names in the history). Real series name
# far fewer (top-K sites that mostly persist); a series whose names churn past it switches its grid to a
# sparse form (per point: name ids and values, the top-K of that profile) until its history is cut. Both
# forms give the same matrices; either way memory is bounded by max_points x top-K values and names.
MAX_GRID_ROWS = 256

# How a grid stores its values (`ValueScale`). Profile values are sampled estimates (a heap site's bytes are a
# count of sampled objects scaled up), so a grid need not keep them to 53 bits; every matrix read from a grid is
# float64 again, so the statistics compute as before, on values rounded once when they enter the history.
# - Levels (heap bytes, goroutine counts: every kind but mutex and block) in 16 bits (`LEVELS`): whole numbers
#   below 2**15 exactly (goroutine counts, small heap sites), larger values on a log scale of 1,024 steps per
#   octave up to 2**47 (within 0.034%, far below the sampling error of a heap site's bytes).
#   That is 2 bytes per value instead of 8 (float64) or 4 (float32), the largest part of a series' memory and
#   of its checkpoint.
# - Mutex and block grids hold cumulative counters, whose differences are the signal: `CounterGrid` keeps
#   each site's increase between profiles in 16 bits (`INCREMENTS`, below), not the counter (a log scale
#   would lose the increments of a large counter); state version 5 kept float32 counters (`FLOAT32`).
# Totals, cumulative counters and times (`Points`) stay float64.
VALUE_DTYPE = np.float32  # the FLOAT32 scale's dtype (and that of states version 3)


class ValueScale:
    """How a grid stores values: as `dtype` codes; `encode` (values to codes) and `decode` (codes to float64).

    `absent` is the code a grid holds where a point did not name a value (float scales: NaN; the 16-bit
    scales reserve a code no value encodes to); it decodes to 0."""

    __slots__ = ("absent", "dtype", "name")

    def __init__(self, name: str, dtype: type[np.generic], absent: Any = math.nan) -> None:
        self.name = name
        self.dtype = dtype
        self.absent = absent

    def encode(self, values: Any) -> npt.NDArray[Any]:
        return np.asarray(values, dtype=self.dtype)

    def decode(self, codes: npt.NDArray[Any]) -> FloatArray:
        result: FloatArray = np.nan_to_num(codes.astype(np.float64), nan=0.0, posinf=np.inf, neginf=-np.inf)
        return result

    def present(self, codes: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
        """Where `codes` hold a value (not the `absent` code)."""
        result: npt.NDArray[np.bool_] = ~np.isnan(codes)
        return result

    def stored(self, codes: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Codes as written by a checkpoint, made valid values (float scales: as they are)."""
        return codes


# Levels: codes below 2**15 are the value itself; code 2**15 + k is 2**15 * 2 ** (k / LEVEL_STEPS).
LEVEL_STEPS = 1024
_LEVEL_SPLIT = 1 << 15
_LEVEL_ABSENT = 0xFFFF  # no value: the largest code, which values reach only past 2**47 (clamped to 0xFFFE)
_LEVEL_TABLE = np.concatenate(
    [np.arange(_LEVEL_SPLIT, dtype=np.float64), _LEVEL_SPLIT * np.exp2(np.arange(_LEVEL_SPLIT) / LEVEL_STEPS)]
)
_LEVEL_TABLE[_LEVEL_ABSENT] = 0.0
_LEVEL_TABLE.setflags(write=False)


class LevelScale(ValueScale):
    """Levels in 16 bits (see `LEVELS`): exact whole numbers below 2**15, then log steps to 2**47. Negative
    values and NaN are stored as 0, values past 2**47 as 2**47 (none occur in profiles). Code 0xFFFF is
    `absent` (before state version 7 the largest level; such codes are read as 0xFFFE)."""

    __slots__ = ()

    def present(self, codes: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
        result: npt.NDArray[np.bool_] = codes != _LEVEL_ABSENT
        return result

    def stored(self, codes: npt.NDArray[Any]) -> npt.NDArray[Any]:
        result: npt.NDArray[Any] = np.minimum(codes, _LEVEL_ABSENT - 1)
        return result

    def encode(self, values: Any) -> npt.NDArray[Any]:
        v = np.array(values, dtype=np.float64)
        codes = np.rint(v)  # the whole numbers below 2**15
        big = v >= _LEVEL_SPLIT - 0.5
        if big.any():
            codes[big] = np.rint(np.log2(v[big] / _LEVEL_SPLIT) * LEVEL_STEPS) + _LEVEL_SPLIT
        codes[~(codes >= 0)] = 0  # negative values and NaN
        np.minimum(codes, _LEVEL_ABSENT - 1, out=codes)
        return codes.astype(np.uint16)

    def decode(self, codes: npt.NDArray[Any]) -> FloatArray:
        result: FloatArray = _LEVEL_TABLE[codes]
        return result


FLOAT32 = ValueScale("float32", np.float32)  # (absent: NaN, as for every float scale)
FLOAT64 = ValueScale("float64", np.float64)  # (no rounding: `CounterGrid.merge`'s working copy)
LEVELS = LevelScale("levels16", np.uint16, _LEVEL_ABSENT)
SCALES = {scale.name: scale for scale in (FLOAT32, LEVELS)}

NANOS = 1_000_000_000
COMPACT_FINE_POINTS = 60  # `processor.fine_points` of the compact history (benchmarks, studies)
COARSE_FACTOR = 6  # points older than the newest `fine_points` merged this many to one

# Merged levels on a 16-bit log scale: 0 is 0, q >= 1 is 2 ** ((q - 1) / STEPS - OFFSET), for values from
# 2**-16 to about 2**49.5 (clamped to that range; below 2**-16 is 0).
Q_STEPS = 1000
Q_OFFSET = 16


def quantize(values: FloatArray) -> npt.NDArray[np.uint16]:
    """Levels as 16-bit log steps (see Q_STEPS); the inverse of `dequantize` on values `snap` gave."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.rint((np.log2(v) + Q_OFFSET) * Q_STEPS) + 1
    q = np.where(v >= 2.0**-Q_OFFSET, np.clip(q, 1, 65535), 0)
    return q.astype(np.uint16)


def dequantize(q: npt.NDArray[Any]) -> FloatArray:
    steps = q.astype(np.float64)
    out: FloatArray = np.where(steps > 0, np.exp2((steps - 1) / Q_STEPS - Q_OFFSET), 0.0)
    return out


def snap(values: FloatArray) -> FloatArray:
    """`values` rounded to the nearest 16-bit log step (what a checkpoint stores of merged levels)."""
    return dequantize(quantize(values))


def history_columns(max_points: int, fine_points: int) -> int:
    """Points (whole and merged) a history of `max_points` profiles holds at most, `fine_points` whole."""
    if max_points <= fine_points + COARSE_FACTOR:
        return max_points
    return fine_points + COARSE_FACTOR + -(-(max_points - fine_points - COARSE_FACTOR) // COARSE_FACTOR)


class Point(NamedTuple):
    """One point of the history, as read back from `Points` (the history keeps no object per point)."""

    time_nanos: int
    time: float  # seconds since the epoch
    total: float
    cumulative: float | None
    weight: int = 1  # profiles this point stands for (merged points: COARSE_FACTOR)


# Times at or after 2^29 s (1987) take the vectorised path of `seconds_of`; earlier ones, Python's division.
_EXACT_FROM_SECONDS = 1 << 29


def seconds_of(nanos: npt.NDArray[np.int64]) -> FloatArray:
    """`t / 1_000_000_000` for each int64 `t`, rounded once to the nearest float64, exactly as Python divides
    two ints, at a fifth of the cost of a Python loop over the points.

    With t = q * 1e9 + r, the float64 sum q + fl(r / 1e9) is off the exact quotient by at most 2^-54 (the
    rounding of r / 1e9 < 1) before it is rounded. For q >= 2^29 a float64's rounding midpoints lie at
    multiples of 2^-24 or coarser, and an exact quotient (a multiple of 1e-9) that is not itself a midpoint
    is at least 1 / (1e9 * 2^24) > 2^-54 from every one of them, so the sum rounds to the same float; one
    that is a midpoint makes r / 1e9 exact and is rounded half-even by both. Earlier times go through Python.
    """
    q = nanos // NANOS
    out: FloatArray = q.astype(np.float64) + (nanos - q * NANOS) / NANOS
    early = q < _EXACT_FROM_SECONDS
    if early.any():
        out[early] = [t / NANOS for t in nanos[early].tolist()]
    return out


class Points:
    """Time, total and cumulative counter of each point of the history, in a ring of `capacity` slots.

    The history used to keep one object (and a dict of site values) per point; the numbers live in
    arrays now, and the site values only in the grids. A missing cumulative counter is stored as NaN. A
    point's time in seconds is not stored: it is `time_nanos / 1e9` (what the detector computes it as).
    """

    __slots__ = ("capacity", "coarse", "cumulative", "n", "profiles", "start", "time_nanos", "total", "weight")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.start = 0
        self.n = 0
        self.coarse = 0  # merged points (the oldest ones)
        self.profiles = 0  # profiles the points stand for (sum of weights)
        self.time_nanos = np.zeros(capacity, dtype=np.int64)
        self.total = np.zeros(capacity)
        self.cumulative = np.zeros(capacity)
        self.weight = np.zeros(capacity, dtype=np.int16)

    def __len__(self) -> int:
        return self.n

    def __bool__(self) -> bool:
        return self.n > 0

    def _slot(self, i: int) -> int:
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError("point index out of range")
        return (self.start + i) % self.capacity

    def __getitem__(self, i: int) -> Point:
        slot = self._slot(i)
        cumulative = float(self.cumulative[slot])
        nanos = int(self.time_nanos[slot])
        return Point(
            nanos,
            nanos / NANOS,
            float(self.total[slot]),
            None if math.isnan(cumulative) else cumulative,
            int(self.weight[slot]),
        )

    def __iter__(self) -> Iterator[Point]:
        return (self[i] for i in range(self.n))

    def clear(self) -> None:
        self.start = 0
        self.n = 0
        self.coarse = 0
        self.profiles = 0

    def append(self, time_nanos: int, total: float, cumulative: float | None, *, weight: int = 1) -> None:
        if self.n == self.capacity:
            self.resize(self.capacity + max(4, self.capacity // 2))
        slot = (self.start + self.n) % self.capacity
        self.n += 1
        self.time_nanos[slot] = time_nanos
        self.total[slot] = total
        self.cumulative[slot] = math.nan if cumulative is None else cumulative
        self.weight[slot] = weight
        self.profiles += weight

    def popleft(self) -> None:
        slot = self.start
        self.profiles -= int(self.weight[slot])
        if self.coarse:
            self.coarse -= 1
        self.start = (self.start + 1) % self.capacity
        self.n -= 1

    def fine(self) -> int:
        """Whole points (the newest)."""
        return self.n - self.coarse

    def merge(self, count: int) -> None:
        """Merge the oldest `count` whole points into one (see the module docstring)."""
        order = self.order()
        i = self.coarse
        cols = order[i : i + count]
        target = cols[0]
        nanos = sum(self.time_nanos[cols].tolist()) // count  # exact: Python ints
        self.time_nanos[target] = nanos
        self.total[target] = self.total[cols].mean()
        self.cumulative[target] = self.cumulative[cols[-1]]
        self.weight[target] = int(self.weight[cols].sum())
        src, dst = order[i + count :], order[i + 1 : self.n - count + 1]
        for array in (self.time_nanos, self.total, self.cumulative, self.weight):
            array[dst] = array[src]
        self.n -= count - 1
        self.coarse += 1

    def resize(self, capacity: int) -> None:
        """Change the ring's capacity (at least the points held), oldest point first."""
        order = self.order()
        for name in ("time_nanos", "total", "cumulative", "weight"):
            old = getattr(self, name)
            new = np.zeros(capacity, dtype=old.dtype)
            new[: self.n] = old[order]
            setattr(self, name, new)
        self.capacity = capacity
        self.start = 0

    def first_time(self) -> float:
        return int(self.time_nanos[self.start]) / NANOS

    def order(self) -> npt.NDArray[np.intp]:
        """Slot of each point, oldest first."""
        return (self.start + np.arange(self.n)) % self.capacity

    def times(self) -> FloatArray:
        """Each point's time in seconds: its `time_nanos` / 1e9 as Python divides integers (correctly rounded;
        numpy's division of int64 by 1e9 rounds twice)."""
        return seconds_of(self.time_nanos[self.order()])

    def totals(self) -> FloatArray:
        result: FloatArray = self.total[self.order()]
        return result

    def weights(self) -> npt.NDArray[np.int16]:
        result: npt.NDArray[np.int16] = self.weight[self.order()]
        return result


class Grid:
    """Values per name (rows) and point (columns) of the history, kept up to date as points come and go.

    The detectors need site-by-point matrices after every profile; the grid is the only place the site
    values (and goroutine group counts) of the history are kept. Columns form a ring over the history
    (its length bounds them); a row lives while its name appears in at least one point of the history
    and is then reused, so rows track the live names only. A value a point does not name holds the scale's
    `absent` code (see `ValueScale`): presence is exact (a site named with 0 keeps its row), and absent
    values read as 0.

    The order in which each profile named its values (what rankings break ties with: first seen first) is
    kept only where it differs from the value order (see "naming order" below): `ties` (two bits per value,
    allocated when first needed) where values of one code were named out of name order, `exceptions` the
    whole naming order of a point that these do not give (merged points, or profiles that name sites out of
    value order). Grids built with `ordered=False` (goroutine groups, which nothing ranks)
    keep no order: they read back in value order.

    Dense while at most `max_rows` names are live (values as codes of its `scale`); past that it turns sparse
    until cleared (per column: the row ids in naming order and their values, as many as the profile named), so
    churning names cost per value, not per name x point. Both forms answer alike.
    """

    __slots__ = (
        "_free",
        "columns",
        "count",
        "dtype",
        "exceptions",
        "index",
        "max_rows",
        "n",
        "names",
        "ordered",
        "overflow",
        "scale",
        "sparse",
        "start",
        "ties",
        "values",
    )

    def __init__(
        self, columns: int, max_rows: int | None = None, scale: ValueScale = FLOAT32, ordered: bool = True
    ) -> None:
        self.columns = columns
        self.scale = scale
        self.dtype = scale.dtype  # of the stored codes
        self.max_rows = MAX_GRID_ROWS if max_rows is None else max_rows
        self.ordered = ordered
        self.overflow = False  # sparse form: too many live names for the dense one
        self.start = 0
        self.n = 0
        self.index: dict[str, int] = {}
        self.names: list[str] = []
        self._free: list[int] = []
        self.values = np.full((0, columns), scale.absent, dtype=self.dtype)
        self.count = np.zeros(0, dtype=np.int32)
        self.ties: npt.NDArray[np.uint8] | None = None  # rows x ceil(columns / 4) 2-bit fields
        self.exceptions: dict[int, npt.NDArray[np.int16]] | None = None  # column: its rows in naming order
        self.sparse: list[tuple[npt.NDArray[np.int32], npt.NDArray[Any]] | None] = []  # row ids, codes

    @property
    def rows(self) -> int:
        return len(self.index)

    def clear(self) -> None:
        self.__init__(self.columns, self.max_rows, self.scale, self.ordered)  # type: ignore[misc]

    def _row(self, name: str) -> int:
        row = self.index.get(name)
        if row is not None:
            return row
        if self._free:
            row = self._free.pop()
            self.names[row] = name
        else:
            row = len(self.names)
            self.names.append(name)
            if row >= len(self.count):
                grow = max(16, len(self.count) // 4)  # rows are most of a series' memory: small steps
                self.count = np.concatenate([self.count, np.zeros(grow, dtype=self.count.dtype)])
                if not self.overflow:
                    fill = np.full((grow, self.columns), self.scale.absent, dtype=self.dtype)
                    self.values = np.vstack([self.values, fill])
                    if self.ties is not None:
                        self.ties = np.vstack([self.ties, np.zeros((grow, self.ties.shape[1]), dtype=np.uint8)])
        self.index[name] = row
        return row

    def append(self, items: Iterable[tuple[str, float]], codes: npt.NDArray[Any] | None = None) -> None:
        """Add a point: its (name, value) pairs in the order its profile named them (or with `codes`, the
        values' codes already, in that order; the pairs' values are then not read)."""
        self._append(items, codes, order=True)

    def _append(
        self, items: Iterable[tuple[str, float]], codes: npt.NDArray[Any] | None, order: bool
    ) -> tuple[int, npt.NDArray[np.intp]] | None:
        """`append`; keeps the point's naming order when `order`. Returns its column and rows in naming
        order (dense form, values named), else None."""
        if self.n == self.columns:
            self.resize(self.columns + max(4, self.columns // 2))
        col = (self.start + self.n) % self.columns
        self.n += 1
        pairs = list(items)
        if not pairs:
            if self.overflow:
                self.sparse[col] = None
            return None
        if codes is None:
            codes = self.scale.encode([value for _, value in pairs])
        if self.overflow:
            self._append_sparse(col, pairs, codes)
            return None
        index = self.index
        known = [index.get(name, -1) for name, _ in pairs]
        if -1 not in known and len(set(known)) == len(known):
            # Every name already has a row (the usual case: a profile names the same sites as the last
            # one): one scatter per array instead of a Python step per value.
            rows = np.array(known, dtype=np.intp)
            self.values[rows, col] = codes
            self.count[rows] += 1
        else:
            named: list[int] = []
            for i, (name, _) in enumerate(pairs):
                row = index.get(name)
                if row is None:
                    if len(index) >= self.max_rows:
                        self._to_sparse(col, named)
                        self._append_sparse(col, pairs, codes, i)
                        return None
                    row = self._row(name)
                self.values[row, col] = codes[i]
                self.count[row] += 1
                named.append(row)
            rows = np.array(named, dtype=np.intp)
        if order:
            self._keep_order(col, rows)
        return col, rows

    def _to_sparse(self, col: int, named: list[int]) -> None:
        """Switch to the sparse form; column `col` holds the values of the point being added so far (the
        rows `named`, in naming order)."""
        self.sparse = [None] * self.columns
        done = self.order()[:-1]  # every point but the one being added
        if len(done):
            order, counts = self.naming(done)
            for j, c in enumerate(done.tolist()):
                rows = order[: counts[j], j]
                self.sparse[c] = (rows.astype(np.int32), self.values[rows, c].copy())
        head = np.array(named, dtype=np.intp)
        self.sparse[col] = (head.astype(np.int32), self.values[head, col].copy())
        self.overflow = True
        self.values = np.full((0, self.columns), self.scale.absent, dtype=self.dtype)
        self.ties = None
        self.exceptions = None

    def _append_sparse(self, col: int, pairs: list[tuple[str, float]], codes: npt.NDArray[Any], done: int = 0) -> None:
        head = self.sparse[col]
        rows = [] if head is None or not done else head[0].tolist()
        for name, _ in pairs[done:]:
            row = self._row(name)
            rows.append(row)
            self.count[row] += 1
        self.sparse[col] = (np.array(rows, dtype=np.int32), codes.copy())

    def _column_rows(self, col: int) -> npt.NDArray[np.intp]:
        if self.overflow:
            entry = self.sparse[col]
            return np.zeros(0, dtype=np.intp) if entry is None else entry[0].astype(np.intp)
        return np.flatnonzero(self.scale.present(self.values[: len(self.names), col]))

    def _first_rows(self) -> npt.NDArray[np.intp]:
        """Rows of the oldest point in naming order (dense form)."""
        order, counts = self.naming(np.array([self.start]))
        return order[: counts[0], 0]

    def first_items(self) -> list[tuple[str, float]]:
        """(name, value) of the oldest point, in the order its profile named them."""
        col = self.start
        if self.overflow:
            entry = self.sparse[col]
            if entry is None:
                return []
            values = self.scale.decode(entry[1]).tolist()
            return [(self.names[r], v) for r, v in zip(entry[0].tolist(), values, strict=True)]
        rows = self._first_rows()
        values = self.scale.decode(self.values[rows, col]).tolist()
        return [(self.names[r], v) for r, v in zip(rows.tolist(), values, strict=True)]

    def popleft(self) -> None:
        col = self.start
        rows = self._column_rows(col)
        if self.overflow:
            self.sparse[col] = None
        else:
            self.values[rows, col] = self.scale.absent
            self._forget_order(np.array([col]))
        self.count[rows] -= 1
        for row in rows[self.count[rows] == 0].tolist():
            del self.index[self.names[row]]
            self._free.append(row)
        self.start = (self.start + 1) % self.columns
        self.n -= 1

    def order(self) -> npt.NDArray[np.intp]:
        """Column of each point, oldest first."""
        return (self.start + np.arange(self.n)) % self.columns

    # -- naming order: the value order, with the tie fields and exceptions a point has ------------------
    #
    # A point's value order: its values by code descending (counter grids: by counter descending, the
    # counters as the grid reads them), equal ones by name. Profiles name their sites by value (the decoders
    # rank them by value, then name), so a point's naming order is its value order but within runs of values
    # that share a code (16-bit levels round values within 0.07% to one code) and that the profile named by
    # their exact values. Each value of such a run keeps its position in the naming order relative to the
    # name order, (p - q) mod 4, in a 2-bit field (`ties`, allocated when first needed): runs of up to 4
    # values. Any other order (a longer run out of name order, values not named by value) is kept whole
    # (`exceptions`).

    def _order_keys(self, cols: npt.NDArray[np.intp]) -> npt.NDArray[Any]:
        """What the value order of columns `cols` sorts by, descending (rows x columns): the codes."""
        codes = self.values[: len(self.names)][:, cols]
        keys: npt.NDArray[Any] = codes.astype(np.float64) if codes.dtype.kind == "f" else codes.astype(np.int64)
        return keys

    def _name_ranks(self) -> npt.NDArray[np.intp]:
        names = self.names
        ranks = np.empty(len(names), dtype=np.intp)
        ranks[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
        return ranks

    def _value_order(
        self, cols: npt.NDArray[np.intp]
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[Any], npt.NDArray[Any]]:
        """The value order of columns `cols`: rows x columns of row ids (present rows first), the count of
        present rows per column, the keys in that order and the keys by row."""
        height = len(self.names)
        present = self.scale.present(self.values[:height][:, cols])
        counts = present.sum(axis=0)
        keys = self._order_keys(cols)
        ranks = np.broadcast_to(self._name_ranks()[:, None], keys.shape)
        canonical: npt.NDArray[np.intp] = np.lexsort((ranks, -keys, ~present), axis=0)
        return canonical, counts, np.take_along_axis(keys, canonical, axis=0), keys

    @staticmethod
    def _runs(
        sorted_keys: npt.NDArray[Any], counts: npt.NDArray[np.intp]
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """For each place of a value order: the start of its run of equal keys and the run's length (the
        present rows' runs; the absent rows after them form runs of their own)."""
        height = sorted_keys.shape[0]
        at = np.arange(height)[:, None]
        new = np.ones(sorted_keys.shape, dtype=bool)
        new[1:] = sorted_keys[1:] != sorted_keys[:-1]
        new |= at == counts[None, :]
        start = np.maximum.accumulate(np.where(new, at, 0), axis=0)
        marks = np.where(new, at, height)
        following = np.full(sorted_keys.shape, height, dtype=np.intp)
        following[:-1] = np.flip(np.minimum.accumulate(np.flip(marks[1:], axis=0), axis=0), axis=0)
        return start, following - start

    def naming(self, cols: npt.NDArray[np.intp]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """The naming order of columns `cols` (dense form): rows x columns of row ids, each column's first
        `counts[j]` its values' rows in the order the profile named them (then the absent rows); and counts."""
        height = len(self.names)
        if not height:
            return np.zeros((0, len(cols)), dtype=np.intp), np.zeros(len(cols), dtype=np.intp)
        canonical, counts, sorted_keys, _ = self._value_order(cols)
        if not self.ordered or (self.ties is None and not self.exceptions):
            return canonical, counts
        named = canonical
        if self.ties is not None:
            fields = self._fields(canonical, np.broadcast_to(cols[None, :], canonical.shape))
            if fields.any():
                start, length = self._runs(sorted_keys, counts)
                at = np.arange(height)[:, None]
                place = at - start
                moved = np.where(length <= 4, start + ((place + fields) & 3), at)
                named = np.full_like(canonical, -1)
                np.put_along_axis(named, moved, canonical, axis=0)
                if (named < 0).any():  # (only from fields a checkpoint gave: what the grid sets always fits)
                    raise ValueError("grid ties: not an order of each point's values (two at one place)")
        if self.exceptions:
            for j, col in enumerate(cols.tolist()):
                whole = self.exceptions.get(col)
                if whole is not None:
                    named = named if named is not canonical else canonical.copy()
                    named[: len(whole), j] = whole
        return named, counts

    def _positions(self, named: npt.NDArray[np.intp], counts: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        """Each row's position within each column of a `naming` result (-1: absent)."""
        height, width = named.shape
        positions = np.full((len(self.names), width), -1, dtype=np.intp)
        i, j = np.nonzero(np.arange(height)[:, None] < counts[None, :])
        positions[named[i, j], j] = i
        return positions

    def _fields(self, rows: npt.NDArray[np.intp], cols: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        """The 2-bit tie fields of (rows, cols)."""
        assert self.ties is not None
        shift = ((cols & 3) << 1).astype(np.uint8)
        result: npt.NDArray[np.intp] = ((self.ties[rows, cols >> 2] >> shift) & 3).astype(np.intp)
        return result

    def _keep_order(self, col: int, rows: npt.NDArray[np.intp]) -> None:
        """Keep the naming order of the newest column `col` (its rows in naming order): nothing when it is
        the value order (values strictly descending, the usual case), else its tie fields or itself."""
        if not self.ordered or len(rows) < 2:
            return
        keys = self._newest_keys(col, rows)
        if (keys[:-1] > keys[1:]).all():
            return
        names = self.names
        ranks = np.empty(len(rows), dtype=np.intp)
        ranks[sorted(range(len(rows)), key=lambda i: names[rows[i]])] = np.arange(len(rows))
        by_value = np.lexsort((ranks, -keys))
        by_row = np.zeros((len(self.names), 1), dtype=keys.dtype)
        by_row[rows, 0] = keys
        count = np.array([len(rows)])
        self._store_order(
            np.array([col]), rows[by_value][:, None], rows[:, None], count, keys[by_value][:, None], by_row
        )

    def _newest_keys(self, col: int, rows: npt.NDArray[np.intp]) -> npt.NDArray[Any]:
        """`_order_keys` of the newest column, for `rows`."""
        codes = self.values[rows, col]
        keys: npt.NDArray[Any] = codes.astype(np.float64) if codes.dtype.kind == "f" else codes.astype(np.int64)
        return keys

    def _store_order(
        self,
        cols: npt.NDArray[np.intp],
        canonical: npt.NDArray[np.intp],
        named: npt.NDArray[np.intp],
        counts: npt.NDArray[np.intp],
        sorted_keys: npt.NDArray[Any],
        keys: npt.NDArray[Any],
    ) -> None:
        """Keep the naming orders `named` of columns `cols` (whose order state is clear) given their value
        orders `canonical` and its keys (rows x columns, the first `counts` of each column meaningful), and
        the keys by row (`keys[row, j]`)."""
        height = canonical.shape[0]
        at = np.arange(height)[:, None]
        within = at < counts[None, :]
        differ = (named != canonical) & within
        if not differ.any():
            return
        start, length = self._runs(sorted_keys, counts)
        # Named by value (each place's key as in the value order), runs out of name order at most 4 long.
        keyed = (np.take_along_axis(keys, named, axis=0) == sorted_keys) | ~within
        whole = (differ & (length > 4)).any(axis=0) | ~keyed.all(axis=0)
        fit = differ.any(axis=0) & ~whole
        if fit.any():
            place = at - start  # q of canonical[i], p of named[i]
            q = np.zeros((len(self.names), len(cols)), dtype=np.intp)
            p = np.zeros_like(q)
            i, j = np.nonzero(within & fit[None, :])
            q[canonical[i, j], j] = place[i, j]
            p[named[i, j], j] = place[i, j]
            field = (p - q) & 3
            r, jj = np.nonzero(field)
            if len(r):
                if self.ties is None:
                    self.ties = np.zeros((len(self.count), (self.columns + 3) // 4), dtype=np.uint8)
                c = cols[jj]
                # Fields of one byte do not overlap: their sum is their union (bincount, not ufunc.at, whose
                # caches stay allocated).
                width = self.ties.shape[1]
                union = np.bincount(r * width + (c >> 2), field[r, jj] << ((c & 3) << 1), self.ties.size)
                self.ties |= union.astype(np.uint8).reshape(self.ties.shape)
        for k in np.flatnonzero(whole).tolist():
            if self.exceptions is None:
                self.exceptions = {}
            self.exceptions[int(cols[k])] = named[: counts[k], k].astype(np.int16)

    def _forget_order(self, cols: npt.NDArray[np.intp]) -> None:
        """Clear the order state of columns `cols`."""
        if self.ties is not None:
            for c in cols.tolist():
                self.ties[:, c >> 2] &= np.uint8(0xFF ^ (3 << ((c & 3) << 1)))
        if self.exceptions:
            for c in cols.tolist():
                self.exceptions.pop(c, None)

    def _move_order(self, old: npt.NDArray[np.intp], new: npt.NDArray[np.intp], columns: int) -> None:
        """Keep the order state of columns `old` as columns `new` (of `columns`), forgetting the rest."""
        if self.ties is not None:
            shifts = np.arange(0, 8, 2, dtype=np.uint8)
            fields = ((self.ties[:, :, None] >> shifts) & 3).reshape(len(self.ties), -1)
            moved = np.zeros((len(fields), -(-columns // 4) * 4), dtype=np.uint8)
            moved[:, new] = fields[:, old]
            packed = (moved.reshape(len(moved), -1, 4) << shifts).sum(axis=2, dtype=np.uint8)
            self.ties = packed if packed.any() else None
        if self.exceptions:
            where = dict(zip(old.tolist(), new.tolist(), strict=True))
            self.exceptions = {where[c]: e for c, e in self.exceptions.items() if c in where} or None

    def _order_from_positions(self, positions: npt.NDArray[np.intp]) -> None:
        """Keep the naming order of every point given each row's position within it (rows x points, -1:
        absent; a restore)."""
        if not self.ordered or not self.n or not len(self.names):
            return
        cols = self.order()
        named = np.argsort(np.where(positions >= 0, positions, np.iinfo(np.intp).max), axis=0, kind="stable")
        self.ties = None
        self.exceptions = None
        canonical, counts, sorted_keys, keys = self._value_order(cols)
        self._store_order(cols, canonical, named, counts, sorted_keys, keys)

    def merge(self, first: int, count: int, quantized: bool) -> None:
        """Merge points `first` .. `first + count - 1` (in point order) into one: each name's mean value
        (absent counting as 0; `snap`ped when `quantized`), its names in first-seen order."""
        order = self.order()
        cols = order[first : first + count]
        target = int(cols[0])
        if self.overflow:
            parts = [self.sparse[int(c)] for c in cols]
            kept = [p for p in parts if p is not None]
            if kept:
                rows = np.concatenate([p[0] for p in kept]).astype(np.intp)
                sums = self.scale.decode(np.concatenate([p[1] for p in kept]))
                unique, first_at, inverse = np.unique(rows, return_index=True, return_inverse=True)
                total = np.bincount(inverse, weights=sums, minlength=len(unique))
                seen = np.bincount(inverse, minlength=len(unique))
                by_first = np.argsort(first_at, kind="stable")
                merged = total[by_first] / count
                self.count[unique] -= seen - 1
                self.sparse[target] = (
                    unique[by_first].astype(np.int32),
                    self.scale.encode(snap(merged) if quantized else merged),
                )
            else:
                self.sparse[target] = None
            for c, d in zip(order[first + count :], order[first + 1 : self.n - count + 1], strict=True):
                self.sparse[int(d)] = self.sparse[int(c)]
            for c in order[self.n - count + 1 :]:
                self.sparse[int(c)] = None
        else:
            height = len(self.names)
            named, counts = self.naming(cols)
            pos = self._positions(named, counts)
            present = pos >= 0
            seen = present.sum(axis=1)
            rows = np.flatnonzero(seen)
            merged = self.scale.decode(self.values[:height][:, cols]).sum(axis=1) / count
            first_col = present[rows].argmax(axis=1)
            ranking = np.lexsort((pos[rows, first_col], first_col))  # first seen first
            self.count[rows] -= seen[rows] - 1
            codes = np.full(height, self.scale.absent, dtype=self.dtype)
            codes[rows] = self.scale.encode(snap(merged[rows]) if quantized else merged[rows])
            self.values[:height, target] = codes
            src, dst = order[first + count :], order[first + 1 : self.n - count + 1]
            self.values[:, dst] = self.values[:, src]
            freed = order[self.n - count + 1 :]
            self.values[:, freed] = self.scale.absent
            self._move_order(np.concatenate([order[:first], src]), np.concatenate([order[:first], dst]), self.columns)
            self._keep_order(target, rows[ranking])
        self.n -= count - 1

    def resize(self, columns: int) -> None:
        """Change the number of columns (at least the points held), oldest point first."""
        order = self.order()
        if self.overflow:
            sparse: list[tuple[npt.NDArray[np.int32], npt.NDArray[Any]] | None] = [None] * columns
            for i, c in enumerate(order.tolist()):
                sparse[i] = self.sparse[c]
            self.sparse = sparse
        else:
            values = np.full((len(self.values), columns), self.scale.absent, dtype=self.dtype)
            values[:, : self.n] = self.values[:, order]
            self.values = values
            self._move_order(order, np.arange(self.n), columns)
        self.columns = columns
        self.start = 0

    def entries(self) -> tuple[npt.NDArray[np.intp], FloatArray, npt.NDArray[np.intp]]:
        """Every value of the history: (row, value, point index), by point then position within it."""
        rows, codes, points = self.coded_entries()
        return rows, self.scale.decode(codes), points

    def coded_entries(self) -> tuple[npt.NDArray[np.intp], npt.NDArray[Any], npt.NDArray[np.intp]]:
        """`entries` with the values as stored (codes of the grid's `scale`)."""
        if not self.overflow:
            order = self.order()
            named, counts = self.naming(order)
            within = (np.arange(named.shape[0])[:, None] < counts[None, :]).T
            rows = named.T[within]
            points = np.repeat(np.arange(self.n), counts)
            return rows, self.values[rows, order[points]], points
        parts = [self.sparse[int(c)] for c in self.order()]
        lengths = np.array([0 if p is None else len(p[0]) for p in parts], dtype=np.intp)
        kept = [p for p in parts if p is not None]
        if not kept:
            return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=self.dtype), np.zeros(0, dtype=np.intp)
        rows = np.concatenate([p[0] for p in kept]).astype(np.intp)
        values = np.concatenate([p[1] for p in kept])
        return rows, values, np.repeat(np.arange(self.n), lengths)

    def matrix(self, names: list[str]) -> FloatArray:
        """Rows for `names` (0 where a name is absent from a point), columns in point order."""
        rows = np.array([self.index[name] for name in names], dtype=np.intp)
        if not self.overflow:
            return self.scale.decode(self.values[np.ix_(rows, self.order())])
        out = np.zeros((len(names), self.n))
        lookup = np.full(len(self.names), -1, dtype=np.intp)
        lookup[rows] = np.arange(len(rows))
        all_rows, values, points = self.entries()
        target = lookup[all_rows]
        keep = target >= 0
        out[target[keep], points[keep]] = values[keep]
        return out

    def ranked(self, limit: int, exclude: str) -> list[str]:
        """Names by peak value in the history, descending (only peaks > 0), first seen first among equals."""
        return self.ranked_matrix(limit, exclude)[0]

    def ranked_matrix(self, limit: int, exclude: str) -> tuple[list[str], FloatArray]:
        """`ranked(limit, exclude)` and `matrix` of those names, from one gather of the history."""
        if self.overflow:
            names = self._ranked_sparse(limit, exclude)
            return names, self.matrix(names)
        rows = self._ranked_rows(exclude)
        values = self.scale.decode(self.values[np.ix_(rows, self.order())])
        return self._rank(rows, values, values > 0, limit)

    def _ranked_rows(self, exclude: str) -> npt.NDArray[np.intp]:
        excluded = self.index.get(exclude, -1)
        rows = np.fromiter(self.index.values(), dtype=np.intp, count=len(self.index))
        kept: npt.NDArray[np.intp] = rows[rows != excluded]
        return kept

    def _rank(
        self, rows: npt.NDArray[np.intp], values: FloatArray, positive: npt.NDArray[np.bool_], limit: int
    ) -> tuple[list[str], FloatArray]:
        """Rows with a positive value by peak descending, then first seen (the first point with a positive
        value, then the position within it), the first `limit`: their names and values."""
        keep = positive.any(axis=1)
        rows, values, positive = rows[keep], values[keep], positive[keep]
        if not len(rows):
            return [], np.zeros((0, self.n))
        peaks = values.max(axis=1)
        first_col = positive.argmax(axis=1)
        ranking = np.lexsort((first_col, -peaks))
        peak_at, col_at = peaks[ranking], first_col[ranking]
        tied = (peak_at[1:] == peak_at[:-1]) & (col_at[1:] == col_at[:-1])
        if tied.any():
            # Equal peaks first positive at the same point: their positions within it decide.
            need = np.zeros(len(rows), dtype=bool)
            need[ranking[1:][tied]] = need[ranking[:-1][tied]] = True
            wanted = self.order()[first_col[need]].tolist()
            cols = sorted(set(wanted))  # (not np.unique: it leaves numpy's cumsum caches holding ~8 KiB)
            inverse = np.array([cols.index(c) for c in wanted], dtype=np.intp)
            positions = self._positions(*self.naming(np.array(cols, dtype=np.intp)))
            first_pos = np.zeros(len(rows), dtype=np.intp)
            first_pos[need] = positions[rows[need], inverse]
            ranking = np.lexsort((first_pos, first_col, -peaks))
        ranking = ranking[:limit]
        return [self.names[row] for row in rows[ranking].tolist()], values[ranking]

    def _ranked_sparse(self, limit: int, exclude: str) -> list[str]:
        rows, values, _ = self.entries()
        keep = values > 0
        excluded = self.index.get(exclude)
        if excluded is not None:
            keep &= rows != excluded
        rows, values = rows[keep], values[keep]
        if not len(rows):
            return []
        unique, first = np.unique(rows, return_index=True)  # first: first positive entry of each row
        peaks = np.zeros(len(self.names))
        np.maximum.at(peaks, rows, values)
        ranking = np.lexsort((first, -peaks[unique]))[:limit]
        return [self.names[row] for row in unique[ranking].tolist()]

    def live_sorted(self) -> list[str]:
        return sorted(self.index)

    # -- persistence: one layout for both forms --------------------------------------------------

    def export(
        self, ref: Callable[[str], int], *, coded: bool = False
    ) -> tuple[list[int], npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]:
        """The grid as arrays, one layout for both forms: its live names (as `ref` indices, sorted by name),
        then per point its count of values (int32), the row ids of those values into the names (int8, int16
        past 127 names, int32 past 32,767) and the values (float64, or with `coded` the codes of the grid's
        `scale`), in point order and position order within a point."""
        rows, values, points = self.coded_entries() if coded else self.entries()
        live = sorted(self.index)
        dtype = next(d for d in (np.int8, np.int16, np.int32) if len(live) <= np.iinfo(d).max)
        canonical = np.zeros(max(len(self.names), 1), dtype=dtype)
        canonical[[self.index[name] for name in live]] = np.arange(len(live), dtype=dtype)
        lengths = np.bincount(points, minlength=self.n).astype(np.int32)
        return [ref(name) for name in live], lengths, canonical[rows], values

    def export_by_id(
        self, ref: Callable[[str], int]
    ) -> tuple[list[int], npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]:
        """`export(ref, coded=True)` with each point's values by id, and their moves from the value order
        (`by_id_with_moves`, for checkpoints): (names, lengths, ids, codes, moves)."""
        if self.overflow:
            names, lengths, ids, codes = self.export(ref, coded=True)
            return (names, lengths, *by_id_with_moves(lengths, ids, codes))
        # Dense: read the rows in id (name) order, point by point; one small sort per point for the moves.
        live = sorted(self.index)
        dtype = next(d for d in (np.int8, np.int16, np.int32) if len(live) <= np.iinfo(d).max)
        by_name = np.array([self.index[name] for name in live], dtype=np.intp)
        order = self.order()
        pos = np.ascontiguousarray(self._positions(*self.naming(order))[by_name].T)  # points x ids
        codes2d = np.ascontiguousarray(self.values[np.ix_(by_name, order)].T)
        present = pos >= 0
        width = len(live)
        keys = _value_keys(np.arange(width), codes2d)
        keys[~present] = np.iinfo(np.uint64).max  # absent ids sort last
        rank = np.empty(pos.shape, dtype=np.intp)
        np.put_along_axis(rank, np.argsort(keys, axis=1), np.arange(width)[None, :], axis=1)
        moves = pos[present] - rank[present]
        widest = int(np.abs(moves).max(initial=0)) + 1
        return (
            [ref(name) for name in live],
            present.sum(axis=1).astype(np.int32),
            np.broadcast_to(np.arange(width, dtype=dtype), pos.shape)[present],
            codes2d[present],
            moves.astype(position_dtype(widest)),
        )

    def export_ties(
        self, ref: Callable[[str], int]
    ) -> (
        tuple[
            list[int],
            npt.NDArray[Any],
            npt.NDArray[Any],
            npt.NDArray[Any],
            npt.NDArray[np.uint8],
            npt.NDArray[np.int32],
            npt.NDArray[Any],
        ]
        | None
    ):
        """The dense form as a checkpoint writes it (state version 7; `ties_of_positions` gives the same from
        `export_positions`): (names, lengths, ids, codes, tie fields packed, whole points, their ids in
        naming order), read from what the grid keeps, without sorting. None for the sparse form."""
        if self.overflow:
            return None
        live = sorted(self.index)
        dtype = next(d for d in (np.int8, np.int16, np.int32) if len(live) <= np.iinfo(d).max)
        by_name = np.array([self.index[name] for name in live], dtype=np.intp)
        order = self.order()
        codes2d = np.ascontiguousarray(self.values[np.ix_(by_name, order)].T)  # points x ids
        present = self.scale.present(codes2d)
        fields = np.zeros(int(present.sum()), dtype=np.uint8)
        if self.ordered and self.ties is not None and len(by_name):
            cells = np.broadcast_to(by_name[None, :], codes2d.shape), np.broadcast_to(order[:, None], codes2d.shape)
            fields = self._fields(*cells)[present].astype(np.uint8)
        whole: list[int] = []
        named = np.zeros(0, dtype=dtype)
        if self.ordered and self.exceptions:
            id_of_row = np.zeros(len(self.names), dtype=dtype)
            id_of_row[by_name] = np.arange(len(live), dtype=dtype)
            columns = sorted(self.exceptions, key=lambda col: (col - self.start) % self.columns)
            whole = [(col - self.start) % self.columns for col in columns]
            # One lookup of every whole point's rows (a counter grid has a hundred such points, not a few).
            named = id_of_row[np.concatenate([self.exceptions[col] for col in columns]).astype(np.intp)]
        return (
            [ref(name) for name in live],
            present.sum(axis=1).astype(np.int32),
            np.broadcast_to(np.arange(len(live), dtype=dtype), codes2d.shape)[present],
            codes2d[present],
            _pack_fields(fields),
            np.array(whole, dtype=np.int32),
            named,
        )

    def export_positions(
        self, ref: Callable[[str], int]
    ) -> tuple[list[int], npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[np.intp]]:
        """`export(ref, coded=True)` with each point's values by id, and each value's position within its
        point in naming order: (names, lengths, ids, codes, positions)."""
        if self.overflow:
            names, lengths, ids, codes = self.export(ref, coded=True)
            if not len(ids):
                return names, lengths, ids, codes, np.zeros(0, dtype=np.intp)
            local = np.arange(len(ids)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            at = _sorted_within_points(lengths, ids.astype(np.int64))
            return names, lengths, ids[at], codes[at], local[at]
        live = sorted(self.index)
        dtype = next(d for d in (np.int8, np.int16, np.int32) if len(live) <= np.iinfo(d).max)
        by_name = np.array([self.index[name] for name in live], dtype=np.intp)
        order = self.order()
        pos = np.ascontiguousarray(self._positions(*self.naming(order))[by_name].T)  # points x ids
        present = pos >= 0
        return (
            [ref(name) for name in live],
            present.sum(axis=1).astype(np.int32),
            np.broadcast_to(np.arange(len(live), dtype=dtype), pos.shape)[present],
            np.ascontiguousarray(self.values[np.ix_(by_name, order)].T)[present],
            pos[present],
        )

    def restore(
        self,
        names: list[str],
        lengths: npt.NDArray[Any],
        ids: npt.NDArray[Any],
        values: npt.NDArray[Any],
        positions: npt.NDArray[Any] | None = None,
        *,
        kept: tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]] | None = None,
    ) -> None:
        """Rebuild from `export` data (already decoded); keeps the newest `columns` points. `values` of the
        scale's code dtype are taken as codes (`export(coded=True)`), any other as values to encode. With
        `positions` (each value's position within its point, `naming_positions`), the values of a point may
        come in any order (`export_by_id`'s). With `kept` (`export_ties`' tie fields, whole points and their
        ids; values by id), the naming orders are taken as written (at most `columns` points, dense)."""
        at = self._restore_values(names, lengths, ids, values, positions)
        self._restore_order(at, names, lengths, ids, kept)

    def _restore_order(
        self,
        at: npt.NDArray[np.intp] | None,
        names: list[str],
        lengths: npt.NDArray[Any],
        ids: npt.NDArray[Any],
        kept: tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]] | None,
    ) -> None:
        if kept is None:
            if at is not None:
                self._order_from_positions(at)
            return
        if at is None or self.n != len(lengths):
            raise ValueError("grid ties: written for a dense grid of at most its columns")
        self._order_from_kept(names, lengths, ids, *kept)

    def _order_from_kept(
        self,
        names: list[str],
        lengths: npt.NDArray[Any],
        ids: npt.NDArray[Any],
        packed: npt.NDArray[Any],
        whole: npt.NDArray[Any],
        whole_ids: npt.NDArray[Any],
    ) -> None:
        """Set the order state as `export_ties` wrote it (points in columns 0..n-1), then check that it gives
        an order of each point's values. Raises ValueError otherwise."""
        self.ties = None
        self.exceptions = None
        if len(packed) != (len(ids) + 3) // 4:
            raise ValueError(f"grid ties: {len(packed)} bytes for {len(ids)} values")
        whole = np.asarray(whole, dtype=np.intp)
        if len(whole) and ((np.diff(whole) <= 0).any() or whole[0] < 0 or whole[-1] >= len(lengths)):
            raise ValueError("grid ties: whole points out of order or range")
        if int(lengths[whole].sum()) != len(whole_ids):
            raise ValueError("grid ties: whole points and their ids do not match")
        if not self.ordered or not len(ids):
            return
        remap = np.array([self.index.get(name, -1) for name in names], dtype=np.intp)
        fields = _unpack_fields(packed, len(ids))
        nonzero = np.flatnonzero(fields)
        if len(nonzero):
            self.ties = np.zeros((len(self.count), (self.columns + 3) // 4), dtype=np.uint8)
            cols = np.repeat(np.arange(len(lengths)), lengths)[nonzero]
            width = self.ties.shape[1]
            shifted = fields[nonzero] << ((cols & 3) << 1)
            union = np.bincount(remap[ids[nonzero]] * width + (cols >> 2), shifted, self.ties.size)
            self.ties |= union.astype(np.uint8).reshape(self.ties.shape)
        if len(whole):
            if len(whole_ids) and (whole_ids.min() < 0 or whole_ids.max() >= len(names)):
                raise ValueError("grid ties: a whole point's id out of range")
            self.exceptions = {}
            bounds = np.cumsum(lengths[whole]).tolist()
            for point, a, b in zip(whole.tolist(), [0, *bounds[:-1]], bounds, strict=True):
                self.exceptions[point] = remap[whole_ids[a:b]].astype(np.int16)
        if self.ties is None and not self.exceptions:
            return  # every point in value order: nothing that could fail to be an order
        order = self.order()
        positions = self._positions(*self.naming(order))
        if ((positions >= 0) != self.scale.present(self.values[: len(self.names)][:, order])).any():
            raise ValueError("grid ties: not an order of each point's values")

    def _restore_values(
        self,
        names: list[str],
        lengths: npt.NDArray[Any],
        ids: npt.NDArray[Any],
        values: npt.NDArray[Any],
        positions: npt.NDArray[Any] | None,
    ) -> npt.NDArray[np.intp] | None:
        """`restore` but for the naming order of the dense form: returned as each row's position within
        each point (rows x points, -1: absent), for `_order_from_positions`."""
        self.clear()
        values = self.scale.encode(values) if values.dtype != self.dtype else self.scale.stored(values)
        if len(ids) != len(values) or int(lengths.sum()) != len(ids) or (lengths < 0).any():
            raise ValueError("grid lengths, ids and values do not match")
        if len(ids) and (ids.min() < 0 or ids.max() >= len(names)):
            raise ValueError("grid id out of range")
        drop = max(0, len(lengths) - self.columns)
        skip = int(lengths[:drop].sum())
        lengths, ids, values = lengths[drop:], ids[skip:].astype(np.intp), values[skip:]
        n = len(lengths)
        points = np.repeat(np.arange(n), lengths)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if n else np.zeros(0, dtype=np.intp)
        if positions is None:
            positions = np.arange(len(ids)) - np.repeat(offsets, lengths)
        else:
            positions = positions[skip:].astype(np.intp)
            if len(positions) != len(ids):
                raise ValueError("grid positions and ids do not match")
            if len(ids) and (np.bincount(offsets[points] + positions, minlength=len(ids)) != 1).any():
                raise ValueError("grid positions: two values at one position")
        used = np.bincount(ids, minlength=len(names))
        if n and (np.bincount(points * len(names) + ids, minlength=n * len(names)) > 1).any():
            raise ValueError("a point names the same site twice")
        live = np.flatnonzero(used > 0)  # names no longer in the kept points are dropped
        remap = np.full(len(names), -1, dtype=np.intp)
        remap[live] = np.arange(len(live))
        rows = remap[ids]
        self.names = [names[i] for i in live.tolist()]
        self.index = {name: row for row, name in enumerate(self.names)}
        if len(self.index) != len(self.names):
            raise ValueError("duplicate grid names")
        self.count = used[live].astype(np.int32)
        self.n = n
        if len(self.names) > self.max_rows:
            self.overflow = True
            self.sparse = [None] * self.columns
            order = np.lexsort((positions, points))  # each point's values in the order it named them
            rows, values = rows[order], values[order]
            for c in range(n):
                part = slice(int(offsets[c]), int(offsets[c] + lengths[c]))
                self.sparse[c] = (rows[part].astype(np.int32), values[part].copy())
            return None
        height = len(self.names)
        self.values = np.full((height, self.columns), self.scale.absent, dtype=self.dtype)
        self.values[rows, points] = values
        at = np.full((height, n), -1, dtype=np.intp)
        at[rows, points] = positions
        return at


# -- the naming order of a grid's export, as moves from the value order (checkpoints) ----------------------
#
# `Grid.export` lists each point's values in the order its profile named them. Profiles name their sites and
# groups largest first (the decoders rank them so), so that order is almost always the value order: by code
# descending, ties by id. A checkpoint stores each point's values by id instead (ids then repeat from point to
# point and deflate to almost nothing) and, per value, its move: its position in the naming order minus its
# position in the value order (zeros, unless a profile named sites out of value order).


def _value_keys(ids: npt.NDArray[Any], codes: npt.NDArray[Any]) -> npt.NDArray[np.uint64]:
    """Sort keys, ascending = code descending then id ascending (codes: uint16 levels, int16 increases or
    float32)."""
    if codes.dtype == np.uint16:
        desc = 0xFFFF - codes.astype(np.uint64)
    elif codes.dtype == np.float32:
        bits = codes.view(np.uint32).astype(np.uint64)
        ascending = np.where(bits >> np.uint64(31), bits ^ np.uint64(0xFFFFFFFF), bits | np.uint64(0x80000000))
        desc = np.uint64(0xFFFFFFFF) - ascending
    elif codes.dtype == np.int16:
        desc = np.uint64(0xFFFF) - (codes.astype(np.int64) + 32768).astype(np.uint64)
    else:
        raise ValueError(f"grid codes of dtype {codes.dtype}: expected uint16, int16 or float32")
    keys: npt.NDArray[np.uint64] = (desc << np.uint64(32)) | ids.astype(np.uint64)
    return keys


def _sorted_within_points(lengths: npt.NDArray[Any], keys: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
    """Indices of the entries, point by point, each point's sorted by `keys` (unique within a point): one
    small sort per point, as rows of a padded table."""
    n_points, width = len(lengths), int(lengths.max(initial=0))
    offsets = np.cumsum(lengths) - lengths
    if n_points and int(lengths.min()) == width:  # every point as wide (the usual case): no padding
        order = np.argsort(keys.reshape(n_points, width), axis=1)
        result: npt.NDArray[np.intp] = (order + offsets[:, None]).ravel()
        return result
    points = np.repeat(np.arange(n_points), lengths)
    local = np.arange(len(keys)) - offsets[points]
    table = np.full((n_points, width), np.iinfo(keys.dtype).max, dtype=keys.dtype)  # padding sorts last
    table[points, local] = keys
    order = np.argsort(table, axis=1)
    kept: npt.NDArray[np.intp] = (order + offsets[:, None])[np.arange(width)[None, :] < lengths[:, None]]
    return kept


def _value_rank(lengths: npt.NDArray[Any], ids: npt.NDArray[Any], codes: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
    """Each entry's position within its point in the value order."""
    at = _sorted_within_points(lengths, _value_keys(ids, codes))
    rank = np.empty(len(ids), dtype=np.intp)
    rank[at] = np.arange(len(ids)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return rank


def by_id_with_moves(
    lengths: npt.NDArray[Any], ids: npt.NDArray[Any], codes: npt.NDArray[Any]
) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]:
    """`export` arrays (naming order) as (ids, codes, moves) by id within each point (see above)."""
    if not len(ids):
        return ids, codes, np.zeros(0, dtype=np.int8)
    local = np.arange(len(ids)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    moves = local - _value_rank(lengths, ids, codes)
    at = _sorted_within_points(lengths, ids.astype(np.int64))  # (argsort of int8 rows is slow)
    return ids[at], codes[at], moves[at].astype(position_dtype(int(np.abs(moves).max()) + 1))


def naming_positions(
    lengths: npt.NDArray[Any], ids: npt.NDArray[Any], codes: npt.NDArray[Any], moves: npt.NDArray[Any]
) -> npt.NDArray[np.intp]:
    """Each value's position within its point in the order its profile named them, from
    `by_id_with_moves` data. Raises ValueError on a position outside its point (`Grid.restore` refuses two
    values at one position)."""
    if not len(moves) == len(ids) == len(codes) == int(lengths.sum()) or (lengths < 0).any():
        raise ValueError("grid ids, codes and moves do not match")
    if not len(ids):
        return np.zeros(0, dtype=np.intp)
    position = _value_rank(lengths, ids, codes) + moves.astype(np.intp)
    if (position < 0).any() or (position >= np.repeat(lengths, lengths)).any():
        raise ValueError("grid moves: a position outside its point")
    return position


def naming_order(
    lengths: npt.NDArray[Any], ids: npt.NDArray[Any], codes: npt.NDArray[Any], moves: npt.NDArray[Any]
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """The inverse of `by_id_with_moves`: (ids, codes) in naming order. Raises ValueError on moves that do
    not make a naming order (a position outside its point, or two values at one position)."""
    position = naming_positions(lengths, ids, codes, moves)
    if not len(ids):
        return ids, codes
    dest = np.repeat(np.cumsum(lengths) - lengths, lengths) + position
    if (np.bincount(dest, minlength=len(ids)) != 1).any():
        raise ValueError("grid moves: two values at one position")
    out_ids, out_codes = np.empty_like(ids), np.empty_like(codes)
    out_ids[dest], out_codes[dest] = ids, codes
    return out_ids, out_codes


def position_dtype(width: int) -> type[np.signedinteger[Any]]:
    """The smallest dtype for positions 0..width-1 and -1."""
    for dtype in (np.int8, np.int16):
        if width <= np.iinfo(dtype).max:
            return dtype
    return np.int32


@dataclass(slots=True, frozen=True, weakref_slot=True)
class SiteMeta:
    """What a site or goroutine group is, for people: its frame, and for groups state, leaf, creator.

    Immutable: the series of one service (its pods) name the same sites, and share one copy of each
    (`shared_meta`). What differs per series (a heap site's mean object size) the detector keeps apart."""

    function: str
    file: str
    line: int
    state: str | None = None
    leaf: str = ""
    creator: str = ""
    blocking: str = ""


_SHARED_META: weakref.WeakValueDictionary[tuple[Any, ...], SiteMeta] = weakref.WeakValueDictionary()


def shared_meta(
    function: str, file: str, line: int, state: str | None = None, leaf: str = "", creator: str = "", blocking: str = ""
) -> SiteMeta:
    """The process's one `SiteMeta` of these fields (its strings interned), kept while a series holds it."""
    key = (function, file, line, state, leaf, creator, blocking)
    meta = _SHARED_META.get(key)
    if meta is None:
        meta = SiteMeta(
            intern(function),
            intern(file),
            line,
            None if state is None else intern(state),
            intern(leaf),
            intern(creator),
            intern(blocking),
        )
        _SHARED_META[key] = meta
    return meta


# -- cumulative counters (mutex, block) as 16-bit increments ---------------------------------------------
#
# A mutex or block profile's site value is a counter since the process began; what the detector uses is its
# increase between profiles. `CounterGrid` keeps, per value, the increase since the row's previous value
# (`INCREMENTS`: signed 16 bits, exact whole numbers below 2**12, then 768 log steps per octave to 2**49, so
# each increase within 0.046%), and per row the value before its oldest kept point (`base`) and its newest
# value as the profile gave it (`last`), both float64. A row's first value is kept whole in `base` (increase
# 0) and each increase is the exact difference from the row's previous value, rounded once: the increase of
# a site over any span of points is within 0.046% of the true one (rates are what the detector reads). The
# reconstructed counters themselves drift from the profiles' by the sum of those roundings (far below a
# counter's size; only rankings by peak read them whole). Reads give cumulative values (`base` plus the
# running sum of the increases; 0 where a point did not name the site), as `Grid` does.

_INC_SPLIT = 1 << 12
INC_STEPS = 768
_INC_TABLE = np.concatenate(
    [
        np.arange(_INC_SPLIT, dtype=np.float64),
        _INC_SPLIT * np.exp2(np.arange((1 << 15) - _INC_SPLIT) / INC_STEPS),
        [0.0],  # code -2**15: `absent` (no increase encodes to it)
    ]
)
_INC_TABLE.setflags(write=False)
_INC_MAX = (1 << 15) - 1


class IncrementScale(ValueScale):
    """Signed increases in 16 bits (see `CounterGrid`): magnitude codes below 2**12 are the value itself,
    code 2**12 + k is 2**12 * 2 ** (k / INC_STEPS) up to about 2**49 (clamped there); NaN is stored as 0."""

    __slots__ = ()

    def encode(self, values: Any) -> npt.NDArray[Any]:
        v = np.array(values, dtype=np.float64)
        a = np.abs(v)
        codes = np.rint(a)
        big = a >= _INC_SPLIT - 0.5
        if big.any():
            codes[big] = np.rint(np.log2(a[big] / _INC_SPLIT) * INC_STEPS) + _INC_SPLIT
        codes[~(codes >= 0)] = 0  # NaN
        np.minimum(codes, _INC_MAX, out=codes)
        return np.where(v < 0, -codes, codes).astype(np.int16)

    def decode(self, codes: npt.NDArray[Any]) -> FloatArray:
        c = codes.astype(np.int32)
        result: FloatArray = np.where(c < 0, 0.0 - _INC_TABLE[-c], _INC_TABLE[np.abs(c)])
        return result

    def present(self, codes: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
        result: npt.NDArray[np.bool_] = codes != _INC_ABSENT
        return result

    def stored(self, codes: npt.NDArray[Any]) -> npt.NDArray[Any]:
        if (codes == _INC_ABSENT).any():
            raise ValueError("grid values: an increase code of -32768 (reserved)")
        return codes


_INC_ABSENT = -(1 << 15)
INCREMENTS = IncrementScale("increments16", np.int16, _INC_ABSENT)
SCALES[INCREMENTS.name] = INCREMENTS


class CounterGrid(Grid):
    """A `Grid` of cumulative counters kept as 16-bit increases (see above); reads give the counters.

    Its value order (`Grid.naming`) sorts by the counters as the grid reads them; `recon` keeps each row's
    newest one (`base` plus the running sum of its increases, the same additions `_dense_counters` makes)."""

    __slots__ = ("base", "last", "recon")

    def __init__(
        self, columns: int, max_rows: int | None = None, scale: ValueScale = INCREMENTS, ordered: bool = True
    ) -> None:
        super().__init__(columns, max_rows, INCREMENTS, ordered)
        self.base = np.zeros(0)  # per row: its value before the oldest kept point
        self.last = np.zeros(0)  # per row: its newest value, as the profile gave it
        self.recon = np.zeros(0)  # per row: its newest value, as the grid reads it

    def _fit_rows(self) -> None:
        size = len(self.count)
        if len(self.base) < size:
            grow = size - len(self.base)
            self.base = np.concatenate([self.base, np.zeros(grow)])
            self.last = np.concatenate([self.last, np.zeros(grow)])
            self.recon = np.concatenate([self.recon, np.zeros(grow)])

    def append(self, items: Iterable[tuple[str, float]], codes: npt.NDArray[Any] | None = None) -> None:
        """Add a point of counters (not `codes`: the increases are computed here)."""
        if codes is not None:
            raise ValueError("a counter grid takes counters, not codes")
        pairs = list(items)
        if not pairs:
            super().append(())
            return
        index = self.index
        known = np.array([index.get(name, -1) for name, _ in pairs], dtype=np.intp)
        values = np.array([value for _, value in pairs], dtype=np.float64)
        old = known >= 0
        increases = np.zeros(len(pairs))
        if len(self.last):
            increases[old] = values[old] - self.last[known[old]]
        codes = self.scale.encode(increases)
        added = self._append(pairs, codes, order=False)
        self._fit_rows()
        rows = np.array([index[name] for name, _ in pairs], dtype=np.intp)
        self.last[rows] = values
        new = rows[~old]
        self.base[new] = values[~old]
        steps = self.scale.decode(codes)
        self.recon[rows[old]] += steps[old]
        self.recon[new] = self.base[new] + steps[~old]
        if added is not None:
            self._keep_order(*added)

    def _newest_keys(self, col: int, rows: npt.NDArray[np.intp]) -> npt.NDArray[Any]:
        return self.recon[rows]

    def _order_keys(self, cols: npt.NDArray[np.intp]) -> npt.NDArray[Any]:
        """The counters of every row at columns `cols` (where a row is absent: its counter before)."""
        height = len(self.names)
        steps = self.scale.decode(self.values[:height][:, self.order()])
        counters = np.cumsum(np.concatenate([self.base[:height, None], steps], axis=1), axis=1)[:, 1:]
        result: npt.NDArray[Any] = counters[:, (cols - self.start) % self.columns]
        return result

    def _column_codes(self, col: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[Any]]:
        rows = self._column_rows(col)
        if self.overflow:
            entry = self.sparse[col]
            return rows, (np.zeros(0, dtype=self.dtype) if entry is None else entry[1])
        return rows, self.values[rows, col]

    def popleft(self) -> None:
        rows, codes = self._column_codes(self.start)
        self.base[rows] += self.scale.decode(codes)
        super().popleft()

    def first_items(self) -> list[tuple[str, float]]:
        col = self.start
        rows, codes = self._column_codes(col)
        if not self.overflow:
            rows = self._first_rows()
            codes = self.values[rows, col]
        values = (self.base[rows] + self.scale.decode(codes)).tolist()
        return [(self.names[r], v) for r, v in zip(rows.tolist(), values, strict=True)]

    def _dense_counters(self, rows: npt.NDArray[np.intp]) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
        """Counters of `rows` (0 where absent) and where present, columns in point order (dense form)."""
        codes = self.values[np.ix_(rows, self.order())]
        present = self.scale.present(codes)
        table = np.concatenate([self.base[rows][:, None], self.scale.decode(codes)], axis=1)
        counters: FloatArray = np.cumsum(table, axis=1)[:, 1:]
        counters[~present] = 0.0
        return counters, present

    def entries(self) -> tuple[npt.NDArray[np.intp], FloatArray, npt.NDArray[np.intp]]:
        rows, codes, points = self.coded_entries()
        if not len(rows):
            return rows, np.zeros(0), points
        # Each row's running sum in point order, started from its base (the same additions as `_dense_counters`).
        by_row = np.lexsort((points, rows))
        steps = self.scale.decode(codes)[by_row]
        sorted_rows = rows[by_row]
        starts = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
        counters = np.empty(len(rows))
        bounds = [*starts.tolist(), len(rows)]
        for a, b in itertools.pairwise(bounds):
            counters[a:b] = np.cumsum(np.r_[self.base[sorted_rows[a]], steps[a:b]])[1:]
        values = np.empty(len(rows))
        values[by_row] = counters
        return rows, values, points

    def matrix(self, names: list[str]) -> FloatArray:
        if self.overflow:
            return super().matrix(names)
        rows = np.array([self.index[name] for name in names], dtype=np.intp)
        return self._dense_counters(rows)[0]

    def ranked_matrix(self, limit: int, exclude: str) -> tuple[list[str], FloatArray]:
        if self.overflow:
            return super().ranked_matrix(limit, exclude)
        rows = self._ranked_rows(exclude)
        values, _ = self._dense_counters(rows)
        return self._rank(rows, values, values > 0, limit)

    def merge(self, first: int, count: int, quantized: bool) -> None:
        """As `Grid.merge` on the counters (the mean counter of each name), then kept as increases again."""
        rows, values, points = self.entries()
        lengths = np.bincount(points, minlength=self.n).astype(np.int32)
        plain = Grid(self.columns, self.max_rows, FLOAT64)
        plain.restore(list(self.names), lengths, rows, values)
        plain.merge(first, count, quantized)
        _, lengths, ids, merged = plain.export(lambda name: 0)  # ids index the names sorted, as `live`
        live = sorted(plain.index)
        last = {name: float(self.last[row]) for name, row in self.index.items()}
        self.restore(live, lengths, ids, merged)
        for name, row in self.index.items():  # the next increase from the exact newest counter, as before
            self.last[row] = last[name]

    def restore(
        self,
        names: list[str],
        lengths: npt.NDArray[Any],
        ids: npt.NDArray[Any],
        values: npt.NDArray[Any],
        positions: npt.NDArray[Any] | None = None,
        base: npt.NDArray[Any] | None = None,
        last: npt.NDArray[Any] | None = None,
        *,
        kept: tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]] | None = None,
    ) -> None:
        """As `Grid.restore`: `values` are counters (any float dtype), kept as increases from each row's
        first value; or increase codes (int16, `export_by_id`) with `base` and `last` (`export_ends`: each
        name's value before its first kept point and its newest value; state version 6)."""
        coded = values.dtype == self.dtype
        if coded and (base is None or last is None or not len(base) == len(last) == len(names)):
            raise ValueError("counter grid: increase codes without a base and last value per name")
        drop = max(0, len(lengths) - self.columns)
        if kept is not None and (not coded or drop):
            raise ValueError("grid ties: written for a dense grid of at most its columns")
        if coded and drop:
            # More points than columns: the counters, then their newest points as increases again.
            rows, counters = _counters_of(lengths, ids.astype(np.intp), self.scale.decode(values), np.asarray(base))
            if positions is not None:
                order = _naming_order_of(lengths, positions)
                ids, counters = ids[order], counters[order]
            self.restore(names, lengths, ids, counters)
            return
        if coded:
            at = self._restore_values(names, lengths, ids, values, positions)
            size = len(self.count)
            self.base, self.last, self.recon = np.zeros(size), np.zeros(size), np.zeros(size)
            live = [self.index.get(name, -1) for name in names]
            take = np.array([i for i, row in enumerate(live) if row >= 0], dtype=np.intp)
            rows = np.array(live, dtype=np.intp)[take]
            self.base[rows] = np.asarray(base, dtype=np.float64)[take]
            self.last[rows] = np.asarray(last, dtype=np.float64)[take]
            if not self.overflow and self.n:
                self.recon[: len(self.names)] = self._order_keys(self.order()[-1:])[:, 0]
            self._restore_order(at, names, lengths, ids, kept)
            return
        # Counters: the increase of each value from the previous value of its name, through `append`.
        self.clear()
        lengths = lengths[drop:]
        skip_values = int(np.asarray(lengths).sum())
        ids, values = ids[len(ids) - skip_values :], values[len(values) - skip_values :]
        if positions is not None:
            positions = positions[len(positions) - skip_values :]
            order = _naming_order_of(lengths, positions)
            ids, values = ids[order], values[order]
        if len(ids) and (ids.min() < 0 or ids.max() >= len(names)):
            raise ValueError("grid id out of range")
        offsets = np.cumsum(lengths) - lengths
        floats = np.asarray(values, dtype=np.float64).tolist()
        id_list = ids.tolist()
        for start, length in zip(offsets.tolist(), lengths.tolist(), strict=True):
            part = id_list[start : start + length]
            if len(set(part)) != len(part):
                raise ValueError("a point names the same site twice")
            self.append([(names[i], floats[start + k]) for k, i in enumerate(part)])

    def export_ends(self) -> tuple[FloatArray, FloatArray]:
        """Each live name's value before its oldest kept point and its newest value (names sorted, as `export`
        lists them)."""
        rows = np.array([self.index[name] for name in sorted(self.index)], dtype=np.intp)
        return self.base[rows], self.last[rows]


def _naming_order_of(lengths: npt.NDArray[Any], positions: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
    """Indices putting each point's values in naming order, given each value's position within its point."""
    points = np.repeat(np.arange(len(lengths)), lengths)
    order: npt.NDArray[np.intp] = np.lexsort((np.asarray(positions), points))
    return order


def _counters_of(
    lengths: npt.NDArray[Any], ids: npt.NDArray[np.intp], steps: FloatArray, base: FloatArray
) -> tuple[npt.NDArray[np.intp], FloatArray]:
    """Counters from increases by id (each name's base plus the running sum of its increases)."""
    points = np.repeat(np.arange(len(lengths)), lengths)
    if len(base) * (len(lengths) + 1) <= 1 << 20:
        # As the grid reads them: a row per name, its running sum over every point (absent ones adding 0.0,
        # which changes no sum), one cumsum for all.
        table = np.zeros((len(base), len(lengths) + 1))
        table[:, 0] = base
        table[ids, points + 1] = steps
        return ids, np.cumsum(table, axis=1)[ids, points + 1]
    by_id = np.lexsort((points, ids))
    counters = np.empty(len(ids))
    sorted_ids = ids[by_id]
    bounds = [*np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]]).tolist(), len(ids)]
    for a, b in itertools.pairwise(bounds):
        counters[by_id[a:b]] = np.cumsum(np.r_[base[sorted_ids[a]], steps[by_id[a:b]]])[1:]
    return ids, counters


# -- the naming order of a grid's export as tie fields (checkpoints, state version 7) ----------------------
#
# What a dense grid keeps of each point's naming order (`Grid.ties`, `Grid.exceptions`), written as such: per
# value (in `export_by_id` order: point by point, by id) its 2-bit tie field, packed four to a byte, and the
# points whose naming order is kept whole, with their ids in that order. The value order is the grid's: key
# descending (the codes; counter grids: the counters), equal keys by id (ids number the names sorted).


def _value_order_runs(
    lengths: npt.NDArray[Any], ids: npt.NDArray[Any], keys: npt.NDArray[Any]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[Any]]:
    """Per value: its place in its point's value order, the place its run of equal keys starts at and the
    run's length; and the keys in value order (all places relative to the point's start)."""
    points = np.repeat(np.arange(len(lengths)), lengths)
    offsets = (np.cumsum(lengths) - lengths)[points]
    if keys.dtype.kind in "iu" and (keys >= 0).all() and (keys < 1 << 31).all():
        # Codes: one small sort per point of (key descending, id) packed in 64 bits.
        packed = ((np.int64((1 << 31) - 1) - keys.astype(np.int64)) << 32) | ids.astype(np.int64)
        at = _sorted_within_points(lengths, packed)
    else:
        at = np.lexsort((ids, -keys, points))  # point by point, key descending, then id
    place = np.empty(len(ids), dtype=np.intp)
    place[at] = np.arange(len(ids)) - offsets
    sorted_keys = keys[at]
    new = np.ones(len(ids), dtype=bool)
    new[1:] = (sorted_keys[1:] != sorted_keys[:-1]) | (points[1:] != points[:-1])
    index = np.arange(len(ids))
    start = np.maximum.accumulate(np.where(new, index, 0))
    following = np.empty(len(ids), dtype=np.intp)
    following[:-1] = np.minimum.accumulate(np.where(new, index, len(ids))[:0:-1])[::-1]
    following[-1:] = len(ids)
    run_start, run_length = np.empty_like(place), np.empty_like(place)
    run_start[at] = start - offsets[at]
    run_length[at] = following - start
    return place, run_start, run_length, sorted_keys


def ties_of_positions(
    lengths: npt.NDArray[Any], ids: npt.NDArray[Any], keys: npt.NDArray[Any], positions: npt.NDArray[Any]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32], npt.NDArray[Any]]:
    """Each value's position within its point (naming order) as tie fields: (fields packed 2 bits a value,
    the points kept whole, their ids in naming order)."""
    if not len(ids):
        return np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.int32), ids[:0]
    place, _, run_length, sorted_keys = _value_order_runs(lengths, ids, keys)
    points = np.repeat(np.arange(len(lengths)), lengths)
    offsets = np.cumsum(lengths) - lengths
    positions = np.asarray(positions, dtype=np.intp)
    # Named by value: the key at each naming position is the key at that place of the value order.
    keyed = keys == sorted_keys[offsets[points] + positions]
    moved = positions != place
    whole_point = np.zeros(len(lengths), dtype=bool)
    whole_point[points[~keyed | (moved & (run_length > 4))]] = True
    fields = np.where(whole_point[points], 0, (positions - place) & 3).astype(np.uint8)
    whole = np.flatnonzero(whole_point).astype(np.int32)
    in_whole = whole_point[points]
    order = np.lexsort((positions[in_whole], points[in_whole]))
    return _pack_fields(fields), whole, ids[in_whole][order]


def positions_of_ties(
    lengths: npt.NDArray[Any],
    ids: npt.NDArray[Any],
    keys: npt.NDArray[Any],
    packed: npt.NDArray[Any],
    whole: npt.NDArray[Any],
    whole_ids: npt.NDArray[Any],
) -> npt.NDArray[np.intp]:
    """The inverse of `ties_of_positions`: each value's position within its point. Raises ValueError on
    fields or whole points that do not fit the values."""
    if len(packed) != (len(ids) + 3) // 4:
        raise ValueError(f"grid ties: {len(packed)} bytes for {len(ids)} values")
    if not len(ids):
        if len(whole) or len(whole_ids):
            raise ValueError("grid ties: whole points of an empty grid")
        return np.zeros(0, dtype=np.intp)
    fields = _unpack_fields(packed, len(ids))
    place, run_start, run_length, _ = _value_order_runs(lengths, ids, keys)
    positions = np.where(run_length <= 4, run_start + ((place - run_start + fields) & 3), place)
    if len(whole):
        if (np.diff(whole) <= 0).any() or whole[0] < 0 or whole[-1] >= len(lengths):
            raise ValueError("grid ties: whole points out of order or range")
        points = np.repeat(np.arange(len(lengths)), lengths)
        in_whole = np.isin(points, whole)
        if int(lengths[whole].sum()) != len(whole_ids):
            raise ValueError("grid ties: whole points and their ids do not match")
        # Each value of a whole point: its position is where its id is in that point's list.
        at = np.flatnonzero(in_whole)
        by_id = np.lexsort((ids[at], points[at]))
        named_points = np.repeat(whole, lengths[whole])
        named_place = np.arange(len(whole_ids)) - np.repeat(np.cumsum(lengths[whole]) - lengths[whole], lengths[whole])
        by_named = np.lexsort((whole_ids, named_points))
        if (ids[at][by_id] != whole_ids[by_named]).any():
            raise ValueError("grid ties: a whole point's ids are not its values'")
        positions[at[by_id]] = named_place[by_named]
    return positions


# -- a grid export's values as each name's floor and differences grouped by width (state version 8) ---------
#
# The codes of one name move within a narrow band (a site's bytes sampled around a level; a lock site's
# increases): stored as each name's floor (its least code) and each value's difference from it, grouped by
# the width of its name's band (bits of the largest difference), a group per width. A name whose codes never
# change has width 0 and no values stored. Each group is a byte plane or two of its own in the checkpoint's
# column block (`state.codec.Columns`), so deflate fits its Huffman codes to a band's width, near what the
# differences carry, where the codes themselves (a name's level in the high bits, its noise in the low)
# mix every name's low bits in one distribution.

MAX_WIDTH = 16  # codes are 16-bit: a difference needs at most 16 bits
_POWERS = np.int64(1) << np.arange(MAX_WIDTH + 1, dtype=np.int64)
_U8 = np.dtype(np.uint8)
# A group's dtype by its key (the C form's, and the state's: the width as a string).
_GROUP_DTYPES = {str(w): np.dtype(np.uint8 if w <= 8 else np.uint16) for w in range(1, MAX_WIDTH + 1)}


def every_name(ids: npt.NDArray[Any], names: int) -> bool:
    """Whether an export's ids are every name at every point (0, 1, ... names - 1, point after point)."""
    if not (names and len(ids) and len(ids) % names == 0) or ids.dtype.kind not in "iu":
        return False
    if names - 1 > np.iinfo(ids.dtype).max:
        return False  # (ids of this dtype cannot name the last name)
    # Compared in the ids' own dtype: no cast of every id to int64.
    return bool((ids.reshape(-1, names) == np.arange(names, dtype=ids.dtype)).all())


def values_by_width(
    ids: npt.NDArray[Any], codes: npt.NDArray[Any], names: int
) -> tuple[npt.NDArray[Any], npt.NDArray[np.uint8], dict[int, npt.NDArray[Any]]]:
    """(floor per name, in the codes' dtype; width per name; {width: the differences of the values whose
    names have that width, in export order, uint8 up to 8 bits, else uint16}) of integer `codes` by id. Codes
    of 16 bits (or 32 spanning at most 16 per name) in native arrays: the C form (`_grid_pack.grid_values`:
    where every point names every name, the usual export, two passes over the codes); else `values_by_width_numpy`,
    the reference."""
    got = _grid_pack.grid_values(None, ids, codes, names)
    if got is not NotImplemented:
        _, floor, widths, groups = got
        if floor is not None and widths is not None and groups is not None:  # (integer codes)
            floor_array, width_array, by_width = _width_arrays(floor, widths, groups, codes.dtype)
            return floor_array, width_array, {int(w): part for w, part in by_width.items()}
    return values_by_width_numpy(ids, codes, names)


def _width_arrays(
    floor: bytes | bytearray, widths: bytes | bytearray, groups: dict[str, Any], dtype: np.dtype[Any]
) -> tuple[npt.NDArray[Any], npt.NDArray[np.uint8], dict[str, npt.NDArray[Any]]]:
    """`_grid_pack.grid_values`' floors (in the codes' `dtype`), widths and groups (keyed by the width as a
    string) as arrays over its buffers."""
    return (
        np.frombuffer(floor, dtype=dtype),
        np.frombuffer(widths, dtype=_U8),
        {w: np.frombuffer(part, dtype=_GROUP_DTYPES[w]) for w, part in groups.items()},
    )


def presence_and_widths(
    lengths: npt.NDArray[Any], ids: npt.NDArray[Any], codes: npt.NDArray[Any], names: int
) -> tuple[
    npt.NDArray[np.uint8] | None,
    npt.NDArray[Any] | None,
    npt.NDArray[np.uint8] | None,
    dict[str, npt.NDArray[Any]] | None,
]:
    """`presence_of_ids` and `values_by_width` of an export at once, as state version 8 writes a grid: (the
    bitmap or None; floor, widths and the groups keyed by their width as a string, the state's keys; these
    three None for codes that are not integers). The C form (`_grid_pack.grid_values`) where it takes the
    arrays (native integers; codes of 16 bits, of 32 spanning at most 16 per name, or floats: every export the
    grids make): one call that checks whether every point names every name (the usual export), then one pass
    over the ids and two over the codes (their bounds, their differences);
    else `presence_of_ids_numpy` and `values_by_width_numpy`, the references."""
    got = _grid_pack.grid_values(lengths, ids, codes, names)
    if got is NotImplemented:
        present = presence_of_ids_numpy(lengths, ids, names)
        if codes.dtype.kind not in "iu":
            return present, None, None, None
        floor, widths, by_width = values_by_width_numpy(ids, codes, names)
        return present, floor, widths, {str(w): part for w, part in by_width.items()}
    packed, floor_bytes, width_bytes, groups = got
    present = None if packed is None else np.frombuffer(packed, dtype=_U8)
    if floor_bytes is None or width_bytes is None or groups is None:  # (float codes)
        return present, None, None, None
    return (present, *_width_arrays(floor_bytes, width_bytes, groups, codes.dtype))


def values_by_width_numpy(
    ids: npt.NDArray[Any], codes: npt.NDArray[Any], names: int
) -> tuple[npt.NDArray[Any], npt.NDArray[np.uint8], dict[int, npt.NDArray[Any]]]:
    """`values_by_width` in numpy, for any export."""
    ids = ids.astype(np.intp)
    values = codes.astype(np.int64)
    floor = np.zeros(names, dtype=np.int64)
    top = np.zeros(names, dtype=np.int64)
    if len(ids):
        floor[:], top[:] = np.iinfo(np.int64).max, np.iinfo(np.int64).min
        np.minimum.at(floor, ids, values)
        np.maximum.at(top, ids, values)
        unnamed = floor > top  # a name no value has (none in an export): floor 0, width 0
        floor[unnamed] = top[unnamed] = 0
    widths = ((top - floor)[:, None] >= _POWERS[None, :]).sum(axis=1).astype(np.uint8)
    width_of = widths[ids]
    order = np.argsort(width_of, kind="stable")  # export order within each width
    differences = (values - floor[ids])[order]
    bounds = np.cumsum(np.bincount(width_of, minlength=MAX_WIDTH + 1)).tolist() if len(ids) else [0] * 17
    groups = {}
    for width in range(1, MAX_WIDTH + 1):
        if bounds[width] > bounds[width - 1]:
            part = differences[bounds[width - 1] : bounds[width]]
            groups[width] = part.astype(np.uint8 if width <= 8 else np.uint16)
    return floor.astype(codes.dtype), widths, groups


def codes_of_widths(
    ids: npt.NDArray[Any],
    floor: npt.NDArray[Any],
    widths: npt.NDArray[Any],
    groups: dict[int, npt.NDArray[Any]],
) -> npt.NDArray[Any]:
    """The inverse of `values_by_width`: the codes by id, in `floor`'s dtype. Raises ValueError when the
    groups do not fit the ids and widths."""
    if len(floor) != len(widths) or (len(ids) and (ids.min() < 0 or ids.max() >= len(floor))):
        raise ValueError("grid values: floors, widths and ids do not match")
    names = len(floor)
    if every_name(ids, names) and all(0 < w <= MAX_WIDTH and w in widths for w in groups):
        table = np.broadcast_to(floor.astype(np.int64), (len(ids) // names, names)).copy()
        for width, part in groups.items():
            columns = np.flatnonzero(widths == width)
            if len(part) != table.shape[0] * len(columns) or (len(part) and int(part.max()) >> width):
                raise ValueError(f"grid values: {len(part)} differences of width {width} for its names' values")
            table[:, columns] += part.reshape(table.shape[0], len(columns))
        if sorted(groups) != sorted({int(w) for w in widths if w}):
            raise ValueError(
                f"grid values: groups of widths {sorted(groups)} for names of widths {sorted(set(widths))}"
            )
        limits = np.iinfo(floor.dtype)
        if table.size and (table.min() < limits.min or table.max() > limits.max):
            raise ValueError("grid values: a code out of its range")
        every: npt.NDArray[Any] = table.ravel().astype(floor.dtype)
        return every
    ids = ids.astype(np.intp)
    width_of = widths[ids]
    counts = np.bincount(width_of, minlength=MAX_WIDTH + 1) if len(ids) else np.zeros(MAX_WIDTH + 1, np.intp)
    if len(counts) > MAX_WIDTH + 1 or sorted(groups) != [w for w in range(1, MAX_WIDTH + 1) if counts[w]]:
        raise ValueError(f"grid values: groups of widths {sorted(groups)} for names of widths {np.flatnonzero(counts)}")
    differences = np.zeros(len(ids), dtype=np.int64)
    at = int(counts[0])  # width 0: no differences
    for width in sorted(groups):
        part = groups[width]
        if len(part) != counts[width] or int(part.max()) >> width:
            raise ValueError(f"grid values: {len(part)} differences of width {width} for {counts[width]} values")
        differences[at : at + len(part)] = part
        at += len(part)
    codes = floor[ids].astype(np.int64)
    codes[np.argsort(width_of, kind="stable")] += differences
    limits = np.iinfo(floor.dtype)
    if len(codes) and (codes.min() < limits.min or codes.max() > limits.max):
        raise ValueError("grid values: a code out of its range")
    result: npt.NDArray[Any] = codes.astype(floor.dtype)
    return result


def presence_of_ids(lengths: npt.NDArray[Any], ids: npt.NDArray[Any], names: int) -> npt.NDArray[np.uint8] | None:
    """An export's ids by point (each point's ascending) as a bitmap, a bit per point and name (row by row,
    `np.packbits`), or None when that would be larger than the ids as bytes or they are not ascending. Native
    integer arrays: the C form (`_grid_pack.grid_values`); else `presence_of_ids_numpy`, the reference."""
    got = _grid_pack.grid_values(lengths, ids, None, names)
    if got is NotImplemented:
        return presence_of_ids_numpy(lengths, ids, names)
    return None if got[0] is None else np.frombuffer(got[0], dtype=_U8)


def presence_of_ids_numpy(lengths: npt.NDArray[Any], ids: npt.NDArray[Any], names: int) -> npt.NDArray[np.uint8] | None:
    """`presence_of_ids` in numpy."""
    n = len(lengths)
    if n * names > 8 * len(ids) or not len(ids):
        return None
    if len(ids) == n * names and every_name(ids, names):
        full: npt.NDArray[np.uint8] = np.packbits(np.ones(n * names, dtype=bool))  # every point names every name
        return full
    points = np.repeat(np.arange(n), lengths)
    if len(ids) > 1 and ((np.diff(ids.astype(np.intp)) <= 0) & (points[1:] == points[:-1])).any():
        return None
    bits = np.zeros((n, names), dtype=bool)
    bits[points, ids.astype(np.intp)] = True
    packed: npt.NDArray[np.uint8] = np.packbits(bits)
    return packed


def ids_of_presence(
    lengths: npt.NDArray[Any], packed: npt.NDArray[Any], names: int, dtype: type[np.signedinteger[Any]]
) -> npt.NDArray[Any]:
    """The inverse of `presence_of_ids`. Raises ValueError when the bitmap does not fit the lengths. Native
    lengths and a contiguous bitmap: the C form (`_grid_pack.presence_ids`); else `ids_of_presence_numpy`, the
    reference."""
    size = np.dtype(dtype).itemsize
    got = _grid_pack.presence_ids(lengths, packed, names, size)
    if got is NotImplemented:
        return ids_of_presence_numpy(lengths, packed, names, dtype)
    ids: npt.NDArray[Any] = np.frombuffer(got, dtype=dtype)
    return ids


def ids_of_presence_numpy(
    lengths: npt.NDArray[Any], packed: npt.NDArray[Any], names: int, dtype: type[np.signedinteger[Any]]
) -> npt.NDArray[Any]:
    """`ids_of_presence` in numpy."""
    n = len(lengths)
    if len(packed) != (n * names + 7) // 8:
        raise ValueError(f"grid presence: {len(packed)} bytes for {n} points of {names} names")
    bits = np.unpackbits(np.asarray(packed, dtype=np.uint8), count=n * names).reshape(n, names)
    if (bits.sum(axis=1) != lengths).any():
        raise ValueError("grid presence: bits and lengths differ")
    ids: npt.NDArray[Any] = np.nonzero(bits)[1].astype(dtype)
    return ids


# -- tie fields of the runs only (state version 8) ---------------------------------------------------------
#
# A tie field is 0 but where a value is in a run of equal keys of its point (the value order cannot tell
# such values apart): version 8 stores the fields of those values only, in value order, and of each run all
# but the last (its position is the one the others leave), none of a point kept whole or of a run longer
# than 4 (such a point is whole). The reader finds the runs from the values, as the writer did.


_Runs = tuple[
    npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.bool_], npt.NDArray[np.bool_]
]


def _tie_runs(
    lengths: npt.NDArray[Any], ids: npt.NDArray[Any], keys: npt.NDArray[Any], whole: npt.NDArray[Any]
) -> _Runs:
    """The values in runs of equal keys, in value order (point by point, key descending, then id): each
    one's index in the export, its place in its point, the place its run starts at, whether its field is
    stored (in a run of 2 to 4 of a point not whole, not the run's last) and whether it is the last of such
    a run. (Values in no run have field 0: the work is on the runs' values alone.)"""
    n = len(ids)
    if n < 2:
        none = np.zeros(0, dtype=np.intp)
        return none, none, none, none.astype(bool), none.astype(bool)
    points = np.repeat(np.arange(len(lengths)), lengths)
    if keys.dtype.kind in "iu" and keys.dtype.itemsize < 8:
        keys = keys.astype(np.int64)  # (codes as they are kept: -keys below must not wrap)
    if keys.dtype.kind in "iu" and (keys >= 0).all() and (keys < 1 << 31).all():
        packed = ((np.int64((1 << 31) - 1) - keys.astype(np.int64)) << 32) | ids.astype(np.int64)
        at = _sorted_within_points(lengths, packed)  # point by point: the points stay in order
    else:
        at = np.lexsort((ids, -keys, points))
    sorted_keys = keys[at]
    same = (sorted_keys[1:] == sorted_keys[:-1]) & (points[1:] == points[:-1])  # as the one before it
    before = np.concatenate(([False], same))
    after = np.concatenate((same, [False]))
    runs = np.flatnonzero(before | after)  # the values in runs, in value order
    before, after = before[runs], after[runs]
    starts = np.flatnonzero(~before)
    run = np.cumsum(~before) - 1
    run_points = points[runs]
    place = runs - (np.cumsum(lengths) - lengths)[run_points]
    whole_point = np.zeros(len(lengths), dtype=bool)
    whole_point[np.asarray(whole, dtype=np.intp)] = True
    tied = (np.diff(np.append(starts, len(runs))) <= 4)[run] & ~whole_point[run_points]
    return at[runs], place, place[starts][run], tied & after, tied & ~after


def _c_ints(array: Any) -> npt.NDArray[Any]:
    """An array as the C forms read it: native integers as they are (contiguous), anything else as int64."""
    if (
        isinstance(array, np.ndarray)
        and array.dtype.kind in "iu"
        and array.dtype.itemsize <= 4
        and array.dtype.isnative
    ):
        return np.ascontiguousarray(array)
    return np.ascontiguousarray(array, dtype=np.int64)


def _c_keys(keys: npt.NDArray[Any]) -> bool:
    """Whether the C tie forms take these keys: integers of at most 32 bits, or int64 (not float counters,
    not uint64)."""
    return keys.dtype.kind == "i" or (keys.dtype.kind == "u" and keys.dtype.itemsize <= 4)


def tied_of_ties(
    lengths: npt.NDArray[Any],
    ids: npt.NDArray[Any],
    keys: npt.NDArray[Any],
    packed: npt.NDArray[Any],
    whole: npt.NDArray[Any],
) -> npt.NDArray[np.uint8] | None:
    """The tie fields of `ties_of_positions` (packed, by export order) as version 8 stores them (packed, in
    value order), or None when the fields are not what the version 8 reader would give back for the values
    left out (then the state keeps them whole). Integer keys (codes: every grid that writes these, read in
    their own dtype): the C form (`_grid_pack.c`), a pass per point that hashes its keys to find its runs;
    else (and where a run has one id twice) `tied_of_ties_numpy`, the reference. Raises ValueError on counts
    that do not add up or a whole point out of range."""
    if _c_keys(keys):
        tied = _grid_pack.tied_of_ties(
            _c_ints(lengths), _c_ints(ids), _c_ints(keys), np.ascontiguousarray(packed, dtype=np.uint8), _c_ints(whole)
        )
        if tied is not NotImplemented:
            return None if tied is None else np.frombuffer(tied, dtype=np.uint8)
    return tied_of_ties_numpy(lengths, ids, keys, packed, whole)


def tied_of_ties_numpy(
    lengths: npt.NDArray[Any],
    ids: npt.NDArray[Any],
    keys: npt.NDArray[Any],
    packed: npt.NDArray[Any],
    whole: npt.NDArray[Any],
) -> npt.NDArray[np.uint8] | None:
    """`tied_of_ties` in numpy, for any keys: every point sorted at once, the runs read from the sorted
    keys."""
    at, place, start, stored, last = _tie_runs(lengths, ids, keys, whole)
    packed = np.asarray(packed, dtype=np.uint8)
    in_runs = ((packed[at >> 2] >> ((at & 3) << 1).astype(np.uint8)) & 3).astype(np.intp)
    kept = in_runs[stored].astype(np.uint8)
    nonzero = sum(np.count_nonzero((packed >> np.uint8(k)) & 3) for k in (0, 2, 4, 6))
    if np.count_nonzero(in_runs) != nonzero:
        return None  # a field outside every run: not an order the values allow (kept as it is)
    if not np.array_equal(_fields_of_tied(place, start, stored, last, kept), in_runs):
        return None
    return _pack_fields(kept)


def ties_of_tied(
    lengths: npt.NDArray[Any],
    ids: npt.NDArray[Any],
    keys: npt.NDArray[Any],
    tied: npt.NDArray[Any],
    whole: npt.NDArray[Any],
) -> npt.NDArray[np.uint8]:
    """The inverse of `tied_of_ties`: the tie fields packed by export order. Raises ValueError when `tied`
    does not fit the values. (Integer keys: the C form; else `ties_of_tied_numpy`.)"""
    if _c_keys(keys):
        ties = _grid_pack.ties_of_tied(
            _c_ints(lengths), _c_ints(ids), _c_ints(keys), np.ascontiguousarray(tied, dtype=np.uint8), _c_ints(whole)
        )
        if ties is not NotImplemented:
            return np.frombuffer(ties, dtype=np.uint8)
    return ties_of_tied_numpy(lengths, ids, keys, tied, whole)


def ties_of_tied_numpy(
    lengths: npt.NDArray[Any],
    ids: npt.NDArray[Any],
    keys: npt.NDArray[Any],
    tied: npt.NDArray[Any],
    whole: npt.NDArray[Any],
) -> npt.NDArray[np.uint8]:
    """`ties_of_tied` in numpy, for any keys."""
    at, place, start, stored, last = _tie_runs(lengths, ids, keys, whole)
    count = int(stored.sum())
    if len(tied) != (count + 3) // 4:
        raise ValueError(f"grid ties: {len(tied)} bytes for {count} tied values")
    fields = np.zeros(len(ids), dtype=np.uint8)
    fields[at] = _fields_of_tied(place, start, stored, last, _unpack_fields(tied, count))
    return _pack_fields(fields)


def _fields_of_tied(
    place: npt.NDArray[np.intp],
    start: npt.NDArray[np.intp],
    stored: npt.NDArray[np.bool_],
    last: npt.NDArray[np.bool_],
    kept: npt.NDArray[Any],
) -> npt.NDArray[np.intp]:
    """The tie fields of the values in runs (value order): `kept` where stored, each run's last from the
    others (the run's places less the positions the others take), 0 elsewhere."""
    fields = np.zeros(len(place), dtype=np.intp)
    fields[stored] = kept
    if last.any():
        position = start + ((place - start + fields) & 3)
        group = np.cumsum(np.concatenate(([True], ~stored[:-1]))) - 1  # a run's stored values and its last
        taken = np.bincount(group, np.where(stored, position, 0))
        places = np.bincount(group, np.where(stored | last, place, 0))
        fields[last] = ((places - taken)[group[last]].astype(np.intp) - place[last]) & 3
    return fields


def _pack_fields(fields: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    padded = np.zeros(-(-len(fields) // 4) * 4, dtype=np.uint8)
    padded[: len(fields)] = fields
    packed: npt.NDArray[np.uint8] = (padded.reshape(-1, 4) << np.arange(0, 8, 2, dtype=np.uint8)).sum(
        axis=1, dtype=np.uint8
    )
    return packed


def _unpack_fields(packed: npt.NDArray[Any], n: int) -> npt.NDArray[np.intp]:
    shifts = np.arange(0, 8, 2, dtype=np.uint8)
    fields: npt.NDArray[np.intp] = ((np.asarray(packed, dtype=np.uint8)[:, None] >> shifts) & 3).ravel()[:n]
    return fields.astype(np.intp)


def export_keys(
    scale: ValueScale,
    lengths: npt.NDArray[Any],
    ids: npt.NDArray[Any],
    codes: npt.NDArray[Any],
    base: npt.NDArray[Any] | None,
) -> npt.NDArray[Any]:
    """What a grid's value order sorts by, per value of an export by id: the codes, or (counter grids, with
    each name's `base`) the counters as the grid reads them."""
    if base is None or not len(ids):
        keys: npt.NDArray[Any] = codes.astype(np.float64) if codes.dtype.kind == "f" else codes.astype(np.int64)
        return keys
    return _counters_of(lengths, ids.astype(np.intp), scale.decode(codes), np.asarray(base, dtype=np.float64))[1]
