"""The grids' 16-bit levels (`history.LEVELS`) and the checkpoint layout of a grid (values by id, with moves)."""

from __future__ import annotations

import numpy as np
import pytest

from otel_leakproc.processor.history import (
    FLOAT32,
    LEVELS,
    Grid,
    by_id_with_moves,
    codes_of_widths,
    naming_order,
    naming_positions,
    values_by_width,
)


def test_levels_keep_whole_numbers_below_2_15_exactly_and_larger_values_within_0_034_percent() -> None:
    whole = np.arange(0, 32768, dtype=np.float64)
    assert (LEVELS.decode(LEVELS.encode(whole)) == whole).all()
    rng = np.random.default_rng(5)
    large = rng.uniform(32768, 2.0**46, 50_000)
    error = np.abs(LEVELS.decode(LEVELS.encode(large)) / large - 1)
    assert error.max() < 0.5 * (2 ** (1 / 1024) - 1) + 1e-12  # half a step: 0.034%
    codes = np.arange(65535, dtype=np.uint16)
    assert (LEVELS.encode(LEVELS.decode(codes)) == codes).all()  # a code read back is written back as itself
    # 0xFFFF is no value (`absent`): read as 0, never written for a value.
    assert LEVELS.decode(np.array([0xFFFF], dtype=np.uint16)).tolist() == [0.0]
    assert LEVELS.present(np.array([0, 0xFFFE, 0xFFFF], dtype=np.uint16)).tolist() == [True, True, False]


def test_levels_store_negative_and_nan_as_zero_and_clamp_past_2_47() -> None:
    codes = LEVELS.encode([-3.0, float("nan"), 0.4, 2.0**50, float("inf")])
    assert codes.tolist() == [0, 0, 0, 65534, 65534]
    assert LEVELS.decode(codes)[3] == pytest.approx(2.0**47, rel=2e-3)  # (two steps below: 0xFFFF is absent)


def test_a_levels_grid_reads_back_float64_and_a_float32_grid_as_before() -> None:
    for scale, kept in ((LEVELS, [12.0, 1_000_000.0]), (FLOAT32, [12.0, 1_000_000.0])):
        grid = Grid(4, scale=scale)
        grid.append([("a", 12.0), ("b", 1_000_000.0)])
        matrix = grid.matrix(["a", "b"])
        assert matrix.dtype == np.float64
        assert matrix[0, 0] == kept[0]
        assert matrix[1, 0] == pytest.approx(kept[1], rel=3.4e-4)
    assert Grid(4, scale=LEVELS).values.dtype == np.uint16


def _random_points(rng: np.random.Generator, codes_dtype: type[np.generic], value_order: bool) -> tuple:
    lengths = rng.integers(0, 9, rng.integers(0, 12)).astype(np.int32)
    ids, codes = [], []
    for width in lengths.tolist():
        point_ids = rng.permutation(20)[:width].astype(np.int8)
        point_codes = rng.integers(0, 4, width).astype(codes_dtype)  # many ties
        if value_order:  # as profiles name sites: largest first, ties by id
            order = np.lexsort((point_ids, -point_codes.astype(np.float64)))
            point_ids, point_codes = point_ids[order], point_codes[order]
        ids.append(point_ids)
        codes.append(point_codes)
    empty = (np.zeros(0, dtype=np.int8), np.zeros(0, dtype=codes_dtype))
    return lengths, *(np.concatenate(parts) if parts else e for parts, e in zip((ids, codes), empty, strict=True))


@pytest.mark.parametrize("codes_dtype", [np.uint16, np.float32])
def test_values_by_id_with_moves_give_the_naming_order_back(codes_dtype: type[np.generic]) -> None:
    rng = np.random.default_rng(11)
    for trial in range(200):
        value_order = trial % 2 == 0
        lengths, ids, codes = _random_points(rng, codes_dtype, value_order)
        by_id, by_id_codes, moves = by_id_with_moves(lengths, ids, codes)
        starts = np.cumsum(lengths) - lengths
        for start, width in zip(starts.tolist(), lengths.tolist(), strict=True):
            assert (np.diff(by_id[start : start + width].astype(int)) > 0).all()  # each point's ids ascending
        if value_order:
            assert not moves.any()  # nothing to store but the values
        back_ids, back_codes = naming_order(lengths, by_id, by_id_codes, moves)
        assert back_ids.tolist() == ids.tolist()
        assert back_codes.tobytes() == codes.tobytes()


