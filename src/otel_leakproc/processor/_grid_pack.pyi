"""Types of the C extension `_grid_pack` (`_grid_pack.c`): the loops of state version 8's grid packing."""

from types import NotImplementedType
from typing import Any

from numpy.typing import NDArray

# lengths, ids, keys and whole: C-contiguous arrays of native integers, read in their own dtype (signed of 8
# to 64 bits, unsigned of 8 to 32); whole: the points kept whole; ties/tied: uint8 (packed 2-bit fields).
def tied_of_ties(
    lengths: NDArray[Any], ids: NDArray[Any], keys: NDArray[Any], ties: NDArray[Any], whole: NDArray[Any], /
) -> bytearray | NotImplementedType | None: ...
def ties_of_tied(
    lengths: NDArray[Any], ids: NDArray[Any], keys: NDArray[Any], tied: NDArray[Any], whole: NDArray[Any], /
) -> bytearray | NotImplementedType: ...

# codes: int16, uint16 or int32; the floors come back in the codes' type.
def width_groups(codes: NDArray[Any], names: int, /) -> tuple[bytearray, bytearray, dict[int, bytearray]]: ...
