"""The checkpoint encoder writes the bytes the release before wrote (committed payloads of made-up states
with every column dtype and length class, and a grid's value planes of every width, tests/testdata/state/
make_checkpoint_columns.py), and reads them back as they were; the column block's batched and fast paths
give what its general ones give."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from otel_leakproc.model import ProfileKind, SeriesKey
from otel_leakproc.state.codec import Columns, encode_value, whole_ints
from otel_leakproc.state.records import (
    CodecError,
    _checkpoint_head,
    _layout_offsets,
    _take_arrays,
    _take_arrays_py,
    checkpoint_payload,
    checkpoint_state,
    decode_index,
    index_json,
    key_to_plain,
)

sys.path.insert(0, str(Path(__file__).parents[1] / "testdata" / "state"))
from make_checkpoint_columns import (
    FIXTURE,
    FIXTURE_CB5,
    KEY,
    RESOURCE,
    SEQ,
    coded_state,
    column_state,
    with_index,
)


def _same(expected: Any, got: Any, path: str = "$") -> None:
    """Equal, arrays bit for bit and of the same dtype, dicts in the same order."""
    if isinstance(expected, np.ndarray):
        assert isinstance(got, np.ndarray), path
        assert got.dtype == expected.dtype, path
        assert got.tobytes() == expected.tobytes(), path
    elif isinstance(expected, dict):
        assert isinstance(got, dict), path
        assert list(got) == list(expected), path
        for k, v in expected.items():
            _same(v, got[k], f"{path}.{k}")
    else:
        assert type(got) is type(expected), path
        assert got == expected, path


def test_a_checkpoint_is_written_byte_for_byte_as_the_release_before_wrote_it() -> None:
    assert checkpoint_payload(SEQ, KEY, RESOURCE, coded_state()) == FIXTURE_CB5.read_bytes()


def test_a_state_without_value_planes_is_written_as_cb4_wrote_it_but_for_the_magic_and_block_length() -> None:
    old = FIXTURE.read_bytes()
    (n,) = struct.unpack_from("<I", old, 4)
    (m,) = struct.unpack_from("<I", old, 8 + n)
    block_at = 12 + n + m  # CB4: the column block runs to the end
    expected = b"\xffCB5" + old[4:block_at] + struct.pack("<I", len(old) - block_at) + old[block_at:]
    assert old[:4] == b"\xffCB4"
    assert checkpoint_payload(SEQ, KEY, RESOURCE, column_state()) == expected


def test_the_committed_cb5_checkpoint_reads_back_its_value_planes_huffman_coded() -> None:
    payload = FIXTURE_CB5.read_bytes()
    expected = coded_state()
    expected["report"] = expected.pop("report")
    _same(expected, checkpoint_state(payload))
    coded = [entry for entry in decode_index(payload) if len(entry) == 4 and entry[3] == 2]
    # Every non-empty uint8 plane of both grids, and nothing else (the uint16 plane stays in the block).
    assert sorted(tuple(entry[0]) for entry in coded) == sorted(
        [(*grid, "values", str(w)) for grid in (("sites",), ("early", "sites")) for w in (1, 3, 4, 5, 6, 7, 8)]
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p + b"\0", "bytes of coded planes, of which the index reads"),
        (lambda p: p[:-1], "huffman"),
    ],
)
def test_coded_planes_that_do_not_add_up_are_refused(change: Any, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        checkpoint_state(change(FIXTURE_CB5.read_bytes()))


def test_the_committed_checkpoint_reads_back_the_state_it_was_written_from() -> None:
    state = checkpoint_state(FIXTURE.read_bytes())
    expected = column_state()
    expected["report"] = expected.pop("report")  # kept in the head: read back last
    _same(expected, state)
    # What the detector may write into: the arrays that are copies (shuffled or summed) are writable.
    assert state["whole"]["clock300"].flags.writeable
    assert state["columns"]["<i8"]["200"].flags.writeable


def test_whole_float64_arrays_are_told_from_the_rest() -> None:
    assert whole_ints(np.array([1.0, -2.0, 0.0, 2.0**53 - 1])) is not None
    for bad in ([1.0, 0.5], [1.0, np.nan], [1.0, np.inf], [1.0, -0.0], [2.0**53, 1.0], [-(2.0**53), 1.0]):
        assert whole_ints(np.array(bad)) is None, bad
    ints = whole_ints(np.arange(10, dtype=np.float64)[::2])  # not contiguous
    assert ints is not None
    assert ints.tolist() == [0, 2, 4, 6, 8]


def test_a_column_block_takes_arrays_in_any_byte_order_and_layout_as_the_same_bytes() -> None:
    values = np.arange(-150, 150, dtype=np.int64) * 1_000_003
    for n in (3, 70):  # stored as they are, and shuffled
        little = np.ascontiguousarray(values[:n])
        block = Columns()
        block.add(little.astype("<i4"))
        block.add(little, delta=True)
        other = Columns()
        other.add(little.astype(">i4"))  # big-endian
        other.add(little.astype(">i8"), delta=True)
        assert other.parts == block.parts
        strided = Columns()
        wide = np.repeat(little, 2)
        strided.add(wide[::2].astype("<i4"))
        strided.add(wide[::2], delta=True)  # not contiguous
        assert strided.parts == block.parts
        back = Columns.unpack(block.pack())
        assert back.get("<i4", n, 0).tolist() == little.tolist()
        assert back.get("<i8", n, 4 * n, delta=True).tolist() == little.tolist()


@pytest.mark.parametrize("lengths", [[], [0], [5], [70], [4, 0, 64, 300, 41, 1], [1100, 3]])
def test_int64_differences_read_together_are_those_read_one_by_one(lengths: list[int]) -> None:
    rng = np.random.default_rng(len(lengths))
    arrays = [rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64, endpoint=True) for n in lengths]
    if lengths:
        arrays[0][: min(4, lengths[0])] = [2**63 - 1, -(2**63), 0, -1][: min(4, lengths[0])]  # wrapping around
    block = Columns()
    offsets = [block.add(a, delta=True) for a in arrays]
    back = Columns.unpack(block.pack())
    together = back.get_deltas(list(zip(lengths, offsets, strict=True)))
    assert len(together) == len(arrays)
    for array, at, got in zip(arrays, offsets, together, strict=True):
        one = back.get("<i8", len(array), at, delta=True)
        assert got.dtype == one.dtype == np.dtype("<i8")
        assert got.tolist() == one.tolist() == array.tolist()
    with pytest.raises(ValueError, match="offset"):
        back.get_deltas([(10_000, 0)])
    with pytest.raises(ValueError, match="length -1"):
        back.get_deltas([(-1, 0)])


def test_strings_of_a_column_block_are_read_as_utf8_and_bounded() -> None:
    block = Columns()
    text = "état\0名前".encode()
    at = block.add_bytes(text)
    back = Columns.unpack(block.pack())
    assert back.text(at, len(text)) == "état\0名前"
    with pytest.raises(ValueError, match="past the block"):
        back.text(at, len(text) + 1)
    with pytest.raises(ValueError, match="without a column block"):
        Columns().text(0, 0)


def test_a_checkpoint_cut_short_is_refused() -> None:
    with pytest.raises(CodecError, match="column block"):
        checkpoint_state(FIXTURE.read_bytes()[:-40])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [(2, 10**9, "past the block"), (2, -1, "length -1"), (1, "<c16", "'<c16'"), (2, "7", "str")],
)
def test_a_column_index_entry_out_of_its_block_is_refused_with_the_reason(field: int, value: Any, message: str) -> None:
    payload = FIXTURE.read_bytes()
    assert checkpoint_state(with_index(payload, lambda index: index))["columns"]["|u1"]["200"].tolist()

    def change(index: list[list[Any]]) -> list[list[Any]]:
        (entry,) = [e for e in index if e[0] == ["columns", "|u1", "200"]]  # a plain (unshuffled) array
        entry[field] = value
        return index

    with pytest.raises(CodecError, match=message):
        checkpoint_state(with_index(payload, change))


def test_column_offsets_of_an_index_are_those_columns_layout_gives() -> None:
    index = decode_index(FIXTURE.read_bytes())
    parts: list[tuple[int, str | None]] = []
    for path, dtype, n, *extra in index:  # sizes and keys as the encoder gave them (`_take_arrays`)
        if dtype == "str":
            parts.append((extra[0], f"{path[-1]}/str"))
            continue
        stored = "<i8" if extra else dtype
        item = np.dtype(stored).itemsize
        parts.append((n * item, None if Columns.shuffled(item, n) else f"{path[-1]}/{stored}"))
    keys = [key for _, key in parts if key is not None]
    assert len(keys) > len(set(keys))  # arrays that share a key
    assert _layout_offsets(index) == Columns.layout(parts)


def test_arrays_of_every_spelling_of_a_column_dtype_are_taken_as_it() -> None:
    for spelling in ("<f8", "float64", "d", "<i8", "int64", "q", "l", "<i4", "i", "<u2", "H", "|i1", "b", "|u1", "B"):
        array = np.zeros(5, dtype=spelling)
        columns = Columns()
        index: list[str] = []
        _take_arrays({"a": array}, (), columns, index)
        assert json.loads(index_json(index))[0][:3] == [["a"], array.dtype.str, 5], spelling
    with pytest.raises(TypeError, match="dtype >i4"):
        _take_arrays({"a": np.zeros(5, dtype=">i4")}, (), Columns(), [])


def test_a_checkpoint_head_is_what_encode_value_writes_of_it() -> None:
    """The head's bytes kept by series (`_checkpoint_head`) are those of the whole dict, whatever the key and
    resource share with the names after them, for every seq (past int64: a string in the table) and twice
    (the second from the cache)."""
    cases: list[tuple[SeriesKey, dict[str, Any]]] = [
        (SeriesKey("t", "svc", "pod-1", ProfileKind.HEAP), {"service.name": "svc"}),
        (SeriesKey("report", "q", "k", ProfileKind.MUTEX), {"report": "q", "k": "r"}),
        (SeriesKey("a", "b", "c", ProfileKind.GOROUTINE), {}),
        (SeriesKey("a", "b", "c", ProfileKind.HEAP), {"x": ["not", "hashable"]}),
    ]
    for key, resource in cases:
        for seq in (0, 1, -5, 2**63 - 1, -(2**63), 2**63, 2**70):
            for report in (b"", bytes(range(256)) * 2):
                expected = encode_value({"q": seq, "k": key_to_plain(key), "r": resource, "report": report})
                assert _checkpoint_head(seq, key, resource, report) == expected
                assert _checkpoint_head(seq, key, resource, report) == expected


class _Later:
    """A part left for the encoder to finish (`resolve_state`), as the detector leaves its grids."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def resolve_state(self) -> Any:
        return self.value