def test_moves_that_make_no_naming_order_are_refused() -> None:
    lengths = np.array([3], dtype=np.int32)
    ids = np.array([0, 1, 2], dtype=np.int8)
    codes = np.array([5, 4, 3], dtype=np.uint16)
    with pytest.raises(ValueError, match="outside its point"):
        naming_order(lengths, ids, codes, np.array([0, 0, 1], dtype=np.int8))
    with pytest.raises(ValueError, match="two values at one position"):
        naming_order(lengths, ids, codes, np.array([1, 0, 0], dtype=np.int8))
    with pytest.raises(ValueError, match="do not match"):
        naming_order(lengths, ids, codes, np.array([0, 0], dtype=np.int8))


def test_a_grid_restores_values_given_by_id_with_their_positions_and_refuses_two_at_one_position() -> None:
    grid = Grid(4, scale=LEVELS)
    grid.append([("b", 7.0), ("a", 9.0)])  # named out of value order: b (smaller) first
    grid.append([("b", 5.0), ("a", 3.0)])  # in value order
    names, lengths, ids, codes, moves = grid.export_by_id(lambda name: ord(name) - ord("a"))
    assert names == [0, 1]
    assert ids.tolist() == [0, 1, 0, 1]  # by id within each point
    assert moves.tolist() == [1, -1, 0, 0]  # a named 1 place later than its value rank, b 1 earlier
    again = Grid(4, scale=LEVELS)
    again.restore(["a", "b"], lengths, ids, codes, naming_positions(lengths, ids, codes, moves))
    assert again.first_items() == grid.first_items() == [("b", 7.0), ("a", 9.0)]
    assert again.matrix(["a", "b"]).tolist() == grid.matrix(["a", "b"]).tolist()
    with pytest.raises(ValueError, match="two values at one position"):
        Grid(4, scale=LEVELS).restore(["a", "b"], lengths, ids, codes, np.zeros(4, dtype=np.intp))


@pytest.mark.parametrize("dtype", [np.uint16, np.int16])
def test_codes_by_width_give_every_code_back_and_store_a_constant_name_as_its_floor_alone(dtype: type) -> None:
    """State version 8: each name's floor, its width, and the differences grouped by width."""
    rng = np.random.default_rng(5)
    lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
    ids = np.tile(np.arange(6, dtype=np.int8), 50)
    spread = np.array([0, 1, 3, 200, 300, hi - lo])[ids]  # widths 0, 1, 2, 8, 9, 16
    codes = (lo + (rng.integers(0, 2**62, len(ids)) % (spread + 1))).astype(dtype)
    codes[ids == 0] = 7  # a name that never changes: width 0, no differences stored
    floor, widths, groups = values_by_width(ids, codes, 7)  # name 6: named by no value
    assert widths.tolist() == [0, 1, 2, 8, 9, 16, 0]
    assert floor.dtype == np.dtype(dtype)
    assert floor[0] == 7
    assert floor[6] == 0
    assert sorted(groups) == [1, 2, 8, 9, 16]
    assert groups[8].dtype == np.uint8
    assert groups[9].dtype == np.uint16
    back = codes_of_widths(ids, floor, widths, groups)
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, codes)
    dense = values_by_width(ids, codes, 6)  # every point names every name: the table's path, same layout
    assert {w: g.tolist() for w, g in dense[2].items()} == {w: g.tolist() for w, g in groups.items()}
    np.testing.assert_array_equal(codes_of_widths(ids, *dense), codes)
    with pytest.raises(ValueError, match="differences of width 2"):
        codes_of_widths(ids, dense[0], dense[1], {**dense[2], 2: dense[2][2][:-1]})
    empty = values_by_width(ids[:0], codes[:0], 0)
    assert codes_of_widths(ids[:0], *empty).tolist() == []
    with pytest.raises(ValueError, match="groups of widths"):
        codes_of_widths(ids, floor, widths, {w: g for w, g in groups.items() if w != 2})
    with pytest.raises(ValueError, match="differences of width 1"):
        codes_of_widths(ids, floor, widths, {**groups, 1: groups[1] + 1})
    with pytest.raises(ValueError, match="do not match"):
        codes_of_widths(ids, floor[:5], widths[:5], groups)
