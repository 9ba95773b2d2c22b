"""A grid's naming order (history.py `Grid`): kept as tie fields and exceptions from the value order, it must give
back exactly the order each profile named its values, wherever it is read: ranking ties, exports (and so
checkpoints), the oldest point (fix verification's start), merged points, the sparse form; and presence
must stay exact where values are absent (the reserved `absent` code), for counter grids too.

Each test drives a grid and a plain reference (the list of (name, value) pairs of every point, as named)
with the same hostile points: values that share a 16-bit code, orders that are not the value order, names
that come and go, and checks the grid against what the reference says."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from otel_leakproc.processor import _grid_pack
from otel_leakproc.processor.history import (
    INCREMENTS,
    LEVELS,
    MAX_WIDTH,
    CounterGrid,
    Grid,
    codes_of_widths,
    export_keys,
    ids_of_presence,
    ids_of_presence_numpy,
    naming_positions,
    positions_of_ties,
    presence_and_widths,
    presence_of_ids,
    presence_of_ids_numpy,
    tied_of_ties,
    tied_of_ties_numpy,
    ties_of_positions,
    ties_of_tied,
    ties_of_tied_numpy,
    values_by_width,
    values_by_width_numpy,
)

NAMES = [f"pkg.site{i:02d}" for i in range(12)]
# Levels past 2**15 are kept within 0.034%: 40,000 and 40,010 share one code, 40,030 has the next.
LEVEL_VALUES = [0.0, 3.0, 3.0, 40_000.0, 40_010.0, 40_030.0, 1e9, 1e9 + 1]


def _point(rng: random.Random, counters: dict[str, float] | None = None) -> list[tuple[str, float]]:
    names = rng.sample(NAMES, rng.randint(0, len(NAMES)))
    if counters is None:
        pairs = [(name, rng.choice(LEVEL_VALUES)) for name in names]
    else:
        for name in names:  # counters only grow; an increase of 0 keeps the site present
            counters[name] = counters.get(name, 0.0) + rng.choice([0.0, 0.0, 5.0, 5.0, 1e7, 1e7 + 3])
        pairs = [(name, counters[name]) for name in names]
    style = rng.random()
    if style < 0.5:  # as the decoders name them: by value, then name
        pairs.sort(key=lambda p: (-p[1], p[0]))
    elif style < 0.8:  # by value, equal values in any order
        rng.shuffle(pairs)
        pairs.sort(key=lambda p: -p[1])
    else:
        rng.shuffle(pairs)  # any order at all
    return pairs


def _naming_by_point(grid: Grid) -> list[list[str]]:
    _names, lengths, ids, _ = grid.export(lambda name: 0)
    live = sorted(grid.index)
    out, at = [], 0
    for length in lengths.tolist():
        out.append([live[i] for i in ids[at : at + length].tolist()])
        at += length
    return out


def _expected_ranking(grid: Grid, reference: list[list[tuple[str, float]]], limit: int) -> list[str]:
    """Names by peak (as the grid reads its values), then first point with a positive value, then position
    within that point as the reference named it."""
    names = sorted(grid.index)
    matrix = grid.matrix(names)
    keyed = []
    for name, row in zip(names, matrix, strict=True):
        positive = np.flatnonzero(row > 0)
        if not len(positive):
            continue
        first = int(positive[0])
        position = [n for n, _ in reference[first]].index(name)
        keyed.append((-float(row.max()), first, position, name))
    return [name for *_, name in sorted(keyed)[:limit]]


def _check(grid: Grid, reference: list[list[tuple[str, float]]]) -> None:
    assert _naming_by_point(grid) == [[n for n, _ in point] for point in reference]
    assert [n for n, _ in grid.first_items()] == ([n for n, _ in reference[0]] if reference else [])
    for limit in (3, 64):
        assert grid.ranked(limit, "") == _expected_ranking(grid, reference, limit)
    present = {name for point in reference for name, _ in point}
    assert set(grid.index) == present  # a site named with 0 keeps its row; one no point names has none
    # A checkpoint's layout (values by id with moves) gives every naming order back.
    names, lengths, ids, codes, moves = grid.export_by_id(NAMES.index)
    positions = naming_positions(lengths, ids, codes, moves)
    by_point, at = [], 0
    for length in lengths.tolist():
        part = sorted(zip(positions[at : at + length].tolist(), ids[at : at + length].tolist(), strict=True))
        by_point.append([NAMES[names[i]] for _, i in part])
        at += length
    assert by_point == [[n for n, _ in point] for point in reference]


def _slide(grid: Grid, reference: list[list[tuple[str, float]]], point: list[tuple[str, float]]) -> None:
    """Append `point` to the grid and the reference, keep the newest 8 in both, and compare them."""
    grid.append(point)
    reference.append(point)
    if len(reference) > 8:
        grid.popleft()
        reference.pop(0)
    _check(grid, reference)


@pytest.mark.parametrize("seed", range(6))
def test_a_levels_grid_gives_back_each_naming_order_and_ranks_ties_by_it(seed: int) -> None:
    rng = random.Random(seed)
    grid = Grid(10, scale=LEVELS)
    reference: list[list[tuple[str, float]]] = []
    for step in range(40):
        _slide(grid, reference, _point(rng))
        if step == 20:  # a restore from the checkpoint layout keeps the orders
            names, lengths, ids, codes, moves = grid.export_by_id(NAMES.index)
            restored = Grid(10, scale=LEVELS)
            restored.restore(
                [NAMES[i] for i in names], lengths, ids, codes, naming_positions(lengths, ids, codes, moves)
            )
            grid = restored
            _check(grid, reference)
    assert grid.ties is not None  # the points did need order state


@pytest.mark.parametrize("seed", range(6))
def test_a_counter_grid_keeps_naming_orders_and_presence_of_absent_sites(seed: int) -> None:
    rng = random.Random(100 + seed)
    grid = CounterGrid(10)
    counters: dict[str, float] = {}
    reference: list[list[tuple[str, float]]] = []
    for _ in range(40):
        _slide(grid, reference, _point(rng, counters))
        # Absent sites read as 0, present ones as their counters (within the increases' rounding).
        names = sorted(grid.index)
        matrix = grid.matrix(names)
        for j, point in enumerate(reference):
            named = dict(point)
            for i, name in enumerate(names):
                if name in named:
                    assert matrix[i, j] == pytest.approx(named[name], rel=1e-3, abs=1e-6)
                else:
                    assert matrix[i, j] == 0.0
    assert (grid.values == INCREMENTS.absent).any()  # the points did leave sites out


def _merge_reference(reference: list[list[tuple[str, float]]], first: int, count: int) -> None:
    """Merge points first .. first + count - 1 as `Grid.merge` does: names in first-seen order (value: the
    mean, which the naming order does not depend on)."""
    merged: dict[str, float] = {}
    for point in reference[first : first + count]:
        for name, value in point:
            merged[name] = merged.get(name, 0.0) + value / count
    reference[first : first + count] = [list(merged.items())]


@pytest.mark.parametrize("seed", range(4))
def test_merged_points_keep_first_seen_order_as_with_fine_points_60(seed: int) -> None:
    rng = random.Random(200 + seed)
    grid = Grid(16, scale=LEVELS)
    reference: list[list[tuple[str, float]]] = []
    coarse = 0
    for _ in range(60):
        point = _point(rng)
        grid.append(point)
        reference.append(point)
        if len(reference) - coarse >= 10:  # as the detector merges the oldest whole points, 6 to one
            grid.merge(coarse, 6, quantized=False)
            _merge_reference(reference, coarse, 6)
            coarse += 1
        if coarse > 3:
            grid.popleft()
            reference.pop(0)
            coarse -= 1
        _check(grid, reference)


def test_the_sparse_form_keeps_the_naming_orders_of_the_dense_one() -> None:
    rng = random.Random(9)
    grid = Grid(10, max_rows=12, scale=LEVELS)
    reference: list[list[tuple[str, float]]] = []
    for _ in range(8):
        point = _point(rng)
        grid.append(point)
        reference.append(point)
    assert not grid.overflow
    churn = [("pkg.new", 40_000.0), ("pkg.site00", 40_010.0)]
    grid.append(churn + [(f"pkg.extra{i}", 3.0) for i in range(12)])  # past the bound: sparse from here
    reference.append(churn + [(f"pkg.extra{i}", 3.0) for i in range(12)])
    assert grid.overflow
    assert _naming_by_point(grid) == [[n for n, _ in point] for point in reference]


def test_an_unordered_grid_reads_back_in_value_order_and_keeps_no_order_state() -> None:
    grid = Grid(4, scale=LEVELS, ordered=False)
    grid.append([("b", 5.0), ("a", 5.0), ("c", 9.0), ("d", 0.0)])
    assert grid.ties is None
    assert grid.exceptions is None
    assert _naming_by_point(grid) == [["c", "a", "b", "d"]]  # code descending, then name
    assert grid.matrix(["d", "a"]).tolist() == [[0.0], [5.0]]


def _ties_round_trip(grid: Grid) -> None:
    """A checkpoint's tie fields (state version 7) give every naming order back, and keep only what the grid
    keeps: no field for a point named by value and name."""
    names, lengths, ids, codes, positions = grid.export_positions(NAMES.index)
    base = grid.export_ends()[0] if isinstance(grid, CounterGrid) else None
    keys = export_keys(grid.scale, lengths, ids, codes, base)
    ties, whole, whole_ids = ties_of_positions(lengths, ids, keys, positions)
    assert positions_of_ties(lengths, ids, keys, ties, whole, whole_ids).tolist() == positions.tolist()
    tied = tied_of_ties(lengths, ids, keys, ties, whole)  # state version 8: the fields of the runs alone
    assert tied is not None
    assert len(tied) <= len(ties)
    assert ties_of_tied(lengths, ids, keys, tied, whole).tolist() == ties.tolist()
    kept = grid.export_ties(NAMES.index)  # what the grid keeps, written as it is: the same orders
    assert kept is not None
    assert [a.tolist() for a in kept[1:4]] == [lengths.tolist(), ids.tolist(), codes.tolist()]
    assert positions_of_ties(lengths, ids, keys, *kept[4:]).tolist() == positions.tolist()
    if not grid.exceptions:
        assert not len(whole)
    if grid.ties is None:
        assert not ties.any()
    restored = CounterGrid(grid.columns) if base is not None else Grid(grid.columns, scale=grid.scale)
    back = positions_of_ties(lengths, ids, keys, ties, whole, whole_ids)
    if base is not None:
        restored.restore([NAMES[i] for i in names], lengths, ids, codes, back, base, grid.export_ends()[1])
    else:
        restored.restore([NAMES[i] for i in names], lengths, ids, codes, back)
    assert _naming_by_point(restored) == _naming_by_point(grid)


@pytest.mark.parametrize("seed", range(4))
def test_tie_fields_of_a_checkpoint_give_the_naming_orders_back(seed: int) -> None:
    rng = random.Random(300 + seed)
    levels, counters = Grid(16, scale=LEVELS), CounterGrid(16)
    running: dict[str, float] = {}
    coarse = 0
    for _ in range(30):
        levels.append(_point(rng))
        counters.append(_point(rng, running))
        if levels.n - coarse >= 10:
            levels.merge(coarse, 6, quantized=False)
            coarse += 1
        _ties_round_trip(levels)
        _ties_round_trip(counters)
    assert levels.exceptions  # merged points: kept whole
    with pytest.raises(ValueError, match="bytes for"):
        positions_of_ties(np.array([2]), np.array([0, 1]), np.array([5, 5]), np.zeros(3, np.uint8), [], [])
    with pytest.raises(ValueError, match="are not its values"):
        positions_of_ties(
            np.array([2]), np.array([0, 1]), np.array([5, 5]), np.zeros(1, np.uint8), np.array([0]), np.array([0, 0])
        )


def test_tie_fields_of_runs_alone_leave_out_each_runs_last_and_refuse_what_they_cannot_give_back() -> None:
    """State version 8: the fields of the values in runs of one key, less each run's last."""
    lengths, ids = np.array([5, 2]), np.array([0, 1, 2, 3, 4, 0, 1])
    keys = np.array([9, 7, 7, 7, 1, 4, 4])  # point 0: a run of three (ids 1-3); point 1: a run of two
    positions = np.array([0, 3, 1, 2, 4, 1, 0])  # named 0, 2, 3, 1, 4 and 1, 0
    ties, whole, _ = ties_of_positions(lengths, ids, keys, positions)
    tied = tied_of_ties(lengths, ids, keys, ties, whole)
    assert tied is not None
    assert len(tied) == 1  # three fields: two of the run of three, one of the run of two
    assert ties_of_tied(lengths, ids, keys, tied, whole).tolist() == ties.tolist()
    alone = ties.copy()
    alone[0] |= 1  # a field for id 0, in no run: no order the values allow
    assert tied_of_ties(lengths, ids, keys, alone, whole) is None
    with pytest.raises(ValueError, match="bytes for 3 tied values"):
        ties_of_tied(lengths, ids, keys, np.zeros(2, np.uint8), whole)


