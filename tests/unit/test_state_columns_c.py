"""The C loops of the column block (`otel_leakproc.state._columns`) against their numpy forms in codec.py
(`stored_bytes`, `whole_ints`, `unstored_array`, `summed_deltas`): the same bytes for arrays of every column
dtype and of every length around the thresholds (4 for differences, 64 for shuffling), with the values
that are hard to get right (NaN, infinities, -0.0, 2**53, int64 wrap-around), in any layout; and each
input the C refuses, refused with a ValueError naming what was wrong."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from otel_leakproc.state import _columns
from otel_leakproc.state.codec import (
    COLUMN_DTYPES,
    CodecError,
    Columns,
    stored_bytes,
    summed_deltas,
    unstored_array,
    whole_ints,
)
from otel_leakproc.state.records import checkpoint_state

sys.path.insert(0, str(Path(__file__).parents[1] / "testdata" / "state"))
from make_checkpoint_columns import FIXTURE, with_index

PLAIN, DIFFERENCES = 0, 1
LENGTHS = range(201)
SPECIAL_FLOATS = [
    np.nan,
    np.inf,
    -np.inf,
    -0.0,
    0.0,
    0.5,
    -1.5,
    5e-324,
    1e300,
    2.0**53,
    2.0**53 - 1,
    -(2.0**53),
    -(2.0**53) + 1,
    2.0**52 + 0.5,
    2.0**63,
    -(2.0**63),
]
WRAPPING = [2**63 - 1, -(2**63), 0, -1, 2**63 - 1, 1, -(2**63)]


def _random(dtype: str, n: int, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    """`n` values of `dtype`: whole numbers (a clock, counts) or anything, with the odd special value."""
    kind = rng.integers(3)
    if dtype[1] == "f":
        if kind == 0:  # whole numbers, as the history's clocks and totals are
            values = np.cumsum(rng.integers(-1000, 100_000, n)).astype(np.float64)
        elif kind == 1:
            values = rng.standard_normal(n) * 10.0 ** float(rng.integers(0, 300))
        else:
            values = rng.integers(-(2**53), 2**53, n, endpoint=True).astype(np.float64)
        if n and rng.integers(3) == 0:
            values[rng.integers(n)] = SPECIAL_FLOATS[rng.integers(len(SPECIAL_FLOATS))]
        with np.errstate(over="ignore"):  # past float32's range: inf
            return values.astype(dtype)
    info = np.iinfo(np.dtype(dtype))
    if kind == 0:
        values = rng.integers(info.min, info.max, n, endpoint=True, dtype=np.int64 if info.min < 0 else np.uint64)
    else:
        values = np.cumsum(rng.integers(0, 50, n)) + int(rng.integers(0, 100))
    array = values.astype(dtype)
    if dtype == "<i8" and n and kind == 2:
        array[: min(n, len(WRAPPING))] = WRAPPING[: min(n, len(WRAPPING))]
    return array


def _whole_reference(array: np.ndarray[Any, Any]) -> bytes | None:
    """`pack_column(array, DIFFERENCES)` as the numpy forms give it (an empty array is whole)."""
    if not len(array):
        return b""
    ints = whole_ints(array)
    return None if ints is None else stored_bytes(ints, delta=True)


@pytest.mark.parametrize("dtype", COLUMN_DTYPES)
def test_the_c_stores_every_array_as_the_numpy_forms_do_and_reads_it_back(dtype: str) -> None:
    rng = np.random.default_rng(COLUMN_DTYPES.index(dtype))
    item = np.dtype(dtype).itemsize
    for n in LENGTHS:
        for _ in range(3):
            array = _random(dtype, n, rng)
            stored = _columns.pack_column(array, PLAIN)
            assert stored == stored_bytes(array), (dtype, n)
            back = _columns.unpack_column(stored, 0, n, item)
            assert isinstance(back, bytearray)
            assert back == array.tobytes() == unstored_array(stored, np.dtype(dtype), n, 0).tobytes(), (dtype, n)
            if dtype == "<i8":
                stored = _columns.pack_column(array, DIFFERENCES)
                assert stored == stored_bytes(array, delta=True), n
                assert _columns.unpack_deltas(stored, [(n, 0)]) == array.tobytes(), n
            if dtype == "<f8":
                whole = _columns.pack_column(array, DIFFERENCES)
                assert whole == _whole_reference(array), (n, array)
                if whole is not None:
                    assert _columns.unpack_deltas(whole, [(n, 0, True)]) == array.tobytes(), n


def test_whole_float64_values_are_told_from_the_rest_as_the_numpy_form_tells_them() -> None:
    clock = np.arange(8, dtype=np.float64) * 30 + 1_790_000_000
    for special in SPECIAL_FLOATS:
        for n in (1, 8, 70):
            for at in {0, n // 2, n - 1}:
                array = np.resize(clock, n)
                array[at] = special
                whole = _columns.pack_column(array, DIFFERENCES)
                assert whole == _whole_reference(array), (special, n, at)
                is_whole = abs(special) < 2.0**53 and special == int(special) and str(special) != "-0.0"
                assert (whole is not None) == is_whole, (special, n, at)


def test_int64_differences_wrap_around_both_ways() -> None:
    for n in (4, 7, 64, 100):
        array = np.resize(np.array(WRAPPING, dtype=np.int64), n)
        stored = _columns.pack_column(array, DIFFERENCES)
        assert stored == stored_bytes(array, delta=True)
        assert np.frombuffer(_columns.unpack_deltas(stored, [(n, 0)]), np.int64).tolist() == array.tolist()


@pytest.mark.parametrize("dtype", COLUMN_DTYPES)
def test_arrays_not_contiguous_and_of_the_other_byte_order_are_stored_alike(dtype: str) -> None:
    rng = np.random.default_rng(10 + COLUMN_DTYPES.index(dtype))
    for n in (0, 3, 4, 63, 64, 65, 130):
        array = _random(dtype, n, rng)
        wide = np.repeat(array, 3)
        for layout in (wide[::3], np.ascontiguousarray(array[::-1])[::-1], wide[::-3][::-1]):
            assert layout.tobytes() == array.tobytes()
            assert _columns.pack_column(layout, PLAIN) == stored_bytes(array)
            if dtype == "<i8":
                assert _columns.pack_column(layout, DIFFERENCES) == stored_bytes(array, delta=True)
            if dtype == "<f8":
                assert _columns.pack_column(layout, DIFFERENCES) == _whole_reference(array)
        if dtype[0] == "<":  # the other byte order: `Columns` turns it into the machine's, the C refuses it
            swapped = array.astype(dtype.replace("<", ">"))
            with pytest.raises(ValueError, match="byte order"):
                _columns.pack_column(swapped, PLAIN)
            block, other = Columns(), Columns()
            block.add(array)
            other.add(swapped)
            if dtype in ("<i8", "<f8") and n >= 4:
                assert block.add_differences(array) == other.add_differences(swapped)
            assert other.parts == block.parts


def test_a_column_block_reads_back_what_it_stored_as_the_numpy_forms_do() -> None:
    rng = np.random.default_rng(20)
    arrays = [_random(dtype, n, rng) for dtype in COLUMN_DTYPES for n in (0, 2, 4, 50, 64, 65, 180)]
    deltas = [_random("<i8", n, rng) for n in (0, 4, 9, 64, 200)]
    wholes = [np.cumsum(rng.integers(0, 1000, n)).astype(np.float64) for n in (4, 63, 64, 150)]
    block = Columns()
    offsets = [block.add(a) for a in arrays]
    delta_offsets = [block.add(a, delta=True) for a in deltas]
    whole_offsets = []
    for a in wholes:
        at = block.size
        assert block.add_differences(a)
        whole_offsets.append(at)
    assert not block.add_differences(np.array([1.0, 2.5, 3.0, 4.0]))  # not whole: nothing added
    data = b"".join(block.parts)  # no keys: the parts as they came
    back = Columns.unpack(block.pack())
    assert back.block() == data
    for array, at in zip(arrays, offsets, strict=True):
        got = back.get(array.dtype.str, len(array), at)
        assert got.dtype == array.dtype
        assert got.tobytes() == array.tobytes() == unstored_array(data, array.dtype, len(array), at).tobytes()
    spans = [(len(a), at) for a, at in zip(deltas, delta_offsets, strict=True)]
    spans += [(len(a), at, True) for a, at in zip(wholes, whole_offsets, strict=True)]
    together = back.get_deltas(spans)
    reference = summed_deltas(data, spans)
    for array, got, ref in zip(deltas + wholes, together, reference, strict=True):
        assert got.dtype == ref.dtype == array.dtype
        assert got.tobytes() == ref.tobytes() == array.tobytes()
    for array, at in zip(deltas, delta_offsets, strict=True):
        assert back.get("<i8", len(array), at, delta=True).tobytes() == array.tobytes()


@pytest.mark.parametrize("dtype", COLUMN_DTYPES)
def test_add_plain_stores_what_add_stores(dtype: str) -> None:
    rng = np.random.default_rng(7)
    for n in (0, 3, 63, 64, 200):
        array = rng.integers(-100, 100, n).astype(dtype)
        for layout in (array, array[::2], array.astype(np.dtype(dtype).newbyteorder(">"))):
            plain, fast = Columns(), Columns()
            plain.add(layout, key="k")
            fast.add_plain(layout, layout.dtype.itemsize, "k")
            assert (fast.parts, fast.planes, fast.keys, fast.size) == (
                plain.parts,
                plain.planes,
                plain.keys,
                plain.size,
            )


class _Name(str):
    """A str subclass: not a plain string list item (the encoder leaves such a list in the JSON)."""


def _joined(strings: list[Any]) -> bytes | None:
    """`join_strings`' Python form: the check and the join `_take_arrays` did before it."""
    if not all(type(s) is str for s in strings):
        return None
    text = "\0".join(strings)
    return text.encode() if text.count("\0") == max(len(strings) - 1, 0) else None


