"""A compact, versioned binary encoding of plain data, and the checksummed frame every stored record uses.

Values (`encode_value` / `decode_value`): dict, list, tuple (read back as list), str, bytes, int, float,
bool and None, nested. The encoding knows nothing about detectors, so new fields in `to_state()` need no
change here. What makes it compact:
- every string is written once per record and referenced by number afterwards (site names, file paths
  and dict keys repeat a lot within a series);
- a list of 4 or more ints, or of 4 or more floats, is written as a packed little-endian array (ints in
  the narrowest of int8/16/32/64 that holds them all; floats, bit for bit, as the narrowest of those ints
  when all are whole numbers (profile values are sums of int64 samples), else as float32 when that is
  exact, else as float64);
- a list of 4 or more strings is written as references to the strings written before (a packed int
  array) and one block of the new ones joined by NUL: decoding it is a split, not a step per string;
- a long string that is canonical base64 (the detector packs its history arrays so) is stored as its raw
  bytes and given back as the same string: a quarter smaller;
- ints are zigzag varints.

Frames (`frame` / `read_frames`): a 14-byte header, then the payload:
    magic b"LK" | codec version u8 | record type u8 | flags u8 | reserved u8 | payload length u32 | CRC32 u32
The CRC covers the header's first 10 bytes and the payload, so a torn or bit-flipped record is detected.
Flag bit 0: the payload is zlib-compressed. A reader refuses a codec version it does not know.

Column blocks (`Columns`): numpy arrays appended one after the other, each of 64 elements or more
byte-shuffled (byte k of every element together, so the exponent and high bytes of a column sit side by
side), deflated once; read back
with one inflate and an `np.frombuffer` view per array (no step per element), the int64 differences of
all the arrays stored so summed back in one pass (`get_deltas`). A checkpoint keeps the detector's
history so (records.py): some 50 arrays of a few hundred bytes each, so numpy's fixed cost per call would
be most of the time there: the C extension `_columns` stores an array in one call (the whole-number check,
the zigzag differences and the shuffle in one pass), un-shuffles one in one call and sums all the
differences in one; their numpy forms below (`stored_bytes`, `whole_ints`, `unstored_array`,
`summed_deltas`) are the reference its tests compare with, and the path of a machine that is not
little-endian.

Versions: 2 added the whole-number float arrays and the string lists; 3 the checkpoint layout with a
column block (records.py). Records of versions 1 and 2 are read by the same decoder (they use a subset of
the tags). Records are written as version 3.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import numpy as np
from isal import isal_zlib

from otel_leakproc.state import _columns

CODEC_VERSION = 3
READ_VERSIONS = (1, 2, 3)  # versions `read_frames` accepts (see the module docstring)
MAGIC = b"LK"
HEADER = struct.Struct("<2sBBBBII")  # magic, version, type, flags, reserved, length, crc
HEADER_SIZE = HEADER.size
_CRC_FROM = HEADER_SIZE - 4  # the CRC covers the header up to itself, then the payload
MAX_PAYLOAD = 64 << 20  # a length above this is a corrupt header, not a record
FLAG_ZLIB = 1
COMPRESS_ABOVE = 512  # payloads at least this large are deflated when it saves space
_ZLIB_LEVEL = 1
_ZLIB_LEVEL_COLUMNS = 1

# Value tags.
_NONE, _FALSE, _TRUE, _INT, _FLOAT, _STR, _STR_REF, _LIST, _DICT, _ARRAY, _BYTES, _B64, _BIGINT, _B64_BLOB = range(14)
_STR_LIST = 14  # version 2
COLUMN_DTYPES = ("<f8", "<f4", "<i8", "<i4", "<i2", "<u2", "|i1", "|u1")  # what a column block holds
_COLUMN_DTYPE = {d: np.dtype(d) for d in COLUMN_DTYPES}
_BLOCK_MIN = 1024  # byte planes of a column block this large are deflate blocks of their own (`Columns.pack`)
_SHUFFLE_MIN = 64  # shorter arrays are stored as they are: shuffling them saves nothing worth its time
_ARRAY_MIN = 4  # shorter numeric lists are cheaper as plain items
_SHORT_ARRAY = 64  # numeric lists up to this long are packed without numpy (same bytes, less overhead)
_B64_MIN = 64  # shorter strings are not worth the base64 check
# Codes 6-9 (version 2): whole-number floats stored as ints, read back as floats.
_DTYPES = ("<f8", "<i1", "<i2", "<i4", "<i8", "<f4", "<i1", "<i2", "<i4", "<i8")
_AS_FLOAT = 6  # first code of the ints-read-as-floats
_DTYPE_CODE = {d: i for i, d in enumerate(_DTYPES[:_AS_FLOAT])}
_WHOLE_LIMIT = float(1 << 53)  # whole floats below this in magnitude are exact as int64
_INT64 = 1 << 63
_DOUBLE = struct.Struct("<d")
# ISA-L's CRC-32 is zlib's (the same polynomial and values), 7x faster on a 16 KiB checkpoint: every record
# is checked when written and when read.
_crc32 = isal_zlib.crc32
_INT64_DTYPE = np.dtype("<i8")
_ONE = np.uint64(1)
_ZERO_ROW = np.zeros((1, 8), dtype=np.uint8)
_FOREIGN_ORDER = ">" if sys.byteorder == "little" else "<"  # how numpy marks a byte order not the machine's
_LITTLE_ENDIAN = sys.byteorder == "little"  # the C (`_columns`) takes arrays in the little-endian layout only
# `_columns.pack_column`'s modes: the values as they are; int64 differences (of a float64 array: of its values, whole).
_PLAIN: Final = 0
_DIFFERENCES: Final = 1


Span = tuple[int, int] | tuple[int, int, bool]  # an array of int64 differences: length, offset[, read as float64]

# What zlib's and ISA-L's inflate raise on a stream that is not deflate data.
INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, cast(type[Exception], isal_zlib.error))


class CodecError(ValueError):
    """Bytes that are not a valid record or value (corrupt, truncated, or of an unknown version)."""


class Columns:
    """A column block: the arrays of one encoded value, byte-shuffled, one after the other (arrays of one
    `key` together, see `layout`)."""

    __slots__ = ("_data", "coded", "keys", "parts", "planes", "size")

    def __init__(self, data: bytes | None = None) -> None:
        self.parts: list[bytes] = []  # the bytes of each array added (its byte planes one after the other)
        self.planes: list[int] = []  # the size of each part's byte planes (shuffled), or of the part
        self.keys: list[str | None] = []  # each part's key (None for a shuffled part: it stays where it is)
        self.size = 0
        self._data = data
        self.coded: list[bytes] = []  # planes a writer codes on its own, kept after the block (records.py)

    @staticmethod
    def shuffled(itemsize: int, n: int) -> bool:
        """Whether an array of `n` elements of `itemsize` bytes is stored byte-shuffled."""
        return itemsize > 1 and n >= _SHUFFLE_MIN

    @staticmethod
    def layout(parts: list[tuple[int, str | None]]) -> list[int]:
        """The offset of each part, given each one's (size, key), in the order they were added: a part comes
        after the one before it, except that the parts of one key come together, where the first of them
        was added (a writer gives arrays of alike values one key: they share a deflate block)."""
        by_key: dict[str, list[int]] = {}
        for i, (_, key) in enumerate(parts):
            if key is not None:
                by_key.setdefault(key, []).append(i)
        offsets = [0] * len(parts)
        at = 0
        for i, (_, key) in enumerate(parts):
            group = [i] if key is None else by_key.pop(key, [])
            for j in group:
                offsets[j] = at
                at += parts[j][0]
        return offsets

    def add(self, array: np.ndarray[Any, Any], *, delta: bool = False, key: str | None = None) -> int:
        """Append `array`'s bytes (shuffled); returns their offset as long as no part has a `key` (else
        see `layout`; a shuffled part's key is not used). `delta` (int64 arrays): stored as the first value
        and the differences after it, zigzag-coded (0, -1, 1, -2... as 0, 1, 2, 3...), which `get` sums back
        (a clock or a counter: its differences need a few of the 8 bytes)."""
        # A checkpoint adds some 50 arrays, most of a few hundred bytes: numpy's fixed cost per call would be
        # most of the time here, so the C does it in one call (`_columns`; `stored_bytes` is its numpy form).
        dtype = array.dtype
        if dtype.byteorder == _FOREIGN_ORDER:
            array = array.astype(dtype.newbyteorder("<"))
            dtype = array.dtype
        if delta and dtype != _INT64_DTYPE:
            raise ValueError(f"delta coding of a {dtype.str} array (only int64)")
        if _LITTLE_ENDIAN:
            data = _columns.pack_column(array, _DIFFERENCES if delta else _PLAIN)
        else:
            data = stored_bytes(array, delta=delta)
        assert data is not None  # (an int64 array's differences are always stored)
        at = self.size
        self._append(data, len(array) if dtype.itemsize > 1 else 0, key)
        return at

    def add_plain(self, array: np.ndarray[Any, Any], itemsize: int, key: str | None) -> None:
        """`add(array, key=key)` of a 1-D array of a column dtype of `itemsize` bytes (what a caller that
        checked them already calls: the same part, less to look up)."""
        if not _LITTLE_ENDIAN or array.dtype.byteorder == _FOREIGN_ORDER:
            self.add(array, key=key)
            return
        self._append(_columns.pack_column(array, _PLAIN), len(array) if itemsize > 1 else 0, key)

    def add_differences(self, array: np.ndarray[Any, Any], *, key: str | None = None) -> bool:
        """`add(array, delta=True)` of an int64 array; of a float64 array, of its values as int64 when they
        are whole numbers (`whole_ints`), else nothing. Whether the array was added (one call to the C)."""
        if array.dtype.byteorder == _FOREIGN_ORDER or not _LITTLE_ENDIAN:
            if array.dtype.kind == "f" and array.dtype.itemsize == 8:
                ints = whole_ints(array.astype(np.float64))  # (in the machine's byte order)
                if ints is None:
                    return False
                array = ints
            self.add(array, delta=True, key=key)
            return True
        data = _columns.pack_column(array, _DIFFERENCES)
        if data is None:
            return False
        self._append(data, len(array), key)  # (int64: 8-byte items)
        return True

    def _append(self, data: bytes, items: int, key: str | None) -> None:
        """Append a part of `data`: `items` values of more than one byte each (0: a byte array, or not
        counted), shuffled from `_SHUFFLE_MIN` of them on, when its planes are deflated apart, by size, and
        its key is not used."""
        self.parts.append(data)
        if items >= _SHUFFLE_MIN:
            self.planes.append(items)
            self.keys.append(None)
        else:
            self.planes.append(len(data))
            self.keys.append(key)
        self.size += len(data)

    def add_bytes(self, data: bytes, *, key: str | None = None) -> int:
        """`add` of a uint8 array of `data` (the same bytes, without making the array)."""
        at = self.size
        self.parts.append(data)
        self.planes.append(len(data))
        self.keys.append(key)
        self.size += len(data)
        return at

    def pack(self, level: int = _ZLIB_LEVEL_COLUMNS, shares: list[int] | None = None) -> bytes:
        """The block deflated as one zlib stream, the parts laid out as `layout` says. Each byte plane of
        at least `_BLOCK_MIN` bytes (the parts of one key: their bytes together) is a deflate block of its
        own (ISA-L's sync flush before and after it): the block's Huffman codes are then fitted to that plane
        alone (the low bytes of 16-bit values, the high bytes, a group of one width...), not to the mix of
        everything, for a few bytes of flush each. Read back as any stream.
        `shares`: given a list, each part's deflated bytes go to it (a key's to its first part, 0 to the
        others), each part then ending a block of its own (a few bytes more than without; benchmarks)."""
        # ISA-L writes and reads the same zlib stream as zlib (blocks written by either are read by both),
        # 5x faster to deflate and 2x to inflate a full series' block, for 1% more bytes.
        stream = isal_zlib.compressobj(level)
        compress, flush, sync = stream.compress, stream.flush, isal_zlib.Z_SYNC_FLUSH
        out: list[bytes] = []
        pending = False
        parts = self.parts
        by_key: dict[str, list[int]] = {}
        for i, key in enumerate(self.keys):
            if key is not None:
                by_key.setdefault(key, []).append(i)
        # One `compress` call a part, as parts come: ISA-L's stream writes other (as valid) bytes when given
        # the same input in other pieces, and a record is best written the same by every release.
        for i, key in enumerate(self.keys):
            written = len(out)
            if key is None:
                data, plane = parts[i], self.planes[i]
            else:
                group = by_key.pop(key, None)
                if group is None:  # laid out with the first part of its key
                    if shares is not None:
                        shares.append(0)
                    continue
                data = b"".join([parts[j] for j in group]) if len(group) > 1 else parts[i]
                plane = len(data)
            if plane < _BLOCK_MIN:  # small planes stay with what comes before and after them
                out.append(compress(data))
                pending = True
            else:
                for at in range(0, len(data), plane):
                    if pending:
                        out.append(flush(sync))
                    out.append(compress(data[at : at + plane] if plane < len(data) else data))
                    out.append(flush(sync))
                    pending = False
            if shares is not None:
                if pending:
                    out.append(flush(sync))
                    pending = False
                shares.append(sum(len(b) for b in out[written:]))
        out.append(flush())
        return b"".join(out)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> Columns:
        try:
            return cls(bytes(isal_zlib.decompress(data)))
        except INFLATE_ERRORS as exc:
            raise CodecError(f"column block does not inflate: {exc}") from exc

    def block(self) -> bytes:
        """The inflated block (`unpack`)."""
        if self._data is None:
            raise ValueError("a column reference without a column block")
        return self._data

    def get(self, dtype_str: str, n: int, offset: int, *, delta: bool = False) -> np.ndarray[Any, Any]:
        """The array of `n` elements of `dtype_str` (one of COLUMN_DTYPES) added at `offset` (read-only
        unless `delta` or shuffled, as `add` wrote it)."""
        data = self._data
        if data is None:
            raise ValueError("a column reference without a column block")
        dtype = _COLUMN_DTYPE.get(dtype_str)
        if dtype is None or n < 0 or offset < 0 or (delta and dtype_str != "<i8"):
            raise ValueError(f"column of dtype {dtype_str!r}, length {n}, offset {offset}, delta {delta}")
        item = dtype.itemsize
        if offset + n * item > len(data):
            raise ValueError(f"column at {offset} of {n} x {item} bytes is past the block's {len(data)}")
        if delta:
            return self.get_deltas([(n, offset)])[0]
        if item == 1 or n < _SHUFFLE_MIN:
            return np.frombuffer(data, dtype, n, offset)  # a view, no copy
        if _LITTLE_ENDIAN:  # byte k of every element together: un-shuffled by the C
            return np.frombuffer(_columns.unpack_column(data, offset, n, item), dtype)
        return unstored_array(data, dtype, n, offset)

    def get_deltas(self, spans: Sequence[Span]) -> list[np.ndarray[Any, Any]]:
        """`get("<i8", n, offset, delta=True)` of each (n, offset) in `spans`, the same values, worked out
        together: one C call for them all, and a slice for each (the arrays are slices of one array). A span
        (n, offset, True) is read as float64 (whole numbers, as `add_differences` took them)."""
        data = self._data
        if data is None:
            raise ValueError("a column reference without a column block")
        if not _LITTLE_ENDIAN:
            return summed_deltas(data, spans)
        ints = np.frombuffer(_columns.unpack_deltas(data, spans), np.int64)
        floats = None
        out: list[np.ndarray[Any, Any]] = []
        at = 0
        for span in spans:
            n = span[0]
            if len(span) > 2 and span[2]:
                if floats is None:
                    floats = ints.view(np.float64)
                out.append(floats[at : at + n])
            else:
                out.append(ints[at : at + n])
            at += n
        return out

    def text(self, offset: int, size: int) -> str:
        """The UTF-8 text of `size` bytes added at `offset` (`add_bytes`)."""
        data = self._data
        if data is None:
            raise ValueError("a column reference without a column block")
        if size < 0 or offset < 0 or offset + size > len(data):
            raise ValueError(f"text at {offset} of {size} bytes, past the block's {len(data)}")
        return str(data[offset : offset + size], "utf-8")


# The numpy forms of `_columns`' functions: the reference its tests compare with, and the path of a machine
# that is not little-endian (where the C does not apply).


def whole_ints(array: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.int64]] | None:
    """A float64 array as int64 if it holds whole numbers only, each below 2**53 in magnitude (so exact as an
    int64 and back), with no NaN and no -0.0; else None."""
    if not np.maximum.reduce(np.abs(array)) < _WHOLE_LIMIT:  # False with a NaN: no cast of it to warn about
        return None
    ints = array.astype(np.int64)
    # Back to float64 bit for bit: a fraction comes back another number, -0.0 as 0.0 (another sign bit).
    return ints if ints.astype(np.float64).tobytes() == array.tobytes() else None


def _zigzag_differences(array: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.int64]]:
    """An int64 array as its first value and the differences after it (wrapping around, as `get`'s sum
    does: exact either way), zigzag-coded (0, -1, 1, -2... as 0, 1, 2, 3...): a new array."""
    differences = array.astype(np.int64)  # a copy, in the machine's byte order
    differences[1:] -= array[:-1]
    sign = differences >> 63
    differences <<= 1
    differences ^= sign
    return differences


def stored_bytes(array: np.ndarray[Any, Any], *, delta: bool = False) -> bytes:
    """The bytes `Columns.add` stores for `array` (`_columns.pack_column`, mode 0 or 1)."""
    if array.dtype.byteorder == _FOREIGN_ORDER:
        array = array.astype(array.dtype.newbyteorder("<"))
    if delta:
        array = _zigzag_differences(array)
    item = array.dtype.itemsize
    n = len(array)
    if item > 1 and n >= _SHUFFLE_MIN:
        # Byte k of every element together: the C-order bytes of the transposed (n, item) byte view.
        return np.ascontiguousarray(array).view(np.uint8).reshape(n, item).T.tobytes()
    return array.tobytes()


def unstored_array(data: bytes, dtype: np.dtype[Any], n: int, offset: int) -> np.ndarray[Any, Any]:
    """The array of `n` elements of `dtype` that `stored_bytes` wrote at `offset` of `data` (a copy)."""
    item = dtype.itemsize
    if item == 1 or n < _SHUFFLE_MIN:
        return np.frombuffer(data, dtype, n, offset).copy()
    planes = np.frombuffer(data, np.uint8, n * item, offset).reshape(item, n)  # the (item, n) planes
    return planes.T.copy().view(dtype)[:, 0]


def summed_deltas(data: bytes, spans: Sequence[Span]) -> list[np.ndarray[Any, Any]]:
    """`Columns.get_deltas` of the block `data` (`_columns.unpack_deltas`): the spans' zigzag differences
    summed back, each step an array for all of them."""
    size = len(data)
    rows = [_ZERO_ROW]  # each array as (n, 8) bytes, after one zero (see the sums below)
    lengths = []
    for span in spans:
        n, offset = span[0], span[1]
        end = offset + 8 * n
        if n < 0 or offset < 0 or end > size:
            raise ValueError(f"column of dtype '<i8', length {n}, offset {offset}, delta True (block {size})")
        planes = np.frombuffer(data, np.uint8, 8 * n, offset)
        rows.append(planes.reshape(8, n).T if n >= _SHUFFLE_MIN else planes.reshape(n, 8))
        lengths.append(n)
    joined = np.empty((1 + sum(lengths), 8), dtype=np.uint8)  # C order (else it follows the transposed)
    zigzag = np.concatenate(rows, out=joined).view(np.uint64).reshape(-1)
    differences = zigzag >> _ONE
    sign = zigzag & _ONE
    np.negative(sign, out=sign)  # 1 as all ones
    differences ^= sign
    # One running sum over all of them (uint64: wrapping around as int64 would), then each array's part of
    # it less where the sum stood before its first element (the zero in front: 0 for the first).
    sums = np.add.accumulate(differences, out=differences).view(np.int64)
    out: list[np.ndarray[Any, Any]] = []
    at = 1
    for span, n in zip(spans, lengths, strict=True):
        array = sums[at : at + n] - sums[at - 1]
        out.append(array.astype(np.float64) if len(span) > 2 and span[2] else array)
        at += n
    return out


# -- values -------------------------------------------------------------------------------------------


def encode_value(value: Any, blobs: list[bytes] | None = None) -> bytes:
    """`value` as bytes (see the module docstring). Raises TypeError naming the path of a non-plain value.

    With `blobs`, the raw bytes of base64 strings are appended to it instead and referenced by index: the
    caller stores them apart (they are usually deflated already) and deflates only the rest."""
    out = bytearray()
    _Encoder(out, blobs).put(value, "$")
    return bytes(out)


def decode_value(data: bytes | memoryview, blobs: list[bytes] | None = None) -> Any:
    """The value `encode_value` wrote (with the same `blobs`). Raises CodecError on malformed bytes."""
    decoder = _Decoder(memoryview(data), blobs)
    try:
        value = decoder.get()
    except (IndexError, struct.error, UnicodeDecodeError, ValueError, binascii.Error) as exc:
        raise CodecError(f"malformed value at byte {decoder.pos}: {exc}") from exc
    if decoder.pos != len(decoder.data):
        raise CodecError(f"{len(decoder.data) - decoder.pos} bytes after the value")
    return value


def decode_head(data: bytes | memoryview, count: int) -> list[Any]:
    """The first `count` values of an encoded dict (its values, in written order) or list, without
    decoding the rest: enough to route a record by its first fields."""
    decoder = _Decoder(memoryview(data), None)
    try:
        tag = decoder.data[0]
        decoder.pos = 1
        if tag not in (_DICT, _LIST):
            raise ValueError(f"expected a dict or list, found tag {tag}")
        n = decoder.varint()
        out = []
        for _ in range(min(n, count)):
            if tag == _DICT:
                decoder.string(decoder.data[decoder.pos], skip=True)
            out.append(decoder.get())
    except (IndexError, struct.error, UnicodeDecodeError, ValueError, binascii.Error) as exc:
        raise CodecError(f"malformed value at byte {decoder.pos}: {exc}") from exc
    return out


def _varint(out: bytearray, n: int) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


class _Encoder:
    __slots__ = ("blobs", "out", "strings")

    def __init__(self, out: bytearray, blobs: list[bytes] | None) -> None:
        self.out = out
        self.blobs = blobs
        self.strings: dict[str, int] = {}

    def put(self, value: Any, path: str) -> None:
        out = self.out
        kind = type(value)
        if kind is str:
            self.put_str(value)
        elif kind is int:
            if -_INT64 <= value < _INT64:
                out.append(_INT)
                _varint(out, (value << 1) ^ (value >> 63))
            else:
                out.append(_BIGINT)
                self.put_str(str(value))
        elif kind is float:
            out.append(_FLOAT)
            out += _DOUBLE.pack(value)
        elif value is None:
            out.append(_NONE)
        elif kind is bool:
            out.append(_TRUE if value else _FALSE)
        elif kind is dict:
            out.append(_DICT)
            _varint(out, len(value))
            for k, v in value.items():
                if type(k) is not str:
                    raise TypeError(f"{path}: dict key {k!r} is not a str")
                self.put_str(k)
                self.put(v, f"{path}.{k}")
        elif kind is list or kind is tuple:
            if len(value) >= _ARRAY_MIN and (self.put_array(value) or self.put_str_list(value)):
                return
            out.append(_LIST)
            _varint(out, len(value))
            for i, v in enumerate(value):
                self.put(v, f"{path}[{i}]")
        elif kind is bytes:
            out.append(_BYTES)
            _varint(out, len(value))
            out += value
        else:
            raise TypeError(f"{path}: {kind.__name__} is not plain data")

    def put_str(self, s: str) -> None:
        out = self.out
        ref = self.strings.get(s)
        if ref is not None:
            out.append(_STR_REF)
            _varint(out, ref)
            return
        self.strings[s] = len(self.strings)
        if len(s) >= _B64_MIN and len(s) % 4 == 0:
            raw = _canonical_base64(s)
            if raw is not None and self.blobs is not None:
                out.append(_B64_BLOB)
                _varint(out, len(self.blobs))
                self.blobs.append(raw)
                return
            if raw is not None:
                out.append(_B64)
                _varint(out, len(raw))
                out += raw
                return
        data = s.encode()
        out.append(_STR)
        _varint(out, len(data))
        out += data

    def put_array(self, values: list[Any] | tuple[Any, ...]) -> bool:
        first = type(values[0])
        if first is float:
            if not all(type(v) is float for v in values):
                return False
            if len(values) <= _SHORT_ARRAY:
                self.put_short_floats(values)
                return True
            return self.put_floats(np.asarray(values, dtype=np.float64))
        if first is int:
            if not all(type(v) is int for v in values):
                return False
            lo, hi = min(values), max(values)
            if lo < -_INT64 or hi >= _INT64:
                return False
            dtype = next(d for d, bound in _INT_BOUNDS if -bound <= lo and hi < bound)
        else:
            return False
        out = self.out
        out.append(_ARRAY)
        out.append(_DTYPE_CODE[dtype])
        _varint(out, len(values))
        if len(values) <= _SHORT_ARRAY:
            out += struct.pack(f"<{len(values)}{_STRUCT_CODE[dtype]}", *values)
        else:
            out += np.asarray(values, dtype=dtype).tobytes()
        return True

    def put_short_floats(self, values: list[float] | tuple[float, ...]) -> None:
        """`put_floats` for a short list, without numpy (its fixed costs dominate a point record's few
        site values): the same choice of type, the same bytes."""
        out = self.out
        out.append(_ARRAY)
        n = len(values)
        floor = math.floor
        # abs(v) < limit is False for NaN and the infinities; -0.0 has to stay a float.
        if all(abs(v) < _WHOLE_LIMIT and v == floor(v) and (v or math.copysign(1.0, v) > 0) for v in values):
            ints = [int(v) for v in values]
            lo, hi = min(ints), max(ints)
            dtype = next(d for d, bound in _INT_BOUNDS if -bound <= lo and hi < bound)
            out.append(_AS_FLOAT + _DTYPE_CODE[dtype] - 1)
            _varint(out, n)
            out += struct.pack(f"<{n}{_STRUCT_CODE[dtype]}", *ints)
            return
        try:
            narrow = struct.pack(f"<{n}f", *values)  # rounds as numpy's cast does
            exact = struct.unpack(f"<{n}f", narrow) == tuple(values)  # False with a NaN
        except OverflowError:  # beyond float32's range (numpy: inf, not exact)
            exact = False
        out.append(_DTYPE_CODE["<f4" if exact else "<f8"])
        _varint(out, n)
        out += narrow if exact else struct.pack(f"<{n}d", *values)

    def put_floats(self, array: np.ndarray[Any, np.dtype[np.float64]]) -> bool:
        out = self.out
        out.append(_ARRAY)
        magnitude = np.abs(array)
        if (
            magnitude.max() < _WHOLE_LIMIT  # False with a NaN
            and (array == np.floor(array)).all()
            and not np.signbit(array[array == 0]).any()  # -0.0 would come back as 0.0
        ):
            ints = array.astype(np.int64)
            lo, hi = int(ints.min()), int(ints.max())
            dtype = next(d for d, bound in _INT_BOUNDS if -bound <= lo and hi < bound)
            out.append(_AS_FLOAT + _DTYPE_CODE[dtype] - 1)
            _varint(out, len(array))
            out += ints.astype(dtype).tobytes()
            return True
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow to inf is simply not exact
            narrow = array.astype("<f4")
        exact = bool((narrow.astype(np.float64) == array).all())  # False with a NaN: stays float64
        out.append(_DTYPE_CODE["<f4" if exact else "<f8"])
        _varint(out, len(array))
        out += (narrow if exact else array.astype("<f8")).tobytes()
        return True

    def put_str_list(self, values: list[Any] | tuple[Any, ...]) -> bool:
        """A list of strings as one joined block (False, writing nothing, if it is not one, a string holds a NUL,
        or one is base64 that `put_str` would store as raw bytes)."""
        if not all(type(v) is str for v in values):
            return False
        strings = self.strings
        refs: list[int] = []
        fresh: list[str] = []
        for s in values:
            ref = strings.get(s)
            if ref is None:
                if "\0" in s or (len(s) >= _B64_MIN and len(s) % 4 == 0 and _canonical_base64(s) is not None):
                    for added in fresh:  # undo: the list is written item by item instead
                        del strings[added]
                    return False
                strings[s] = ref = len(strings)
                fresh.append(s)
                refs.append(0)
            else:
                refs.append(ref + 1)
        out = self.out
        out.append(_STR_LIST)
        _varint(out, len(values))
        self.put(refs, "")  # ints: a packed array
        blob = "\0".join(fresh).encode()
        _varint(out, len(blob))
        out += blob
        return True


_INT_BOUNDS = (("<i1", 1 << 7), ("<i2", 1 << 15), ("<i4", 1 << 31), ("<i8", 1 << 63))
_STRUCT_CODE = {"<i1": "b", "<i2": "h", "<i4": "i", "<i8": "q"}


def _canonical_base64(s: str) -> bytes | None:
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if base64.b64encode(raw).decode() == s else None


class _Decoder:
    __slots__ = ("blobs", "data", "pos", "strings")

    def __init__(self, data: memoryview, blobs: list[bytes] | None) -> None:
        self.data = data
        self.blobs = blobs
        self.pos = 0
        self.strings: list[str] = []

    def varint(self) -> int:
        data = self.data
        shift = result = 0
        while True:
            b = data[self.pos]
            self.pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result
            shift += 7
            if shift > 70:
                raise ValueError("varint too long")

    def take(self, n: int) -> memoryview:
        start = self.pos
        end = start + n
        if end > len(self.data):
            raise IndexError(f"{n} bytes wanted, {len(self.data) - start} left")
        self.pos = end
        return self.data[start:end]

    def get(self) -> Any:
        tag = self.data[self.pos]
        self.pos += 1
        if tag in (_STR, _STR_REF, _B64, _B64_BLOB):
            return self.string(tag)
        if tag == _INT:
            z = self.varint()
            return (z >> 1) ^ -(z & 1)
        if tag == _FLOAT:
            return _DOUBLE.unpack(self.take(8))[0]
        if tag == _DICT:
            n = self.varint()
            out: dict[str, Any] = {}
            for _ in range(n):
                k = self.string(self.data[self.pos], skip=True)
                out[k] = self.get()
            return out
        if tag == _LIST:
            return [self.get() for _ in range(self.varint())]
        if tag == _NONE:
            return None
        if tag == _FALSE:
            return False
        if tag == _TRUE:
            return True
        if tag == _ARRAY:
            code = self.data[self.pos]
            self.pos += 1
            if code >= len(_DTYPES):
                raise ValueError(f"unknown array type {code}")
            dtype = np.dtype(_DTYPES[code])
            n = self.varint()
            array = np.frombuffer(self.take(n * dtype.itemsize), dtype=dtype)
            return (array.astype(np.float64) if code >= _AS_FLOAT else array).tolist()
        if tag == _STR_LIST:
            return self.str_list()
        if tag == _BYTES:
            return bytes(self.take(self.varint()))
        if tag == _BIGINT:
            return int(self.string(self.data[self.pos], skip=True))
        raise ValueError(f"unknown tag {tag}")

    def str_list(self) -> list[str]:
        n = self.varint()
        refs = self.get()
        if not isinstance(refs, list) or len(refs) != n or (n and min(refs) < 0):
            raise ValueError("string list: bad references")
        blob = self.take(self.varint())
        zeros = refs.count(0)
        fresh = str(blob, "utf-8").split("\0") if zeros else []
        if len(fresh) != zeros:
            raise ValueError(f"string list: {len(fresh)} new strings for {zeros} places")
        strings = self.strings
        strings.extend(fresh)
        new = iter(fresh)
        return [strings[r - 1] if r else next(new) for r in refs]

    def string(self, tag: int, *, skip: bool = False) -> str:
        if skip:
            self.pos += 1
        if tag == _STR_REF:
            return self.strings[self.varint()]
        if tag == _STR:
            s = str(self.take(self.varint()), "utf-8")
        elif tag == _B64_BLOB:
            if self.blobs is None:
                raise ValueError("a blob reference without blobs")
            s = base64.b64encode(self.blobs[self.varint()]).decode()
        elif tag == _B64:
            s = base64.b64encode(self.take(self.varint())).decode()
        else:
            raise ValueError(f"expected a string, found tag {tag}")
        self.strings.append(s)
        return s


# -- frames -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One record read back: its type, payload (decompressed; else a view into the input, not a copy) and
    where it ended in the input."""

    type: int
    payload: bytes | memoryview
    end: int