def _random_export(rng: random.Random) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An export of random points (lengths, ids ascending within each point but now and then, integer keys
    from a few values so runs of every length come up, and each value's naming position: by value, by value
    with each run of one key in any order, or any order)."""
    lengths, ids, keys, positions = [], [], [], []
    for _ in range(rng.randint(0, 12)):
        n = rng.choice([0, 1, 2, 5, 8, 20, 40, 70])
        lengths.append(n)
        ids += rng.sample(range(200), n) if rng.random() < 0.1 else sorted(rng.sample(range(200), n))  # (sparse)
        spread = rng.choice([1, 2, 3, 6, 50, 1 << 40])
        point = [rng.randrange(spread) - (rng.random() < 0.1) * (1 << 33) for _ in range(n)]
        keys += point
        positions += _naming_positions(rng, point, shuffled=0.3, runs_in_any_order=0.7)
    arrays = (lengths, ids, keys, positions)
    return tuple(np.array(a, dtype=np.int64) for a in arrays)  # type: ignore[return-value]


def _naming_positions(rng: random.Random, point: list[int], *, shuffled: float, runs_in_any_order: float) -> list[int]:
    """Each value's naming position in a point of keys `point`: by key descending, but with chance `shuffled`
    in any order at all (the point is kept whole), else with chance `runs_in_any_order` each run of one key
    named in any order (their tie fields), else in index order."""
    named = sorted(range(len(point)), key=lambda i: -point[i])
    if rng.random() < shuffled:
        rng.shuffle(named)
    elif rng.random() < runs_in_any_order:
        runs: dict[int, list[int]] = {}
        for i in named:
            runs.setdefault(point[i], []).append(i)
        named = [i for run in runs.values() for i in rng.sample(run, len(run))]
    place = {i: at for at, i in enumerate(named)}
    return [place[i] for i in range(len(point))]


def _native_forms(
    lengths: np.ndarray, ids: np.ndarray, keys: np.ndarray, whole: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The export in every narrower dtype its values fit (as grids keep them: int32 lengths, int8 or int16
    ids, uint16 or int16 codes; and the other integer widths the C forms read), for the C forms."""
    forms = []
    for key_dtype, id_dtype in [
        (np.uint16, np.int8),
        (np.int16, np.int16),
        (np.uint8, np.int16),
        (np.int8, np.int32),
        (np.uint32, np.int8),
        (np.int32, np.uint8),
        (np.int64, np.int64),
    ]:
        k, i = np.iinfo(key_dtype), np.iinfo(id_dtype)
        if len(keys) and (keys.min() < k.min or keys.max() > k.max or ids.min() < i.min or ids.max() > i.max):
            continue
        forms.append((lengths.astype(np.int32), ids.astype(id_dtype), keys.astype(key_dtype), whole.astype(np.int16)))
    return forms