@pytest.mark.parametrize(
    "strings",
    [
        [],
        [""],
        ["a", "", "bc", ""],
        [f"pkg/file{i}.go" for i in range(70)],
        ["runtime.malg", "ünïcode", "日本"],  # not ASCII: joined as Python does
        ["a", "b\0c"],  # a NUL: None
        ["ü", "b\0c"],
        ["a", None, "b"],  # not all strings: None
        ["ü", 3],
        ["a", _Name("b")],
        [_Name("b"), "ü"],
    ],
)
def test_a_list_of_strings_is_joined_as_python_joins_it(strings: list[Any]) -> None:
    assert _columns.join_strings(strings) == _joined(strings)


def test_a_string_list_that_cannot_be_utf8_raises_as_encode_does() -> None:
    with pytest.raises(UnicodeEncodeError):
        _columns.join_strings(["a", "\udc80"])
    with pytest.raises(TypeError, match="a list"):
        _columns.join_strings(("a", "b"))  # type: ignore[arg-type]


def test_what_the_c_refuses_it_refuses_naming_what_was_wrong() -> None:
    ints = np.arange(10, dtype=np.int64)
    with pytest.raises(ValueError, match="2 dimensions"):
        _columns.pack_column(ints.reshape(2, 5), PLAIN)
    with pytest.raises(ValueError, match="mode 2"):
        _columns.pack_column(ints, 2)
    with pytest.raises(ValueError, match="int64 differences of an array of format 'i'"):
        _columns.pack_column(ints.astype(np.int32), DIFFERENCES)
    with pytest.raises(ValueError, match="int64 differences of an array of format 'f'"):
        _columns.pack_column(ints.astype(np.float32), DIFFERENCES)
    with pytest.raises(ValueError, match="byte order"):
        _columns.pack_column(ints.astype(">i8"), DIFFERENCES)
    with pytest.raises(TypeError, match="an array and a mode"):
        _columns.pack_column(ints)  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        _columns.pack_column([1, 2, 3], PLAIN)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="delta coding of a <i4"):
        Columns().add(ints.astype(np.int32), delta=True)
    block = bytes(80)
    assert _columns.unpack_column(block, 80, 0, 8) == b""
    assert len(_columns.unpack_column(block, 0, 40, 2)) == 80
    for args, message in [
        ((81, 0, 1), "length 0, offset 81 of 1-byte items is past the block's 80 bytes"),
        ((0, 41, 2), "length 41, offset 0 of 2-byte items is past the block's 80 bytes"),
        ((4, 39, 2), "length 39, offset 4"),
        ((0, 2**61, 8), "past the block"),
        ((0, -1, 8), "length -1"),
        ((-1, 1, 8), "offset -1"),
        ((0, 1, 0), "item size 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            _columns.unpack_column(block, *args)
    assert _columns.unpack_deltas(block, [(10, 0), (0, 80)]) == bytes(80)
    for spans, message in [
        ([(11, 0)], "length 11, offset 0 of 8-byte items is past the block's 80 bytes"),
        ([(1, 0), (1, 73)], "length 1, offset 73"),
        ([(1, -8)], "offset -8"),
        ([(-1, 0)], "length -1"),
        ([(1, 0), (1,)], "span 1 is not a"),
        ([(1, 0, True, 0)], "span 0 is not a"),
        ([[1, 0]], "span 0 is not a"),
        ([(1.0, 0)], "span 0 is not a"),
        ([(1, 0, "yes")], "span 0 is not a"),
        ([(2**70, 0)], "span 0 holds an int past"),
    ]:
        with pytest.raises(ValueError, match=message):
            _columns.unpack_deltas(block, spans)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="spans must be a sequence"):
        _columns.unpack_deltas(block, 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="past the block"):
        Columns(block).get("<u2", 64, 1)
    with pytest.raises(ValueError, match="offset 80"):
        Columns(block).get_deltas([(1, 80)])


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["deep", "a", "b", "c"], 10**9, "column at 71785 of 1000000000 x 4 bytes is past the block's 79285"),
        # The float64 differences that end the block (10 of them): read by the C, with every other array.
        (["early", "whole", "clock64"], 11, "length 11, offset 79205 of 8-byte items is past the block's 79285"),
        (["early", "whole", "clock64"], -5, "length -5"),
        (["early", "whole", "clock64"], 2**70, "holds an int past the block"),
    ],
)
def test_a_checkpoint_whose_column_is_past_its_block_is_refused_with_the_reason(
    path: list[str], value: int, message: str
) -> None:
    payload = FIXTURE.read_bytes()

    def change(index: list[list[Any]]) -> list[list[Any]]:
        (entry,) = [e for e in index if e[0] == path]
        entry[2] = value
        return index

    with pytest.raises(CodecError, match=message):
        checkpoint_state(with_index(payload, change))
