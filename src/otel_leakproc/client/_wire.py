"""A minimal protobuf writer: just what pprof `Profile` and Pyroscope `PushRequest` need.

The client encodes by hand instead of depending on `protobuf`: the service's generated modules need a
recent protobuf runtime (>= 7.35), and a client that forces that version onto every Python service it is
added to would conflict with their own pins. Four wire forms are enough here: varints, packed varints,
length-delimited bytes/strings and embedded messages.
"""

from __future__ import annotations

from collections.abc import Iterable

_WIRE_VARINT = 0
_WIRE_LEN = 2


_ONE_BYTE = [bytes((i,)) for i in range(128)]


def varint(value: int) -> bytes:
    """Base-128 varint; negative numbers as 64-bit two's complement (proto `int64`)."""
    if 0 <= value < 128:
        return _ONE_BYTE[value]
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return varint((field << 3) | wire)


def uint_field(field: int, value: int) -> bytes:
    """A varint field; zero is the proto3 default and is left out."""
    if not value:
        return b""
    return _key(field, _WIRE_VARINT) + varint(value)


def bytes_field(field: int, value: bytes) -> bytes:
    """A length-delimited field (bytes, string or an encoded message); always written."""
    return _key(field, _WIRE_LEN) + varint(len(value)) + value


def string_field(field: int, value: str) -> bytes:
    """A string field; the empty string is the proto3 default and is left out."""
    if not value:
        return b""
    return bytes_field(field, value.encode("utf-8", "replace"))


def packed_field(field: int, values: Iterable[int]) -> bytes:
    """A packed repeated varint field (`repeated uint64/int64`); empty lists are left out."""
    body = b"".join(varint(v) for v in values)
    if not body:
        return b""
    return bytes_field(field, body)