@pytest.mark.parametrize("seed", range(6))
def test_the_c_form_of_the_tie_fields_gives_what_the_numpy_reference_gives(seed: int) -> None:
    """`tied_of_ties`/`ties_of_tied` on integer keys run `_grid_pack.c`; the numpy forms are the reference:
    the same stored fields, the same None for fields no order allows, the same fields back, the same
    refusals; and the same from the keys, ids, lengths and whole points in each integer dtype the C forms
    read as they are."""
    rng = random.Random(900 + seed)
    for _ in range(150):
        lengths, ids, keys, positions = _random_export(rng)
        ties, whole, _ = ties_of_positions(lengths, ids, keys, positions)
        if rng.random() < 0.3 and len(ties):  # hostile: a field flipped anywhere, a point forced whole
            ties = ties.copy()
            ties[rng.randrange(len(ties))] ^= np.uint8(1 << rng.randrange(8))
        if rng.random() < 0.2 and len(lengths):
            whole = np.union1d(whole, [rng.randrange(len(lengths))]).astype(np.int32)
        tied = tied_of_ties(lengths, ids, keys, ties, whole)
        reference = tied_of_ties_numpy(lengths, ids, keys, ties, whole)
        assert (tied is None) == (reference is None)
        for native in _native_forms(lengths, ids, keys, whole):  # read in their own dtypes: the same
            direct = _grid_pack.tied_of_ties(*native[:3], np.ascontiguousarray(ties), native[3])
            assert direct is not NotImplemented  # (ids are unique within a point: the C form decides)
            assert (direct is None) == (reference is None)
            if direct is not None and reference is not None:
                assert list(direct) == reference.tolist()
                back = _grid_pack.ties_of_tied(*native[:3], np.frombuffer(direct, np.uint8), native[3])
                assert list(back) == ties.tolist()
        if tied is None or reference is None:
            continue
        assert tied.tolist() == reference.tolist()
        assert ties_of_tied(lengths, ids, keys, tied, whole).tolist() == ties.tolist()
        garbage = np.frombuffer(rng.randbytes(len(tied)), dtype=np.uint8)  # any bytes of the right length
        assert (
            ties_of_tied(lengths, ids, keys, garbage, whole).tolist()
            == ties_of_tied_numpy(lengths, ids, keys, garbage, whole).tolist()
        )
        wrong = np.zeros(len(tied) + 1, dtype=np.uint8)
        with pytest.raises(ValueError, match="tied values") as c_error:
            ties_of_tied(lengths, ids, keys, wrong, whole)
        with pytest.raises(ValueError, match="tied values") as numpy_error:
            ties_of_tied_numpy(lengths, ids, keys, wrong, whole)
        assert str(c_error.value) == str(numpy_error.value)