def frame(record_type: int, payload: bytes, *, compress: bool = True) -> bytes:
    """`payload` framed as one record (deflated when that saves space and `compress`)."""
    flags = 0
    if compress and len(payload) >= COMPRESS_ABOVE:
        # ISA-L's deflate writes a zlib stream like zlib's, of about the same size, in a fraction of the
        # time: zlib sets up (and clears) a 256 KiB state for every call, which costs more than deflating
        # a point record of a few hundred bytes.
        packed = isal_zlib.compress(payload, _ZLIB_LEVEL)
        if len(packed) < len(payload):
            payload, flags = packed, FLAG_ZLIB
    head = struct.pack("<2sBBBBI", MAGIC, CODEC_VERSION, record_type, flags, 0, len(payload))
    return head + struct.pack("<I", _crc32(payload, _crc32(head))) + payload


@dataclass(frozen=True, slots=True)
class Tail:
    """Why reading stopped before the end of the input: `offset` is the end of the last good record."""

    offset: int
    reason: str


def read_frames(data: bytes | memoryview, start: int = 0) -> tuple[list[Frame], Tail | None]:
    """Every complete, intact record from `start`, and, if the input does not end cleanly, where the
    good part ends and why (a torn record, a checksum mismatch, an unknown version). Nothing after the
    first bad record is read: its length field cannot be trusted."""
    view = memoryview(data)
    frames: list[Frame] = []
    pos = start
    end = len(view)
    while pos < end:
        if end - pos < HEADER_SIZE:
            return frames, Tail(pos, f"torn record header ({end - pos} of {HEADER_SIZE} bytes)")
        magic, version, record_type, flags, _, length, crc = HEADER.unpack_from(view, pos)
        if magic != MAGIC:
            return frames, Tail(pos, "no record magic")
        if version not in READ_VERSIONS:
            return frames, Tail(pos, f"record codec version {version}, this build reads {READ_VERSIONS}")
        if length > MAX_PAYLOAD:
            return frames, Tail(pos, f"record length {length} over {MAX_PAYLOAD}")
        body_start = pos + HEADER_SIZE
        if end - body_start < length:
            return frames, Tail(pos, f"torn record ({end - body_start} of {length} payload bytes)")
        payload = view[body_start : body_start + length]
        if _crc32(payload, _crc32(view[pos : pos + _CRC_FROM])) != crc:
            return frames, Tail(pos, "checksum mismatch")
        raw: bytes | memoryview = payload
        if flags & FLAG_ZLIB:
            try:
                raw = zlib.decompress(payload)
            except zlib.error as exc:
                return frames, Tail(pos, f"payload does not inflate: {exc}")
        pos = body_start + length
        frames.append(Frame(record_type, raw, pos))
    return frames, None


def iter_frames(data: bytes | memoryview) -> Iterator[Frame]:
    """Every record of `data`; raises CodecError at the first bad one (for inputs that must be whole)."""
    frames, tail = read_frames(data)
    yield from frames
    if tail is not None:
        raise CodecError(f"at byte {tail.offset}: {tail.reason}")
