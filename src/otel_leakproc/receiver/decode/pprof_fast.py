"""The vectorised pprof reader: samples and tables read with numpy, in byte space.

A Sample holds only varint-encoded data (packed uint64 location ids, packed int64 values, Label
messages of int64 fields). The fast path reads, at arrays of byte positions (one per sample), only the
varints it needs: each sample's two packed fields (values and locations, in either order), its labels
skipped over, its values, then its location ids one stack level at a time for the samples still without
a user frame. Locations and functions are read the same way from their encoded bytes, so no Python
object is built per sample, location or line. Anything unusual (unpacked fields, other layouts, value
counts that do not match, bad references) returns None and the sample-by-sample path handles it, with
its precise error messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice, starmap
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError

from otel_leakproc.receiver.decode.frames import is_primitive_frame, is_system_frame
from otel_leakproc.receiver.decode.pprof_sites import IntArray, SiteAcc, exact_sum
from otel_leakproc.receiver.proto import profile_messages as profile_pb2

_TAG_LOCATIONS = 0x0A  # field 1, length-delimited (packed)
_TAG_VALUES = 0x12  # field 2, length-delimited (packed)
_TAG_LABEL = 0x1A  # field 3, length-delimited
_TAG_LOCATION = 0x22  # Profile.location (4), Location.line (4)
_TAG_FUNCTION = 0x2A  # Profile.function (5)
_MAX_LABEL_ROUNDS = 64  # labels per sample the fast path walks before giving up
_MAX_FIELD_ROUNDS = 256  # fields per location/line/function message the fast path walks before giving up
_MAX_LENGTH = 1 << 40  # a larger length field is corrupt (and would overflow the position arithmetic)
_U7 = np.uint64(7)


class Parts:
    """Samples, locations and functions re-serialised by protobuf, so each kind comes back to back
    (writers interleave them) with canonical framing, and no Python object per item.

    From `samples_at`, `data` holds the samples, then the locations and functions, up to `tables_end`
    (None: up to the first string, found once the samples' end is known)."""

    __slots__ = ("data", "n_fns", "n_locs", "samples_at", "tables_end")

    def __init__(self, data: bytes, samples_at: int, tables_end: int | None, n_locs: int, n_fns: int) -> None:
        self.data = data
        self.samples_at = samples_at
        self.tables_end = tables_end
        self.n_locs = n_locs
        self.n_fns = n_fns


def raw_parts(profile: profile_pb2.ProfileLazySamples | profile_pb2.ProfileLazyParts, raw: bytes) -> Parts | None:
    """The profile's samples, locations and functions, each kind back to back (see `Parts`); `raw` is
    what `profile` was parsed from.

    A `ProfileLazyParts` (large heap profiles) is serialised whole instead of parsing the bytes a second
    time: fields come in number order (sample types, samples, mappings, locations, ...), so with its
    mappings cleared (no summary reads them; the parse validated them) the tables follow the samples, up
    to the strings. Other large profiles (mutex, block), parsed with their tables as messages for
    classifying, are read again as `ProfileRawParts`."""
    if isinstance(profile, profile_pb2.ProfileLazyParts):
        profile.ClearField("mapping")
        samples_at = 0
        for vt in profile.sample_type:
            size = vt.ByteSize()
            samples_at += 1 + max(1, (size.bit_length() + 6) // 7) + size  # tag, length, body
        return Parts(profile.SerializeToString(), samples_at, None, len(profile.location), len(profile.function))
    try:
        parts = profile_pb2.ProfileRawParts.FromString(raw)
    except DecodeError:
        return None
    parts.DiscardUnknownFields()
    data = parts.SerializeToString()
    return Parts(data, 0, len(data), len(parts.location), len(parts.function))


def _read_varints(data: npt.NDArray[np.uint8], pos: IntArray) -> tuple[IntArray, IntArray] | None:
    """The varints starting at byte positions `pos`: (values as uint64, position after each), or None if
    one is wider than 64 bits. `data` must end with a byte below 0x80, so every read stays inside it.

    Each further byte is read for every varint at once (the ended ones reading a zero) while at least a
    quarter are still going, which costs fewer operations than selecting those going; then only for them.
    """
    byte = data[pos]
    values = (byte & 0x7F).astype(np.uint64)
    after = pos + 1
    going = byte >= 0x80
    for k in range(1, 10):  # byte k of the varints still going
        count = int(np.count_nonzero(going))
        if not count:
            return values, after
        if count * 4 < len(pos):
            return _read_varints_rest(data, values, after, np.flatnonzero(going), k)
        byte = np.take(data, after, mode="clip") * going  # (clipped: an ended varint may end `data`)
        values |= (byte & 0x7F).astype(np.uint64) << np.uint64(7 * k)
        after += going
        if k == 9 and bool((byte > 1).any()):
            return None  # a tenth byte above 1 (or an eleventh byte): wider than 64 bits
        going = byte >= 0x80
    return values, after


def _read_varints_rest(
    data: npt.NDArray[np.uint8], values: IntArray, after: IntArray, more: IntArray, start: int
) -> tuple[IntArray, IntArray] | None:
    """`_read_varints` from byte `start` on, for the few varints `more` still going."""
    for k in range(start, 10):
        if not len(more):
            return values, after
        byte = data[after[more]]
        values[more] |= (byte & 0x7F).astype(np.uint64) << np.uint64(7 * k)
        after[more] += 1
        if k == 9 and bool((byte > 1).any()):
            return None
        more = more[byte >= 0x80]
    return values, after


def _well_formed(data: npt.NDArray[np.uint8]) -> bool:
    """`data` is a run of varints of at most 64 bits each (what a stream of Samples must be)."""
    if len(data) == 0 or data[-1] >= 0x80:
        return False
    going = data >= 0x80
    # Usually no varint is 10 bytes wide: no 9 continuation bytes in a row, seen on the bits as an integer.
    bits = int.from_bytes(np.packbits(going).tobytes(), "big")
    runs_of = bits & (bits >> 1)  # bit i: bits i..i+1 set; then i..i+3, i..i+7, i..i+8
    runs_of &= runs_of >> 2
    runs_of &= runs_of >> 4
    if not runs_of & (bits >> 8):
        return True
    runs = going[:-1] & going[1:]  # runs[i]: bytes i..i+1 both continue; then i..i+3, then i..i+7
    for width in (2, 4):
        runs = runs[:-width] & runs[width:]
    nine = np.flatnonzero(runs[:-1] & going[8:]) if len(runs) > 1 else np.zeros(0, dtype=np.int64)
    return not len(nine) or bool((data[nine + 9] <= 1).all())  # a varint's tenth byte holds one bit


def _field(data: npt.NDArray[np.uint8], at: IntArray, end: IntArray) -> tuple[IntArray, IntArray, IntArray] | None:
    """(tag, body start, body end) of the length-delimited fields starting at `at`, each ending by `end`.

    Tags are read as one byte (the Sample fields the fast path reads have one-byte tags; a longer tag is
    left to the sample-by-sample path)."""
    tag = data[at]
    if bool((tag >= 0x80).any()) or not bool((at + 1 < end).all()):
        return None
    body_start = at + 2
    short = data[at + 1]
    if bool((short < 0x80).all()):  # one-byte lengths (what fields of samples under 128 bytes have)
        body_end = body_start + short
    else:
        length = _read_varints(data, at + 1)
        if length is None or bool((length[0] > np.uint64(_MAX_LENGTH)).any()):
            return None
        body_start = length[1]
        body_end = body_start + length[0].astype(np.int64)
    if bool((body_end > end).any()):
        return None
    return tag, body_start, body_end


class _Scan:
    """Where each sample's location ids sit in the concatenated sample bytes, and its values."""

    __slots__ = ("data", "loc_end", "loc_start", "sample_end", "sample_start", "tables_at", "values")

    def __init__(
        self,
        data: npt.NDArray[np.uint8],
        loc_start: IntArray,
        loc_end: IntArray,
        values: IntArray,
        sample_start: IntArray,
        sample_end: IntArray,
        tables_at: int,
    ) -> None:
        self.data = data  # every sample, as a Profile.sample field, back to back
        self.loc_start = loc_start  # byte position of each sample's first (leaf) location id
        self.loc_end = loc_end  # end of each sample's packed location ids (at least one id each)
        self.values = values  # int64, one row per sample type, one column per sample
        self.sample_start = sample_start  # where each sample's message starts in `data`
        self.sample_end = sample_end
        self.tables_at = tables_at  # where the locations and functions follow the samples in `data`

    def sample(self, i: int) -> bytes:
        """The encoded Sample message `i`."""
        return self.data[self.sample_start[i] : self.sample_end[i]].tobytes()


def scan_samples(parts: Parts, n: int, n_types: int) -> _Scan | None:
    """Where each of the `n` samples in `parts` (Profile.sample fields, back to back, then the tables)
    keeps its location ids, and its values; None when anything is unusual."""
    whole = parts.data
    if n == 0 or n_types == 0 or not whole:
        return None
    if parts.tables_end is None and whole[-1] >= 0x80:  # so that every varint read ends inside
        whole += b"\x00"
    data = np.frombuffer(whole, dtype=np.uint8)[parts.samples_at : parts.tables_end]
    framed = _frame(data, n)  # (on what follows the tables too, when their end is not known yet)
    if framed is None:
        return None
    start, end = framed
    tables_at = int(end[-1])
    if parts.tables_end is None:
        # The strings start with string_table[0], "" (checked before): 0x32 0x00, which no location or
        # function bytes the table reader accepts hold (it would take a field 0, or a field 6 it rejects).
        tables_end = whole.find(b"\x32\x00", parts.samples_at + tables_at)
        if tables_end < 0:
            return None
        data = data[: tables_end - parts.samples_at]
    if not _well_formed(data):
        return None
    if tables_at < len(data) and data[tables_at] not in (_TAG_LOCATION, _TAG_FUNCTION):
        return None
    if not bool((end > start).all()):
        return None
    # Locations and values come in either order (runtime/pprof writes values first, re-encoders of the
    # generated classes locations first), then the labels.
    first = _field(data, start, end)
    if first is None:
        return None
    locations_first = first[0] == _TAG_LOCATIONS
    if not bool((locations_first | (first[0] == _TAG_VALUES)).all()) or not bool((first[2] < end).all()):
        return None
    second = _field(data, first[2], end)
    if second is None:
        return None
    n_locations_first = int(np.count_nonzero(locations_first))
    if n_locations_first in (0, n):  # one order for every sample (what writers do): no selects
        locs, vals = (first, second) if n_locations_first else (second, first)
        if not bool((second[0] == (_TAG_VALUES if n_locations_first else _TAG_LOCATIONS)).all()):
            return None
        loc_start, loc_end, val_start, val_end = locs[1], locs[2], vals[1], vals[2]
    else:
        if not bool((second[0] == np.where(locations_first, _TAG_VALUES, _TAG_LOCATIONS)).all()):
            return None
        loc_start = np.where(locations_first, first[1], second[1])
        loc_end = np.where(locations_first, first[2], second[2])
        val_start = np.where(locations_first, second[1], first[1])
        val_end = np.where(locations_first, second[2], first[2])
    # At least one location id each, the last one ending with the field (so ids never run past it).
    if not bool((loc_end > loc_start).all()) or not bool((data[loc_end - 1] < 0x80).all()):
        return None
    values = _read_values(data, val_start, val_end, n_types)
    if values is None or not bool((values[1] == val_end).all()):
        return None  # not exactly one value per sample type
    if not _skip_labels(data, second[2], end):
        return None
    return _Scan(data, loc_start, loc_end, values[0], start, end, tables_at)


def _frame(data: npt.NDArray[np.uint8], n: int) -> tuple[IntArray, IntArray] | None:
    """(start, end) of the message in each of the `n` length-delimited fields 2 at the start of `data`,
    back to back.

    A field starts at a 0x12 byte that starts a varint, with a length of one or two bytes, followed by
    what a Sample the fast path reads starts with (its locations or its values). Such a pattern is also
    found inside samples, now and then, so the fields are the chain of candidates from the first one, each
    reaching the next through its length: usually every candidate, else found by pointer doubling. `data`
    must be a stream of varints.
    """
    size = len(data)
    if size < 4 or data[0] != _TAG_VALUES:
        return None
    short = _frame_short(data, n)
    if short is not None:
        return short
    cand = np.flatnonzero(data[: size - 2] == _TAG_VALUES)  # with room for a length and a body
    starts = data[cand - 1] < 0x80  # starts a varint (the first byte does: data[-1] ends one)
    one = data[1:][cand] < 0x80  # a one-byte length, else two bytes (shifted views: no index arithmetic)
    body = cand + 3 - one
    first = data[np.minimum(body, size - 1)]  # what the body starts with: locations or values
    length_ok = one | (data[2:][cand] < 0x80)
    cand = cand[starts & length_ok & (body < size) & ((first == _TAG_LOCATIONS) | (first == _TAG_VALUES))]
    if not len(cand) or cand[0] != 0:
        return None
    length = _read_varints(data, cand + 1)
    if length is None:
        return None
    body = length[1]
    after = np.minimum(body + np.minimum(length[0], np.uint64(size)).astype(np.int64), size + 1)
    k = len(cand)
    if k >= n and bool((after[: n - 1] == cand[1:n]).all()):
        return body[:n], after[:n]  # the usual case: the first n candidates are the fields
    # Else most extra candidates reach neither another candidate nor a table field: without them, the
    # first n candidates may chain (checked as above, so what they are does not matter).
    is_cand = np.zeros(size + 2, dtype=bool)  # a byte map of the candidates: cheaper than a search
    is_cand[cand] = True
    reach = np.minimum(after, size - 1)
    keep = is_cand[after] | (after == size) | (data[reach] == _TAG_LOCATION) | (data[reach] == _TAG_FUNCTION)
    kept = np.flatnonzero(keep)
    if len(kept) >= n and kept[0] == 0 and bool((after[kept[: n - 1]] == cand[kept[1:n]]).all()):
        return body[kept[:n]], after[kept[:n]]
    slot = np.full(size + 2, k + 1, dtype=np.int32)  # candidate starting at each byte; k: the end; k + 1: none
    slot[cand] = np.arange(k, dtype=np.int32)
    slot[size] = k
    succ = slot[after]  # where each candidate's field ends
    jump = np.append(succ, np.array([k, k + 1], dtype=np.int32))  # the end and a dead end stay put
    chain = np.zeros(1, dtype=np.int32)
    while len(chain) < n:  # chain[i]: the candidate i steps from the first; steps doubled each round
        step = jump[chain]
        chain = np.concatenate((chain, step))
        if bool((step >= k).any()):
            break
        jump = jump[jump]
    if len(chain) < n or bool((chain[:n] >= k).any()):
        return None
    return body[chain[:n]], after[chain[:n]]


def _frame_short(data: npt.NDArray[np.uint8], n: int) -> tuple[IntArray, IntArray] | None:
    """`_frame` for samples under 128 bytes (Go's usually are): a field is 0x12, a one-byte length and a
    body starting with 0x0A or 0x12. Matching all three bytes leaves few false candidates (a byte-wide
    0x12 match has about three per sample), so the scan and everything after it are cheaper; None when
    the candidates do not chain (e.g. a longer sample), for the general search.

    runtime/pprof writes a sample's values first, so its field starts 0x12, length, 0x12: two bytes found
    with one comparison of the whole run (`is_12` against itself shifted), the length checked only at
    those; when they do not chain (another writer's order), all three bytes are matched."""
    size = len(data)
    is_12 = data == _TAG_VALUES
    cand = np.flatnonzero(is_12[: size - 2] & is_12[2:])
    cand = cand[data[cand + 1] < 0x80]
    chained = _chain_short(data, cand, n)
    if chained is not None:
        return chained
    match = is_12[: size - 2] & (data[1 : size - 1] < 0x80)
    match &= (data[2:] == _TAG_LOCATIONS) | is_12[2:]
    return _chain_short(data, np.flatnonzero(match), n)


# Breaks in the chain of candidates (false ones, about one in a thousand) stepped over one at a time; more
# than this: the byte map of `_chain_short`.
_MAX_CHAIN_BREAKS = 64


def _chain_short(data: npt.NDArray[np.uint8], cand: IntArray, n: int) -> tuple[IntArray, IntArray] | None:
    """The first `n` fields chained from the candidate at 0 (`_frame_short`), each reaching the next
    through its one-byte length: (body start, end) of each, or None."""
    size = len(data)
    if len(cand) < n or cand[0] != 0:
        return None
    after = cand + 2
    after += data[1:][cand]
    breaks = np.flatnonzero(after[: n - 1] != cand[1:n])
    if len(breaks) > _MAX_CHAIN_BREAKS:
        # Drop the candidates reaching neither another candidate nor a table field (nearly every false
        # one), then check the chain again.
        is_cand = np.zeros(size + 0x80, dtype=bool)  # (a byte map of the candidates: cheaper than a search)
        is_cand[cand] = True
        reach = data[np.minimum(after, size - 1)]
        keep = is_cand[after] | (after == size) | (reach == _TAG_LOCATION) | (reach == _TAG_FUNCTION)
        cand, after = cand[keep], after[keep]
        if len(cand) < n or cand[0] != 0 or not bool((after[: n - 1] == cand[1:n]).all()):
            return None
    elif len(breaks):
        # Follow the chain across each break: the field a candidate reaches is found by a search (a false
        # candidate inside a field is stepped over; no candidate there: no chain).
        index = _follow_chain(cand, after, n)
        if index is None:
            return None
        cand, after = cand[index], after[index]
    if int(after[n - 1]) > size:
        return None
    return cand[:n] + 2, after[:n]


def _follow_chain(cand: IntArray, after: IntArray, n: int) -> IntArray | None:
    """Indices of the first `n` candidates on the chain from candidate 0, where candidate i is followed
    by the one starting at `after[i]` (most often candidate i + 1); None when the chain ends early."""
    ends = np.flatnonzero(after[:-1] != cand[1:]).tolist()  # i: i + 1 does not follow it
    ends.append(len(cand) - 1)
    runs: list[IntArray] = []
    taken = 0
    at = 0
    k = 0  # the first end at or after `at`
    while True:
        while ends[k] < at:
            k += 1
        stop = min(ends[k], at + n - taken - 1)
        runs.append(np.arange(at, stop + 1))
        taken += stop + 1 - at
        if taken == n:
            return np.concatenate(runs)
        target = after[stop]
        at = int(np.searchsorted(cand, target))
        if at >= len(cand) or cand[at] != target or len(runs) > 2 * _MAX_CHAIN_BREAKS:
            return None


def _read_values(
    data: npt.NDArray[np.uint8], at: IntArray, end: IntArray, n_types: int
) -> tuple[IntArray, IntArray] | None:
    """`n_types` consecutive varints from each position: (int64 values, one row per type; end position)."""
    rows = np.empty((n_types, len(at)), dtype=np.uint64)
    for k in range(n_types):
        read = None if bool((at >= end).any()) else _read_varints(data, at)
        if read is None:
            return None
        rows[k], at = read
    return rows.view(np.int64), at


def _skip_labels(data: npt.NDArray[np.uint8], cursor: IntArray, end: IntArray) -> bool:
    """Whether what follows each sample's two packed fields is only Label fields filling it exactly."""
    for _ in range(_MAX_LABEL_ROUNDS):
        open_ = np.flatnonzero(cursor < end)
        if not len(open_):
            return True
        if len(open_) < len(cursor):  # else every sample has one more label: no gathers
            cursor, end = cursor[open_], end[open_]
        label = _field(data, cursor, end)
        # A label's last byte ends a varint, as everything in a Sample does.
        if label is None or not bool((label[0] == _TAG_LABEL).all()) or not bool((data[label[2] - 1] < 0x80).all()):
            return False
        cursor = label[2]
    return False


class _Fields:
    """The varint fields of a run of messages, grouped by message, in order."""

    __slots__ = ("number", "owner", "value")

    def __init__(self, owner: IntArray, number: IntArray, value: IntArray) -> None:
        self.owner = owner  # index of the message holding each field (nondecreasing)
        self.number = number  # field number
        self.value = value  # uint64

    def columns(self, n: int, width: int) -> IntArray:
        """Fields 1..width-1 of each message as a (n, width) uint64 array (absent: 0; the last one wins).

        One scatter when no message holds one of these fields twice (what every writer does, in whatever
        field order); otherwise one `last` per field."""
        wanted = self.number < width
        if bool(wanted.all()):  # (Go's locations and lines hold no other fields: no selection)
            picked: slice | IntArray = slice(None)
        else:
            picked = np.flatnonzero(wanted)
        key = self.owner[picked] * width + self.number[picked]
        if bool((key[1:] > key[:-1]).all()):  # fields in number order (what writers do): none repeated
            unique = True
        else:
            seen = np.full(n * width, -1, dtype=np.int64)
            order = np.arange(len(key))
            seen[key] = order
            unique = bool((seen[key] == order).all())  # a repeated field would lose a write here
        if unique:
            out = np.zeros(n * width, dtype=np.uint64)
            out[key] = self.value[picked]
            return out.reshape(n, width)
        return np.stack([self.last(k, n) for k in range(width)], axis=1)

    def last(self, number: int, n: int) -> IntArray:
        """Each message's field `number` (the last one wins, as in protobuf; absent: 0), as uint64."""
        picked = np.flatnonzero(self.number == number)
        owners = self.owner[picked]
        last = picked[np.append(owners[1:] != owners[:-1], True)] if len(picked) else picked
        out = np.zeros(n, dtype=np.uint64)
        out[self.owner[last]] = self.value[last]
        return out


def _tokens(data: npt.NDArray[np.uint8]) -> tuple[IntArray, IntArray] | None:
    """Every varint of `data` (which must end with a byte below 0x80): (values, start byte of each)."""
    last = np.flatnonzero(data < 0x80)
    first = np.empty_like(last)
    first[0] = 0
    np.add(last[:-1], 1, out=first[1:])
    extra = last - first  # bytes before the last one
    top = int(extra.max())
    if top >= 9 and (top > 9 or bool((data[last[extra == 9]] > 1).any())):
        return None  # wider than 64 bits
    values = data[last].astype(np.uint64)  # the last byte of a varint holds its highest 7 bits
    if top:
        wide = np.flatnonzero(extra != 0)  # (nonzero on a bool array is several times faster than on int64)
        at = last[wide]
        for k in range(1, top + 1):  # Horner over the lower bytes of the few wider varints
            if k > 1:
                keep = extra[wide] >= k
                wide, at = wide[keep], at[keep]
            values[wide] = (values[wide] << _U7) | (data[at - k] & 0x7F)
    return values, first


def _table_fields(
    region: npt.NDArray[np.uint8], n_locs: int, n_fns: int
) -> tuple[_Fields, _Fields, _Fields, IntArray] | None:
    """The varint fields of each location, of each function and of each line, and the location holding
    each line, from `region`: Profile.location and Profile.function fields, back to back.

    Locations, lines and functions hold only varints, so the region is a stream of (tag, value) varint
    pairs (a length-delimited field's tag and length are a pair too, its body more pairs), read in one
    pass with no walk per field: a pair is top level when it starts past every body opened before it,
    and inside a line when it starts before the end of a line opened before it. Anything else (other
    wire types, a top-level field that is not a location or function, a length-delimited field in a
    function or a line, bodies not made of whole pairs) returns None.
    """
    data = np.concatenate((region, np.zeros(1, dtype=np.uint8)))  # the zero: every varint ends inside
    size = len(region)
    tokens = _tokens(data)
    if tokens is None:
        return None
    values, first = tokens
    if len(values) % 2 == 0:  # the padding is the last token: the rest must pair up
        return None
    tag, value, pos = values[0:-1:2], values[1::2], first[0:-1:2]
    pair_end = first[2::2]  # where each pair ends (the next pair, or the padding)
    wire = tag & np.uint64(7)
    is_open = wire == 2
    if not bool((is_open | (wire == 0)).all()):
        return None
    # What protobuf rejects in these messages, so that reading them here validates them (their bytes may
    # not have been parsed as messages): field 0, tags above 32 bits, tags and lengths over 5 bytes.
    value_at = first[1::2]
    if bool((tag < np.uint64(8)).any()) or bool((tag > np.uint64(0xFFFFFFFF)).any()):
        return None
    if bool((value_at - pos > 5).any()):
        return None
    opens = np.flatnonzero(is_open)
    if bool((value[opens] > np.uint64(_MAX_LENGTH)).any()) or bool((pair_end[opens] - value_at[opens] > 5).any()):
        return None
    body_end = pair_end[opens] + value[opens].astype(np.int64)
    pair_at = np.zeros(len(data), dtype=bool)  # whether a pair starts at each byte
    pair_at[pos] = True
    pair_at[size] = True  # the padding
    if bool((body_end > size).any()) or not bool(pair_at[body_end].all()):
        return None  # a body not made of whole pairs
    # Top level: past every body opened before (each open's index in `opens`: how many opened before it).
    opened_before = np.cumsum(is_open) - is_open
    top = pos >= np.concatenate(([0], np.maximum.accumulate(body_end)))[opened_before]
    top_at = np.flatnonzero(top)
    top_tag = tag[top_at]
    is_loc = top_tag == _TAG_LOCATION
    if not bool(is_open[top_at].all()) or not bool((is_loc | (top_tag == _TAG_FUNCTION)).all()):
        return None
    top_end = body_end[opened_before[top_at]]
    if int(top_end[-1]) != size or not bool((pos[top_at[1:]] == top_end[:-1]).all()):
        return None
    if int(is_loc.sum()) != n_locs or len(top_at) != n_locs + n_fns:
        return None
    # Each pair's top-level message, as a location or function index (the tables come in their order).
    message = np.cumsum(top) - 1
    in_loc = is_loc[message]
    rank = np.where(is_loc, np.cumsum(is_loc) - 1, np.cumsum(~is_loc) - 1)[message]
    # Lines: the opens below the top level, only in locations, each ending inside its location.
    nested = is_open & ~top
    line_at = np.flatnonzero(nested)
    if not bool(in_loc[line_at].all()) or not bool((tag[line_at] == _TAG_LOCATION).all()):
        return None
    line_end = body_end[opened_before[line_at]]
    if not bool((line_end <= top_end[message[line_at]]).all()):
        return None
    lines_before = np.cumsum(nested) - nested
    inner = pos < np.concatenate(([0], np.maximum.accumulate(line_end)))[lines_before]
    if bool((inner & is_open).any()):
        return None  # a length-delimited field in a line
    fields = ~top & ~nested & ~inner
    loc_at = np.flatnonzero(fields & in_loc)
    fn_at = np.flatnonzero(fields & ~in_loc)
    inner_at = np.flatnonzero(inner)
    number = (tag >> np.uint64(3)).astype(np.int64)
    return (
        _Fields(rank[loc_at], number[loc_at], value[loc_at]),
        _Fields(rank[fn_at], number[fn_at], value[fn_at]),
        _Fields(lines_before[inner_at] - 1, number[inner_at], value[inner_at]),
        rank[line_at],
    )


def _starts_run(owner: IntArray) -> npt.NDArray[np.bool_]:
    """Whether each entry of a nondecreasing `owner` is the first of its run (np.insert costs more)."""
    return np.concatenate((np.ones(min(1, len(owner)), dtype=bool), owner[1:] != owner[:-1]))


def _lookup(ids: IntArray, wanted: IntArray) -> IntArray:
    """Table index of each wanted id as `Resolver` finds it (`table[id - 1]` first, else the last entry
    with that id), or -1 where `Resolver` would raise (absent, or its id map meets a zero id)."""
    index = wanted.astype(np.int64) - 1
    direct = (index >= 0) & (index < len(ids))
    direct[direct] = ids[index[direct]] == wanted[direct]
    if bool(direct.all()):
        return index
    other = np.flatnonzero(~direct)
    index[other] = -1
    if len(ids) and not bool((ids == 0).any()):
        order = np.argsort(ids, kind="stable")  # equal ids in table order: the last one is found
        at = np.searchsorted(ids[order], wanted[other], side="right") - 1
        found = (at >= 0) & (ids[order[at.clip(0)]] == wanted[other])
        index[other[found]] = order[at[found]]
    return index


class _Tables:
    """Each location's user frame (the first line not in a system frame) as a (name, file) key and a line,
    and the key naming its leaf frame (its first line, or its address when it has no lines).

    `user_key` is -1 for locations made only of system frames and -2 for locations `Resolver` would reject.
    Every line's key and number are kept too, in location order, for `fallback`.
    When location ids are small numbers (Go numbers them 1..N), `key_by_id`, `line_by_id` and
    `leaf_by_id` hold the same per location id (-3: no such location), so a walk reads them in one gather.
    """

    __slots__ = (
        "dense",
        "ids",
        "key_by_id",
        "leaf_by_id",
        "leaf_key",
        "line_by_id",
        "line_count",
        "line_key",
        "line_no",
        "line_start",
        "pairs",
        "user_key",
        "user_line",
    )

    def __init__(
        self,
        ids: IntArray,
        pairs: dict[tuple[str, str], int],
        user_key: IntArray,
        user_line: IntArray,
        leaf_key: IntArray,
        lines: tuple[IntArray, IntArray, IntArray],
    ) -> None:
        self.ids = ids  # location id of each table entry
        self.pairs = pairs  # (function name, file) -> key
        self.user_key = user_key
        self.user_line = user_line
        self.leaf_key = leaf_key
        self.line_key, self.line_no, self.line_count = lines  # each line's key and number; lines per location
        self.line_start: list[int] | None = None
        self.key_by_id: IntArray | None = None
        self.line_by_id: IntArray | None = None
        self.leaf_by_id: IntArray | None = None
        top = int(ids.max()) if len(ids) else 0
        self.dense = top == len(ids) and bool((ids == np.arange(1, top + 1, dtype=np.uint64)).all())
        if self.dense:  # Go: 1..N
            self.key_by_id = np.concatenate(([-3], user_key, [-3]))
            self.line_by_id = np.concatenate(([0], user_line, [0]))
            self.leaf_by_id = np.concatenate(([-3], leaf_key, [-3]))
        elif top <= 4 * len(ids) + 64:  # dense enough for tables indexed by id (the last entry: any larger id)
            index = np.append(_lookup(ids, np.arange(top + 1, dtype=np.uint64)), -1)
            self.key_by_id = np.append(user_key, -3)[index]
            self.line_by_id = np.append(user_line, 0)[index]
            self.leaf_by_id = np.append(leaf_key, -3)[index]

    def user(self, wanted: IntArray) -> tuple[IntArray, IntArray]:
        """(user key, user line) of each wanted location id; key -3 where `Resolver` would raise."""
        if self.key_by_id is not None and self.line_by_id is not None:
            at = np.minimum(wanted, np.uint64(len(self.key_by_id) - 1))
            return self.key_by_id[at], self.line_by_id[at]
        index = _lookup(self.ids, wanted)
        return np.append(self.user_key, -3)[index], np.append(self.user_line, 0)[index]

    def fallback(self, stacks: Sequence[Sequence[int]], names: list[tuple[str, str]]) -> list[tuple[int, int]]:
        """(key, line) of the frame `fallback_frame` gives each stack of valid locations (the walk read
        each): the innermost one outside the runtime and the `sync` primitives, else the leaf frame. One
        lookup for all stacks."""
        index = _lookup(self.ids, np.array([loc for stack in stacks for loc in stack], dtype=np.uint64))
        line_start = np.concatenate(([0], np.cumsum(self.line_count)))
        spans = zip(line_start[index].tolist(), line_start[index + 1].tolist(), index.tolist(), strict=True)
        found = []
        for stack in stacks:
            first: tuple[int, int] | None = None
            frame: tuple[int, int] | None = None
            for start, stop, j in islice(spans, len(stack)):
                if frame is not None:
                    continue  # (the rest of this stack's spans)
                if start == stop:  # unsymbolised: its address frame
                    frames: Iterable[tuple[int, int]] = ((int(self.leaf_key[j]), 0),)
                else:
                    frames = zip(self.line_key[start:stop].tolist(), self.line_no[start:stop].tolist(), strict=True)
                for key, line in frames:
                    first = first or (key, line)
                    if not is_primitive_frame(names[key][0]):
                        frame = (key, line)
                        break
            frame = frame or first
            if frame is None:  # (no location: not a stack the walk leaves unresolved)
                raise ValueError("fallback of an empty stack")
            found.append(frame)
        return found

    def leaf(self, wanted: IntArray) -> IntArray:
        """The leaf frame's key of each wanted location id (-3 where `Resolver` would raise)."""
        if self.leaf_by_id is not None:
            return self.leaf_by_id[np.minimum(wanted, np.uint64(len(self.leaf_by_id) - 1))]
        return np.append(self.leaf_key, -3)[_lookup(self.ids, wanted)]


def _tables(
    profile: profile_pb2.ProfileLazySamples | profile_pb2.ProfileLazyParts,
    region: npt.NDArray[np.uint8],
    n_locs: int,
    n_fns: int,
) -> _Tables | None:
    parsed = _table_fields(region, n_locs, n_fns) if len(region) else None
    if parsed is None:
        return None
    locs, fns, lines, line_owner = parsed
    loc_cols = locs.columns(n_locs, 4)
    fn_cols = fns.columns(n_fns, 5)
    line_cols = lines.columns(len(line_owner), 3)
    n_lines = len(line_owner)
    strings = list(profile.string_table)
    # Functions: `Resolver` rejects one whose name or file is not a string index.
    names, files = fn_cols[:, 2].view(np.int64), fn_cols[:, 4].view(np.int64)
    fn_ok = (names >= 0) & (names < len(strings)) & (files >= 0) & (files < len(strings))
    pairs: dict[tuple[str, str], int] = {}
    fn_key = np.full(n_fns, -1, dtype=np.int64)
    if bool(fn_ok.all()):
        fn_key[:] = [
            pairs.setdefault((strings[n], strings[f]), len(pairs))
            for n, f in zip(names.tolist(), files.tolist(), strict=True)
        ]
    else:
        ok = np.flatnonzero(fn_ok)
        fn_key[ok] = [
            pairs.setdefault((strings[n], strings[f]), len(pairs))
            for n, f in zip(names[ok].tolist(), files[ok].tolist(), strict=True)
        ]
    # Lines: the key of their function (-1 when the reference is bad) and whether it is a system frame.
    line_fn = _lookup(fn_cols[:, 1], line_cols[:, 1])
    line_key = np.append(fn_key, -1)[line_fn]
    system = np.fromiter(starmap(is_system_frame, pairs), dtype=bool, count=len(pairs))
    line_user = ~np.append(system, True)[line_key]
    # Locations: the first user line; a location with a bad line is rejected even when not reached.
    user = np.flatnonzero(line_user)
    owners = line_owner[user]
    first = user[_starts_run(owners)]
    user_key = np.full(n_locs, -1, dtype=np.int64)
    user_line = np.zeros(n_locs, dtype=np.int64)
    user_key[line_owner[first]] = line_key[first]
    user_line[line_owner[first]] = line_cols[:, 2].view(np.int64)[first]
    user_key[line_owner[line_key < 0]] = -2
    # The leaf frame: each location's first line.
    leaf_key = np.full(n_locs, -3, dtype=np.int64)
    if n_lines:
        starts = np.flatnonzero(_starts_run(line_owner))
        leaf_key[line_owner[starts]] = line_key[starts]
    line_count = np.bincount(line_owner, minlength=n_locs)
    no_lines = np.flatnonzero(line_count == 0)
    addresses = loc_cols[:, 3][no_lines].tolist()
    for i, address in zip(no_lines.tolist(), addresses, strict=True):  # unsymbolised: named by address
        name = f"0x{address:x}"
        key = pairs.setdefault((name, ""), len(pairs))
        user_key[i] = -1 if is_system_frame(name, "") else key
        leaf_key[i] = key
    every_line = (line_key, line_cols[:, 2].view(np.int64), line_count)
    return _Tables(loc_cols[:, 1].copy(), pairs, user_key, user_line, leaf_key, every_line)


def attribute_fast(
    scan: _Scan,
    columns: tuple[int, int, int],
    profile: profile_pb2.ProfileLazySamples | profile_pb2.ProfileLazyParts,
    parts: Parts,
    top: int,
) -> tuple[dict[str, SiteAcc], float, float, float] | None:
    """Charge every nonzero sample to its user frame, as the sample-by-sample path does; None to leave
    the profile to it (bad references, odd table encodings). Only sites that can rank in the `top` are
    returned (all those tied with the last one included), which is all the summary keeps."""
    value_index, count_index, cumulative_index = columns
    values = scan.values[value_index]
    counts = scan.values[count_index]
    cumulative = exact_sum(scan.values[cumulative_index]) if cumulative_index >= 0 else 0.0
    nonzero = np.flatnonzero(values != 0)  # (faster than on the int64 values)
    nz_values = values[nonzero]
    nz_counts = counts[nonzero]
    tables = _tables(profile, scan.data[scan.tables_at :], parts.n_locs, parts.n_fns)
    if tables is None or not _known_locations(scan, tables):
        return None  # (the sample-by-sample path names the sample and the id)
    if not len(nonzero):
        return {}, 0.0, 0.0, cumulative
    walked = _walk(scan, nonzero, tables)
    if walked is None:
        return None
    leaves, keys, lines = walked
    names = list(tables.pairs)
    unresolved = np.flatnonzero(keys < 0)  # only runtime/library frames: rare
    if len(unresolved):
        parse = profile_pb2.Sample.FromString
        stacks = [parse(scan.sample(i)).location_id for i in nonzero[unresolved].tolist()]
        frames = np.array(tables.fallback(stacks, names), dtype=np.int64).reshape(-1, 2)
        keys[unresolved], lines[unresolved] = frames[:, 0], frames[:, 1]
    sites = _sites(nz_values, nz_counts, keys, lines, leaves, names, top)
    if sites:  # leaf frames named from the tables (each leaf was read, so its location is valid)
        accs = list(sites.values())
        leaf_keys = tables.leaf(np.array([acc.leaf_location for acc in accs], dtype=np.uint64)).tolist()
        for acc, key in zip(accs, leaf_keys, strict=True):
            if key >= 0:
                acc.leaf_name = names[key][0]
    return sites, exact_sum(nz_values), exact_sum(nz_counts), cumulative


def _known_locations(scan: _Scan, tables: _Tables) -> bool:
    """Whether every location id of every sample is in the table, not only those the walk reads (up to
    the user frame); False also for encodings this does not judge (the sample-by-sample path decides).

    Go's tables (ids 1..N) are checked in byte space, decoding only the varints of the highest ids: no
    id is 0 (no zero byte: a zero id or a padded varint); a varint as long as N's (or longer) whose last
    byte reaches N's last byte is read, the others are below N. These bytes are looked for in all the
    samples' bytes, then kept where they are ids. Other tables decode every id.
    """
    data = scan.data[: scan.tables_at]
    n = len(tables.ids)
    if not tables.dense or n == 0:
        tokens = _tokens(data[_id_bytes(scan, len(data))])
        return tokens is not None and bool((tables.leaf(tokens[0]) != -3).all())
    width = (n.bit_length() + 6) // 7  # bytes of n's varint
    size = len(data) - width + 1
    cont = data >= 0x80
    reach = data[width - 1 :] >= (n >> (7 * (width - 1)))  # (what the last byte of n's varint holds)
    for k in range(width - 1):
        reach &= cont[k : k + size]
    start = np.flatnonzero(reach)  # (a varint longer than n's is one too: its byte `width - 1` continues)
    value = np.zeros(len(start), dtype=np.uint64)
    for k in range(width):
        value |= (data[start + k] & 0x7F).astype(np.uint64) << np.uint64(7 * k)
    # Above n, or longer than n's varint; only those in the ids matter (the others are in the values).
    start = start[(value > np.uint64(n)) | cont[start + width - 1]]
    many = len(start) > len(scan.loc_start)  # alike bytes in the values (small tables): select by a mask
    if bool((_id_bytes(scan, len(data))[start] if many else _in_ids(scan, start)).any()):
        return False
    # Zero ids: every value 0 ends with a zero byte; if the samples hold no other, no id is 0.
    return not (
        len(data) - np.count_nonzero(data) > scan.values.size - np.count_nonzero(scan.values)
        and bool(_in_ids(scan, np.flatnonzero(data == 0)).any())
    )


def _id_bytes(scan: _Scan, size: int) -> npt.NDArray[np.bool_]:
    """Whether each of the first `size` bytes of the samples is a byte of a location id."""
    bounds = np.empty(2 * len(scan.loc_start) + 1, dtype=np.int64)
    bounds[0] = 0
    bounds[1::2] = scan.loc_start
    bounds[2::2] = scan.loc_end
    pattern = np.zeros(len(bounds), dtype=bool)
    pattern[1::2] = True
    return np.repeat(pattern, np.diff(bounds, append=size))


def _in_ids(scan: _Scan, at: IntArray) -> npt.NDArray[np.bool_]:
    """Whether each of the sorted byte positions `at` is in a sample's location ids."""
    sample = np.searchsorted(scan.loc_start, at, side="right") - 1
    return (sample >= 0) & (at < scan.loc_end[np.maximum(sample, 0)])


def _walk(scan: _Scan, samples: IntArray, tables: _Tables) -> tuple[IntArray, IntArray, IntArray] | None:
    """(leaf location id, user frame key (-1: none), user frame line) of each of `samples`.

    Stacks are walked one level at a time from the leaf for all samples at once; at each level only the
    samples still without a user frame read their next location id. Most resolve in a level or two; the
    few left (often with a dozen system frames to cross) read the rest of their stacks in one go, rather
    than paying a level's fixed cost per frame.
    """
    pos = scan.loc_start[samples]
    end = scan.loc_end[samples]
    read = _read_varints(scan.data, pos)
    if read is None:
        return None
    leaves, pos = read
    keys, lines = tables.user(leaves)
    if bool((keys < -1).any()):
        return None  # a bad reference (or a location `Resolver` rejects): the sample-by-sample path names it
    pending = np.flatnonzero((keys < 0) & (pos < end))
    while len(pending) > len(samples) // 8:
        read = _read_varints(scan.data, pos[pending])
        if read is None:
            return None
        ids, pos[pending] = read
        key, line = tables.user(ids)
        if bool((key < -1).any()):
            return None
        found = key >= 0
        keys[pending[found]] = key[found]
        lines[pending[found]] = line[found]
        pending = pending[~found]
        pending = pending[pos[pending] < end[pending]]
    if len(pending) and not _walk_rest(scan.data, pos[pending], end[pending], pending, tables, keys, lines):
        return None
    return leaves, keys, lines


def _walk_rest(
    data: npt.NDArray[np.uint8],
    pos: IntArray,
    end: IntArray,
    pending: IntArray,
    tables: _Tables,
    keys: IntArray,
    lines: IntArray,
) -> bool:
    """Finish the walk of the `pending` samples, whose remaining location ids are the varints at
    `pos`..`end`: all are read at once, and each sample takes its first user frame. False where a bad
    reference comes before it (what the level-by-level walk would stop at)."""
    size = end - pos
    into = np.cumsum(size) - size  # where each sample's bytes start in the gathered run
    run = data[np.arange(int(into[-1] + size[-1])) + np.repeat(pos - into, size)]
    tokens = _tokens(run)  # (each stretch ends a varint: the scan checked each stack's last byte)
    if tokens is None:
        return False
    ids, at = tokens
    owner = np.repeat(np.arange(len(size)), size)[at]  # the pending sample of each id
    key, line = tables.user(ids)
    stop = np.flatnonzero(key != -1)  # a user frame, or a bad reference
    stop_owner = owner[stop]
    first = stop[_starts_run(stop_owner)]
    if bool((key[first] < -1).any()):
        return False
    keys[pending[owner[first]]] = key[first]
    lines[pending[owner[first]]] = line[first]
    return True


def _sites(
    values: IntArray,
    counts: IntArray,
    keys: IntArray,
    lines: IntArray,
    leaves: IntArray,
    pairs: list[tuple[str, str]],
    top: int,
) -> dict[str, SiteAcc]:
    """Sites are functions: frames of one function (other lines, even other files) share a site, whose
    file and line follow its largest sample (the first of equal ones), as the sample-by-sample path does."""
    site_names = list(dict.fromkeys([name for name, _file in pairs]))  # numbered in order of first key
    if len(site_names) == len(pairs):  # each name in one file (the usual case): a site per key
        site_of_sample = keys
    else:
        site_of = {name: i for i, name in enumerate(site_names)}
        site_of_sample = np.array([site_of[name] for name, _file in pairs], dtype=np.int64)[keys]
    n_sites = len(site_names)
    site_values = np.bincount(site_of_sample, weights=values, minlength=n_sites)
    site_counts = np.bincount(site_of_sample, weights=counts, minlength=n_sites)
    # Each site's largest value, then the first sample holding it (no sort: unbuffered scatters).
    peaks = np.full(n_sites, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(peaks, site_of_sample, values)
    at_peak = np.flatnonzero(values == peaks[site_of_sample])
    n = len(values)
    first_best = np.full(n_sites, n, dtype=np.int64)
    np.minimum.at(first_best, site_of_sample[at_peak], at_peak)
    present = np.flatnonzero(first_best < n)  # the sites with samples (names of every function got a number)
    best = first_best[present]  # first largest sample of each site
    sites: dict[str, SiteAcc] = {}
    ranked = np.flatnonzero(site_values[present] >= _top_threshold(site_values[present], top))
    site_at, best = present[ranked], best[ranked]
    for site, key, line, value, leaf, total, count in zip(  # (lists: no numpy scalar per site)
        site_at.tolist(),
        keys[best].tolist(),
        lines[best].tolist(),
        values[best].tolist(),
        leaves[best].tolist(),
        site_values[site_at].tolist(),
        site_counts[site_at].tolist(),
        strict=True,
    ):
        name, file = pairs[key]
        acc = SiteAcc((name, file, line), value, 0, leaf)
        acc.value = total
        acc.count = count
        sites[site_names[site]] = acc
    return sites


def _top_threshold(values: npt.NDArray[Any], top: int) -> float:
    """The `top`-th largest of `values` (-inf when there are no more than `top`; +inf when `top` is 0)."""
    if len(values) <= top:
        return -np.inf
    if top <= 0:
        return np.inf
    return float(-np.partition(-values, top - 1)[top - 1])
