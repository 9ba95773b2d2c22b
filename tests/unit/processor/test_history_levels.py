"""The grids' 16-bit levels (`history.LEVELS`) and the checkpoint layout of a grid (values by id, with moves)."""

from __future__ import annotations

import numpy as np
import pytest

from otel_leakproc.processor.history import FLOAT32, LEVELS, Grid, by_id_with_moves, naming_order, naming_positions


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