def test_the_c_form_refuses_counts_that_do_not_add_up() -> None:
    keys, none = np.array([4, 4, 1]), np.zeros(0)
    with pytest.raises(ValueError, match="lengths add up to 2, not the 3 keys"):
        ties_of_tied(np.array([2]), np.array([0, 1, 2]), keys, np.zeros(1, np.uint8), none)
    with pytest.raises(ValueError, match="2 ids for 3 keys"):
        tied_of_ties(np.array([3]), np.array([0, 1]), keys, np.zeros(1, np.uint8), none)
    with pytest.raises(ValueError, match="point 0 has 4 values, past the 3 values"):
        tied_of_ties(np.array([4, -1]), np.array([0, 1, 2]), keys, np.zeros(1, np.uint8), none)
    with pytest.raises(ValueError, match="point 1 has -1 values"):
        tied_of_ties(np.array([3, -1], dtype=np.int8), np.array([0, 1, 2]), keys, np.zeros(1, np.uint8), none)
    with pytest.raises(ValueError, match="whole points out of range"):
        ties_of_tied(np.array([3]), np.array([0, 1, 2]), keys, np.zeros(1, np.uint8), np.array([1]))
    with pytest.raises(ValueError, match="whole points out of range"):
        tied_of_ties(np.array([3]), np.array([0, 1, 2]), keys, np.zeros(1, np.uint8), np.array([-1], np.int16))
    with pytest.raises(ValueError, match="0 bytes for 3 values"):
        tied_of_ties(np.array([3]), np.array([0, 1, 2]), keys, np.zeros(0, np.uint8), none)
    # Arrays not in native byte order go to the C forms as int64 copies: the same fields.
    swapped = [np.array([3], ">i4"), np.array([0, 1, 2], ">i2"), keys.astype(">u2")]
    ties = np.array([1 | 3 << 2], np.uint8)  # the run of ids 0 and 1 named 1, 0
    assert tied_of_ties(*swapped, ties, np.zeros(0, ">i4")).tolist() == [1]
    assert tied_of_ties(np.array([3]), np.array([0, 1, 2]), keys, ties, none).tolist() == [1]
    assert ties_of_tied(*swapped, np.array([1], np.uint8), np.zeros(0, ">i4")).tolist() == ties.tolist()
    # The C functions check what they are given on their own: types, and nothing read outside a buffer.
    lengths, ids, fields = np.array([3], np.int32), np.array([0, 1, 2], np.int8), np.zeros(1, np.uint8)
    whole = np.zeros(0, np.int32)
    with pytest.raises(ValueError, match="ids of format 'd'"):
        _grid_pack.tied_of_ties(lengths, ids.astype(float), keys, fields, whole)
    with pytest.raises(ValueError, match=r"keys of format 'L'.*unsigned of 8 to 32"):
        _grid_pack.ties_of_tied(lengths, ids, keys.astype(np.uint64), fields, whole)
    with pytest.raises(ValueError, match="lengths must be a contiguous array of integers"):
        _grid_pack.ties_of_tied(np.array([3, 9, 0, 9])[::2], ids, keys, fields, whole)
    with pytest.raises(ValueError, match="whole points must be a contiguous array of integers"):
        _grid_pack.ties_of_tied(lengths, ids, keys, fields, [0])
    with pytest.raises(ValueError, match="whole points of format 'd'"):
        _grid_pack.ties_of_tied(lengths, ids, keys, fields, none)
    with pytest.raises(ValueError, match="whole points of format '\\?'"):
        _grid_pack.ties_of_tied(lengths, ids, keys, fields, np.array([True]))


