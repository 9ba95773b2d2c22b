"""Types of the C extension `_grid_pack` (`_grid_pack.c`): the loops of state version 8's grid packing."""

from typing import Any

from numpy.typing import NDArray

# lengths, ids, keys and table: C-contiguous int64 arrays; fields and whole: uint8 (whole: a flag per point).
def value_table(lengths: NDArray[Any], ids: NDArray[Any], keys: NDArray[Any], /) -> tuple[bytearray, int] | None: ...
def tied_of_ties(
    lengths: NDArray[Any], table: NDArray[Any], width: int, ties: NDArray[Any], whole: NDArray[Any], /
) -> bytearray | None: ...
def ties_of_tied(
    lengths: NDArray[Any], table: NDArray[Any], width: int, tied: NDArray[Any], whole: NDArray[Any], /
) -> bytearray: ...
def width_groups(codes: NDArray[Any], names: int, /) -> tuple[bytearray, bytearray, dict[int, bytearray]]: ...
