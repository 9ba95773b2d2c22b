"""Types of the C extension `_wire` (`_wire.c`): a bounded reader of protobuf wire data."""

from typing import Any

from numpy.typing import NDArray
from typing_extensions import Buffer

# Any contiguous buffer: bytes, bytearray, memoryview, a C-contiguous numpy array (spans: int64 pairs).
_Bytes = Buffer | NDArray[Any]

class WireError(ValueError): ...

def index(data: _Bytes, start: int, end: int, numbers: tuple[int, ...], /) -> tuple[bytearray, ...]: ...
def repeated_varints(
    data: _Bytes, spans: _Bytes, numbers: tuple[int, ...], messages: tuple[int, ...], /
) -> tuple[tuple[bytearray, bytearray], ...]: ...
def table(data: _Bytes, spans: _Bytes, width: int, nested: int, /) -> tuple[bytearray, bytearray]: ...