def test_the_c_form_of_presence_and_widths_checks_what_it_is_given_and_leaves_what_it_does_not_take() -> None:
    """`_grid_pack.grid_values` reads nothing outside its buffers: counts that do not add up and ids out of the
    names raise ValueError naming what is wrong; arrays it does not read (not native, not contiguous, codes of
    8 or 64 bits, a name spanning more than 16 bits) get NotImplemented, for the numpy forms."""
    lengths, ids, codes = np.array([2, 1], np.int32), np.array([0, 1, 1], np.int8), np.array([4, 9, 7], np.uint16)
    present, floor, widths, groups = _grid_pack.grid_values(lengths, ids, codes, 2)
    assert (present, floor, widths, groups) == (
        bytearray([0b11010000]),
        bytearray(b"\4\0\7\0"),
        b"\0\2",
        {"2": b"\2\0"},
    )
    assert _grid_pack.grid_values(None, ids, codes, 2)[0] is None  # no lengths: the values alone
    assert _grid_pack.grid_values(lengths, ids, None, 2)[1:] == (None, None, None)  # no codes: the presence alone
    assert _grid_pack.grid_values(lengths, ids, codes.astype(np.float32), 2)[1:] == (None, None, None)
    with pytest.raises(ValueError, match="2 codes for 3 ids of 2 names"):
        _grid_pack.grid_values(lengths, ids, codes[:2], 2)
    with pytest.raises(ValueError, match="lengths add up to 2, not the 3 ids"):
        _grid_pack.grid_values(lengths[:1], ids, codes, 2)
    with pytest.raises(ValueError, match="point 1 has 5 values, past the 3 ids"):
        _grid_pack.grid_values(np.array([2, 5], np.int32), ids, codes, 2)
    with pytest.raises(ValueError, match="point 0 has -1 values"):
        _grid_pack.grid_values(np.array([-1, 4], np.int32), ids, codes, 2)
    with pytest.raises(ValueError, match="grid presence: an id out of the 1 names"):
        _grid_pack.grid_values(lengths, ids, codes, 1)
    with pytest.raises(ValueError, match="grid values: id 1 out of the 1 names"):
        _grid_pack.grid_values(None, ids, codes, 1)
    with pytest.raises(ValueError, match="grid values: id -1 out of the 2 names"):
        _grid_pack.grid_values(None, np.array([-1], np.int8), codes[:1], 2)
    with pytest.raises(ValueError, match="3 codes for 3 ids of -1 names"):
        _grid_pack.grid_values(lengths, ids, codes, -1)
    for arrays in (
        (lengths, ids, codes.astype(np.int8)),
        (lengths, ids, codes.astype(np.int64)),
        (lengths, ids, codes.astype(bool)),
        (lengths, ids, codes.astype(">u2")),
        (lengths, ids.astype(np.uint64), codes),
        (lengths, ids.astype(">i2"), codes),
        (lengths, ids.astype(float), codes),
        (lengths.astype(">i4"), ids, codes),
        (np.array([2, 9, 1, 9], np.int32)[::2], ids, codes),
        (lengths, ids, np.array([4, 0, 9, 0, 7, 0], np.uint16)[::2]),
        (lengths, [0, 1, 1], codes),
        (lengths, ids, np.array([4, 9, 1 << 17], np.int32)),  # a name spanning 17 bits
    ):
        assert _grid_pack.grid_values(*arrays, 2) is NotImplemented