class _Array(np.ndarray):  # type: ignore[type-arg]
    pass


def _taken(take: Any, value: dict[str, Any]) -> tuple[Any, ...]:
    columns = Columns()
    index: list[str] = []
    out = take(value, (), columns, index)
    return out, index, columns.parts, columns.planes, columns.keys, columns.size, columns.coded


def test_the_c_takes_a_states_arrays_as_the_python_form_does() -> None:
    """`_take_arrays` (the C walk, `_columns.take_arrays`) against `_take_arrays_py`: the same copy, index
    entries, parts and coded planes for the committed fixtures' states and for every kind of item."""
    rng = np.random.default_rng(4)
    odd: dict[str, Any] = {
        "plain": [1, 2.5, "s", True, None],
        "later": _Later(np.arange(70, dtype=np.int64)),
        "later dict": _Later({"values": {"3": np.full(9, 2, dtype=np.uint8)}}),
        "later list": _Later(["a"] * 9),
        "subclass": np.arange(5, dtype=np.int32).view(_Array),
        "strided": {"values": {"4": np.arange(40, dtype=np.uint8)[::2] % 16}},
        "empty plane": {"values": {"5": np.zeros(0, dtype=np.uint8)}},
        "not whole": np.array([0.5, 1.5, 2.5, 3.5, 4.5]),
        "whole": np.arange(100, dtype=np.float64) * 3,
        "strings": [f"name{i}" for i in range(9)],
        "unicode": ["ü"] * 9,
        "nul": ["a\0b"] * 9,
        "mixed": ["a"] * 8 + [1],
        "short": ["a"] * 7,
        "tuple": ("a",) * 9,
        "ü key": {"deep": {"er": rng.integers(0, 9, 300).astype(np.int16)}},
    }
    for state in (column_state(), coded_state(), odd):
        assert _taken(_take_arrays, state) == _taken(_take_arrays_py, state)


