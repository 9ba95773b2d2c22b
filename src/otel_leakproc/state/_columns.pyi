"""Types of the C extension `_columns` (`_columns.c`): the loops of the checkpoint's column block."""

from collections.abc import Sequence
from typing import Any, Literal, overload

from numpy.typing import NDArray

# array: 1-D, any strides, in the machine's byte order. mode 0: the values as they are; 1: an int64 array's
# differences, a float64 array's values as int64 differences when they are whole numbers, else None.
@overload
def pack_column(array: NDArray[Any], mode: Literal[0], /) -> bytes: ...
@overload
def pack_column(array: NDArray[Any], mode: int, /) -> bytes | None: ...
def unpack_column(block: bytes | bytearray | memoryview, offset: int, n: int, itemsize: int, /) -> bytearray: ...

# spans: (length, offset) or (length, offset, as float64) of each array of int64 differences.
def unpack_deltas(
    block: bytes | bytearray | memoryview, spans: Sequence[tuple[int, int] | tuple[int, int, bool]], /
) -> bytearray: ...

# strings: `"\0".join(strings).encode()` when every item is a str holding no NUL, else None.
def join_strings(strings: list[Any], /) -> bytes | None: ...

# records.py `_take_arrays_py` in C: (value's copy, bytes added to the block). lists: the plans, the plan maker,
# numpy.ndarray, a Columns' parts, planes, keys and coded, the index, _huffman.encode, numpy.ascontiguousarray,
# and the dtype name of a string list.
def take_arrays(
    value: dict[str, Any], path: tuple[str, ...], lists: tuple[Any, ...], /
) -> tuple[dict[str, Any], int]: ...