def test_the_c_form_of_ids_of_presence_checks_the_bitmap_against_the_lengths() -> None:
    """`_grid_pack.presence_ids`: a bitmap of another size, a point of more bits than names or of fewer or more
    bits than its length raise ValueError; arrays it does not read get NotImplemented (the numpy form's)."""
    lengths, packed = np.array([2, 1], np.int32), np.array([0b11010000], np.uint8)
    assert np.frombuffer(_grid_pack.presence_ids(lengths, packed, 2, 2), np.int16).tolist() == [0, 1, 1]
    full = _grid_pack.presence_ids(np.array([3, 3, 3], np.int32), np.array([0xFF, 0x80], np.uint8), 3, 1)
    assert list(full) == [0, 1, 2] * 3  # (every bit: the first row copied)
    with pytest.raises(ValueError, match="grid presence: 2 bytes for 2 points of 2 names"):
        _grid_pack.presence_ids(lengths, np.zeros(2, np.uint8), 2, 1)
    with pytest.raises(ValueError, match="bits and lengths differ"):
        _grid_pack.presence_ids(np.array([2, 2], np.int32), packed, 2, 1)
    with pytest.raises(ValueError, match="bits and lengths differ"):
        _grid_pack.presence_ids(np.array([3, 0], np.int32), packed, 2, 1)
    with pytest.raises(ValueError, match="bits and lengths differ"):
        _grid_pack.presence_ids(np.array([-1, 4], np.int32), packed, 2, 1)
    with pytest.raises(ValueError, match="ids of 1 bytes for 200 names"):
        _grid_pack.presence_ids(lengths, packed, 200, 1)
    with pytest.raises(ValueError, match="ids of 3 bytes"):
        _grid_pack.presence_ids(lengths, packed, 2, 3)
    assert _grid_pack.presence_ids(lengths.astype(">i4"), packed, 2, 1) is NotImplemented
    assert _grid_pack.presence_ids(lengths, np.array([0b11010000, 0, 0, 0], np.uint8)[::2], 2, 1) is NotImplemented
    assert ids_of_presence(lengths.astype(">i4"), packed, 2, np.int8).tolist() == [0, 1, 1]  # (the numpy form)


def _export(rng: np.random.Generator, layout: str, names: int, points: int, codes_dtype: type) -> tuple[Any, ...]:
    """A random export of `names` (lengths, ids, codes): `every` name at every point, a `sparse` subset of them
    (ascending; some names never occur), or a subset in any order (`shuffled`)."""
    used = names if layout == "every" else int(rng.integers(0, names + 1))
    rows = []
    for _ in range(points):
        if layout == "every":
            rows.append(np.arange(names))
        else:
            row = rng.choice(used, size=int(rng.integers(0, used + 1)), replace=False) if used else np.zeros(0)
            rows.append(np.sort(row) if layout == "sparse" else row)
    lengths = np.array([len(r) for r in rows], dtype=np.int32)
    ids = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
    if np.dtype(codes_dtype).kind == "f":
        return lengths, ids, rng.normal(size=len(ids)).astype(codes_dtype)
    info = np.iinfo(codes_dtype)
    top = 20 if codes_dtype is np.int32 else 16  # int32: names wider than 16 bits too (the numpy form's)
    spread = np.int64(1) << rng.integers(0, top + 1, size=names)  # bands of every width
    low = np.clip(rng.integers(info.min, info.max, size=names), info.min, int(info.max) - spread + 1)
    codes = low[ids] + rng.integers(0, 1 << 62, size=len(ids)) % spread[ids] if len(ids) else ids
    return lengths, ids, np.asarray(codes).astype(codes_dtype)


def _same_arrays(got: Any, reference: Any) -> None:
    assert (got is None) == (reference is None)
    if reference is not None:
        assert got.dtype == reference.dtype
        assert got.tobytes() == reference.tobytes()