def test_the_c_refuses_what_the_python_form_refuses() -> None:
    for value, message in (
        ({"a": {"b": np.zeros((2, 3))}}, r"a\.b: an array of 2 dimensions, dtype <f8"),
        ({"a": np.zeros(3, dtype=">i4")}, "a: an array of dtype >i4"),
        ({"a": np.zeros(3, dtype=np.complex64)}, "a: an array of dtype <c8"),
    ):
        for take in (_take_arrays, _take_arrays_py):
            with pytest.raises(TypeError, match=message):
                take(value, (), Columns(), [])


def _entry_changed(path: list[str], change: Any) -> Any:
    def changed(index: list[list[Any]]) -> list[list[Any]]:
        (entry,) = [e for e in index if e[0] == path]
        change(entry)
        return index

    return changed


@pytest.mark.parametrize(
    ("path", "change", "message"),
    [
        (["strings", "names"], lambda e: e.pop(), "a string column without its size"),
        (["strings", "names"], lambda e: e.__setitem__(2, 71), "70 strings, not 71"),
        (["sites", "values", "4"], lambda e: e.__setitem__(1, "<i2"), "a coded plane of dtype <i2"),
        (["sites", "values", "4"], lambda e: e.append(0), "coding \\[2, 0\\] of a \\|u1 array"),
        (["columns", "<i4", "200"], lambda e: e.append(1), "coding \\[1\\] of a <i4 array"),
        (["columns", "<i8", "200"], lambda e: e.__setitem__(3, 3), "coding \\[3\\] of a <i8 array"),
        (["deep", "a", "b", "c"], lambda e: e.__setitem__(0, ["deep", "a", "x", "c"]), "'x'"),
        (["deep", "a", "b", "c"], lambda e: e.__setitem__(0, ["strings", "names", "c"]), "bad column index"),
        (["columns", "|u1", "200"], lambda e: e.__setitem__(0, "ab"), "bad column index"),
        (["columns", "|u1", "200"], lambda e: e.__setitem__(2, 2.5), "bad column index"),
        (["columns", "<i2", "200"], lambda e: e.__delitem__(2), "bad column index"),
    ],
)
def test_a_bad_entry_of_a_cb5_index_is_refused_with_the_reason(path: list[str], change: Any, message: str) -> None:
    payload = FIXTURE_CB5.read_bytes()
    with pytest.raises(CodecError, match=message):
        checkpoint_state(with_index(payload, _entry_changed(path, change)))
