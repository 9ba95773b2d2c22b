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

# lengths (None: no presence), ids and codes (None: no values) as above; codes int16, uint16 or int32, or floats
# (the presence alone). NotImplemented for arrays it does not read (and int32 codes a name spans more than 16
# bits of): the numpy forms'. Gives (the presence bitmap or None, floors in the codes' type, widths, {"width":
# differences, uint8 up to 8 bits, else native uint16}); the last three None without integer codes.
def grid_values(
    lengths: NDArray[Any] | None, ids: NDArray[Any], codes: NDArray[Any] | None, names: int, /
) -> tuple[bytearray | None, bytearray | None, bytearray | None, dict[str, bytearray] | None] | NotImplementedType: ...

# lengths: native integers; present: a contiguous bitmap; size: the ids' bytes (signed), 1, 2, 4 or 8.
def presence_ids(
    lengths: NDArray[Any], present: NDArray[Any], names: int, size: int, /
) -> bytearray | NotImplementedType: ...