@pytest.mark.parametrize("seed", range(6))
def test_the_c_forms_of_presence_and_values_by_width_give_what_the_numpy_references_give(seed: int) -> None:
    """Exports of every layout, id and code type (`_grid_pack.grid_values`, through `presence_and_widths`,
    `presence_of_ids` and `values_by_width`): the same bitmaps, floors, widths and groups, dtypes and bytes
    and groups' order, as `presence_of_ids_numpy` and `values_by_width_numpy`; and they read back."""
    rng = np.random.default_rng(seed)
    taken = 0
    for _ in range(60):
        layout = str(rng.choice(["every", "every", "sparse", "shuffled"]))
        names, points = int(rng.integers(0, 70)), int(rng.integers(0, 40))
        codes_dtype = [np.uint16, np.int16, np.int32, np.float32][int(rng.integers(0, 4))]
        lengths, ids, codes = _export(rng, layout, names, points, codes_dtype)
        ids = ids.astype(str(rng.choice(["int8", "uint8", "int16", "int32", "int64", "uint64", ">i2"])))
        present, floor, widths, groups = presence_and_widths(lengths, ids, codes, names)
        reference = presence_of_ids_numpy(lengths, ids, names)
        _same_arrays(present, reference)
        _same_arrays(presence_of_ids(lengths, ids, names), reference)
        if present is not None:  # (and back: the C form of the inverse, against its reference)
            for dtype in (np.int8, np.int16, np.int32, np.int64):
                back = ids_of_presence(lengths, present, names, dtype)
                _same_arrays(back, ids_of_presence_numpy(lengths, present, names, dtype))
                assert back.tolist() == ids.tolist()
            flipped, bit = present.copy(), int(rng.integers(0, len(lengths) * names))
            flipped[bit >> 3] ^= 0x80 >> (bit & 7)
            for inverse in (ids_of_presence, ids_of_presence_numpy):
                with pytest.raises(ValueError, match="bits and lengths differ"):
                    inverse(lengths, flipped, names, np.int16)
        taken += _grid_pack.grid_values(lengths, ids, codes, names) is not NotImplemented
        if codes_dtype is np.float32:
            assert floor is widths is groups is None
            continue
        assert floor is not None
        assert widths is not None
        assert groups is not None
        ref_floor, ref_widths, ref_groups = values_by_width_numpy(ids, codes, names)
        _same_arrays(floor, ref_floor)
        _same_arrays(widths, ref_widths)
        assert list(groups) == [str(w) for w in ref_groups]  # (ascending: the state's order)
        for w, part in ref_groups.items():
            _same_arrays(groups[str(w)], part)
        by_int = values_by_width(ids, codes, names)
        for got, ref in zip(by_int[:2], (ref_floor, ref_widths), strict=True):
            _same_arrays(got, ref)
        assert list(by_int[2]) == list(ref_groups)
        for w, part in ref_groups.items():
            _same_arrays(by_int[2][w], part)
        if widths.max(initial=0) <= MAX_WIDTH:
            assert codes_of_widths(ids, floor, widths, by_int[2]).tolist() == codes.tolist()
    assert taken >= 15  # (the C form took many of them)


def test_a_run_with_one_id_twice_is_left_to_the_numpy_form() -> None:
    """Ids unique within a point make the value order; a run of 2 to 4 with one id twice has no order of its
    own: the C forms say NotImplemented and `tied_of_ties`/`ties_of_tied` give the numpy form's answer."""
    lengths, ids, keys = np.array([3], np.int32), np.array([0, 1, 1], np.int8), np.array([5, 4, 4], np.uint16)
    ties, whole = np.array([0b000100], np.uint8), np.zeros(0, np.int32)  # fields 0, 1, 0
    assert _grid_pack.tied_of_ties(lengths, ids, keys, ties, whole) is NotImplemented
    assert _grid_pack.ties_of_tied(lengths, ids, keys, np.zeros(1, np.uint8), whole) is NotImplemented
    reference = tied_of_ties_numpy(lengths, ids, keys, ties, whole)
    got = tied_of_ties(lengths, ids, keys, ties, whole)
    assert (got is None) == (reference is None)
    assert got is None or reference is None or got.tolist() == reference.tolist()
    tied = np.array([1], np.uint8)
    assert (
        ties_of_tied(lengths, ids, keys, tied, whole).tolist()
        == ties_of_tied_numpy(lengths, ids, keys, tied, whole).tolist()
    )
    # In a run longer than 4 (every field 0) or of a point kept whole, the order does not matter: the C form.
    long_run = np.array([0, 1, 1, 2, 3], np.int8), np.array([4, 4, 4, 4, 4], np.uint16)
    assert _grid_pack.tied_of_ties(np.array([5]), *long_run, np.zeros(2, np.uint8), whole) == bytearray()
    assert _grid_pack.tied_of_ties(lengths, ids, keys, np.zeros(1, np.uint8), np.array([0])) == bytearray()


def _narrow_export(
    rng: random.Random, dtype: type[np.integer], points: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An export (int64 arrays) whose keys fit `dtype` (8 or 16 bits): each point's keys from a few of the
    type's least, largest, 0 and random values, so runs of every length come up at either end of the type;
    ids unique within a point (ascending but now and then); naming positions as `_random_export` makes
    them."""
    info = np.iinfo(dtype)
    candidates = [info.min, info.min + 1, 0, 1, info.max - 1, info.max]
    lengths, ids, keys, positions = [], [], [], []
    for _ in range(points):
        n = rng.choice([0, 1, 2, 3, 5, 9, 40, 90])
        lengths.append(n)
        point_ids = rng.sample(range(100), n)
        ids += point_ids if rng.random() < 0.2 else sorted(point_ids)
        few = rng.randint(1, 6) if rng.random() < 0.7 else 40  # (40 keys: more than 16 runs in a point)
        pool = rng.sample(candidates + [rng.randint(info.min, info.max) for _ in range(40)], few)
        point = [rng.choice(pool) for _ in range(n)]
        keys += point
        positions += _naming_positions(rng, point, shuffled=0.2, runs_in_any_order=0.8)
    arrays = (lengths, ids, keys, positions)
    return tuple(np.array(a, dtype=np.int64) for a in arrays)  # type: ignore[return-value]


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16])
@pytest.mark.parametrize("seed", range(3))
def test_the_c_form_on_keys_of_8_and_16_bits_gives_what_the_numpy_reference_gives(
    dtype: type[np.integer], seed: int
) -> None:
    """Keys of 16 bits or less (a grid's codes) take the C forms' table of keys: the numpy forms' stored
    fields, None and fields back, with keys at both ends of their type, any field flipped, points forced
    whole, and any stored bytes given back."""
    rng = random.Random(1200 + seed)
    stored = refused = 0
    for _ in range(60):
        lengths, ids, keys, positions = _narrow_export(rng, dtype, rng.randint(0, 30))
        ties, whole, _ = ties_of_positions(lengths, ids, keys, positions)
        if rng.random() < 0.3 and len(ties):
            ties = ties.copy()
            ties[rng.randrange(len(ties))] ^= np.uint8(1 << rng.randrange(8))
        if rng.random() < 0.2 and len(lengths):
            whole = np.union1d(whole, [rng.randrange(len(lengths))]).astype(np.int32)
        native = (lengths.astype(np.int32), ids.astype(np.int8), keys.astype(dtype))
        direct = _grid_pack.tied_of_ties(*native, np.ascontiguousarray(ties), whole.astype(np.int32))
        reference = tied_of_ties_numpy(lengths, ids, keys, ties, whole)
        assert (direct is None) == (reference is None)
        if direct is not None and reference is not None:
            assert list(direct) == reference.tolist()
            back = _grid_pack.ties_of_tied(*native, np.frombuffer(direct, np.uint8), whole.astype(np.int32))
            assert list(back) == ties.tolist()
            stored += int(np.count_nonzero(reference))
        refused += direct is None
        zeros = tied_of_ties_numpy(lengths, ids, keys, np.zeros_like(ties), whole)  # (never None)
        assert zeros is not None
        garbage = np.frombuffer(rng.randbytes(len(zeros)), dtype=np.uint8)
        assert (
            list(_grid_pack.ties_of_tied(*native, garbage, whole.astype(np.int32)))
            == ties_of_tied_numpy(lengths, ids, keys, garbage, whole).tolist()
        )
    assert stored
    assert refused


def test_the_c_form_takes_a_point_past_its_table_and_more_points_than_its_stamps() -> None:
    """A point of more than 65,535 values (past the 16-bit indexes of the C forms' table of keys: they hash
    its keys) and a grid of more points than the table has stamps for (32,767: it is cleared and stamped
    anew): the numpy forms' fields."""
    rng = np.random.default_rng(12)
    for lengths, keys in [
        (np.array([70_000]), rng.integers(0, 30_000, 70_000)),  # runs of 2 to 4 and longer
        (np.full(40_000, 2), rng.integers(0, 3, 80_000)),
    ]:
        ids = np.concatenate([np.arange(n) for n in lengths])
        points = np.repeat(np.arange(len(lengths)), lengths)
        pairs = points * 100_000 + keys  # (a point's runs: its values of one key)
        _, run_of, run_length = np.unique(pairs, return_inverse=True, return_counts=True)
        shuffled = np.where(run_length[run_of] <= 4, rng.random(len(keys)), ids)  # (a longer run by id: not whole)
        named = np.lexsort((shuffled, -keys, points))  # by value, each run of 2 to 4 in any order
        positions = np.empty(len(keys), np.int64)
        positions[named] = np.arange(len(keys)) - (np.cumsum(lengths) - lengths)[points[named]]
        ties, whole, _ = ties_of_positions(lengths, ids, keys, positions)
        native = (lengths.astype(np.int32), ids.astype(np.int32), keys.astype(np.uint16), whole)
        direct = _grid_pack.tied_of_ties(*native[:3], ties, whole)
        reference = tied_of_ties_numpy(lengths, ids, keys, ties, whole)
        assert reference is not None
        assert np.count_nonzero(reference)
        assert direct is not None
        assert list(direct) == reference.tolist()
        assert list(_grid_pack.ties_of_tied(*native[:3], np.frombuffer(direct, np.uint8), whole)) == ties.tolist()


def test_a_grid_restores_its_order_state_as_written_and_refuses_fields_that_make_no_order() -> None:
    rng = random.Random(11)
    grid = Grid(12, scale=LEVELS)
    for _ in range(12):
        grid.append(_point(rng))
    kept = grid.export_ties(NAMES.index)
    assert kept is not None
    names, lengths, ids, codes, ties, whole, whole_ids = kept
    restored = Grid(12, scale=LEVELS)
    restored.restore([NAMES[i] for i in names], lengths, ids, codes, kept=(ties, whole, whole_ids))
    assert _naming_by_point(restored) == _naming_by_point(grid)
    assert restored.ranked(64, "") == grid.ranked(64, "")
    # A field on a value whose code no other value of its point shares moves it onto another's place.
    alone = next(
        i
        for i in range(len(ids))
        if (codes[np.repeat(np.arange(len(lengths)), lengths) == 0] == codes[i]).sum() == 1 and i < lengths[0]
    )
    bad = ties.copy()
    bad[alone // 4] |= np.uint8(1 << ((alone % 4) * 2))
    with pytest.raises(ValueError, match="not an order"):
        Grid(12, scale=LEVELS).restore([NAMES[i] for i in names], lengths, ids, codes, kept=(bad, whole, whole_ids))
    with pytest.raises(ValueError, match="at most its columns"):
        Grid(4, scale=LEVELS).restore([NAMES[i] for i in names], lengths, ids, codes, kept=(ties, whole, whole_ids))
