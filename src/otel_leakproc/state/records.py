"""The records both state backends store: a point (one accepted profile of one series) and a series
checkpoint. Each is one frame of `codec` and self-contained: a point carries its series key, resource and
the whole summary with every name in it, so whoever replays it (this process after a restart, or another
replica reading a shared stream) needs nothing else.

Point payload (codec value): {"q": seq, "k": [tenant, service, instance, kind], "r": {resource},
"s": {summary fields}}; the summary's sites and groups are stored by column (all functions, all files,
all values...), so the codec packs the numbers and interns the names. Fields are read back by the
dataclasses' own field names, so a field added to `ProfileSummary`, `SiteValue` or `GoroutineGroup`
travels without a change here (a record missing it gets the field's default; a summary field that holds
its default is left out).

Names by id (`NameTable`, `NameBook`): the journal writes a site's naming fields (function, file, line,
leaf; a group's state, blocking frame, function, file, line, creator) and a resource once, in a NAMES
record, and points refer to them by a stable id: 31 bits of the BLAKE2b hash of the fields, the same
whoever writes them. A point written so has "n": 1, its resource as an id in "r", and its sites'
and groups' naming columns replaced by one "id" column. A writer defines each id at most once per journal
segment, before the first point using it, and starts over in each new segment (after a compaction the
points left in the journal only use names defined after it); a reader resolves a point's ids against the
NAMES records of its own segment. An id that would name two different things in one segment (a hash
collision) is not used: that point is written with its names inline, as every record is without a table.

Checkpoint payload: the magic b"\xffCB5", u32 length of the head, the head (codec value: {"q": seq of the
last point in it, "k": key, "r": resource, "report": the detector's report state as JSON text, deflated}),
then the rest of the detector's `to_state(arrays=True)`: u32 length and its JSON text deflated, each numpy
array replaced by null and listed in "\u0000columns" ([path of keys, dtype, length], and a 4th field: 1 for
an array stored as int64 differences (int64 arrays, and float64 arrays of whole numbers), 2 for a plane
Huffman-coded after the block); then u32 length and the column block (codec `Columns`: the arrays
byte-shuffled, laid out by `Columns.layout`, deflated once, large byte planes in deflate blocks of their
own); then, to the end, the Huffman-coded planes one after the other in index order (`_huffman.c`: a grid's
value differences by width, noise that deflate codes slower and a little larger). Reading it is one
C-level JSON parse, one inflate, one `np.frombuffer` view per array and one C pass per coded plane; writing
it, one C walk over the state (`_columns.take_arrays`: the arrays to the block, each index entry's text from a
plan kept by path, name and dtype), the JSON texts written by C (`_json.dumps`, the bytes `json.dumps`
writes) and the head's series part kept by series. Layout
CB4 (the release before) had no coded planes and its block ran to the end; CB3 held the report as plain
JSON text, no differences, and offsets in the index. Both are read alike.
Restore reads only heads up front; the detector is rebuilt when first needed. Checkpoints written before
(no magic: u32 head length, head, u32 length and the deflated state whose base64 strings were taken out
as blobs, then the list of blobs) are still read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
from isal import isal_zlib

from otel_leakproc.model import GoroutineGroup, ProfileKind, ProfileSummary, SeriesKey, SiteValue
from otel_leakproc.state import _huffman
from otel_leakproc.state._columns import join_strings, take_arrays
from otel_leakproc.state._json import dumps
from otel_leakproc.state.codec import (
    _COLUMN_DTYPE,
    _DICT,
    _INT,
    _LITTLE_ENDIAN,
    _SHUFFLE_MIN,
    COLUMN_DTYPES,
    INFLATE_ERRORS,
    CodecError,
    Columns,
    _Encoder,
    _varint,
    decode_head,
    decode_value,
    encode_value,
    frame,
)

_U32 = struct.Struct("<I")
JSON_OR_INFLATE_ERRORS: tuple[type[Exception], ...] = (*INFLATE_ERRORS, ValueError)
_REPORT_ERRORS: tuple[type[Exception], ...] = (*JSON_OR_INFLATE_ERRORS, TypeError)
_REPORT_OR_KEY_ERRORS: tuple[type[Exception], ...] = (*_REPORT_ERRORS, KeyError)
_CHECKPOINT_MAGIC = b"\xffCB5"  # as a u32 head length, far past MAX_PAYLOAD: older payloads never start so
# Layouts read, by magic: CB4 has no Huffman-coded planes, CB3 the report as text and no delta columns.
_CHECKPOINT_LAYOUTS = {_CHECKPOINT_MAGIC: 5, b"\xffCB4": 4, b"\xffCB3": 3}
_DELTA = 1  # a column index entry's 4th field: int64 differences (of whole numbers, for a float64 array)
_HUFFMAN = 2  # ... a byte plane of noise, Huffman-coded after the column block (`_huffman.c`)
# Planes so coded (CB5): a grid's value differences of one width, `values[str(width)]`, uint8 up to 8 bits
# (`processor.history.values_by_width`): noise below 2**width, where deflate finds nothing to match.
_NOISE_WIDTHS = {str(width): width for width in range(1, 9)}
_ITEMSIZE = {d: np.dtype(d).itemsize for d in COLUMN_DTYPES}
_SUMMARY_FIELDS = tuple(f.name for f in dataclasses.fields(ProfileSummary))
# Fields left out of a point record when they hold their default (read back as it): most profiles have no
# goroutine groups, no "other", a pprof source. Saves their names and values, about 150 bytes a record.
_SUMMARY_DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(ProfileSummary) if f.default is not dataclasses.MISSING
}
_SITE_FIELDS = tuple(f.name for f in dataclasses.fields(SiteValue))
_GROUP_FIELDS = tuple(f.name for f in dataclasses.fields(GoroutineGroup))


class RecordType(IntEnum):
    POINT = 1  # one accepted profile of one series
    CHECKPOINT = 2  # one series' whole state
    PROBE = 3  # written to test that the journal is writable again; ignored on replay
    CHECKPOINT_HEAD = 4  # first record of a checkpoint file: which journal follows it
    NAMES = 5  # site, group and resource names that the points after it refer to by id


def key_to_plain(key: SeriesKey) -> list[str]:
    return [key.tenant, key.service, key.instance, key.kind.value]


def key_from_plain(value: Any) -> SeriesKey:
    if not isinstance(value, list) or len(value) != 4 or not all(isinstance(v, str) for v in value):
        raise CodecError(f"series key: expected 4 strings, got {value!r}")
    return SeriesKey(value[0], value[1], value[2], ProfileKind(value[3]))


def series_id(key: SeriesKey) -> str:
    """A series' stable identity as one string (checkpoint index key; a Redis hash field later)."""
    return "\x1f".join(key_to_plain(key))


# -- points -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PointRecord:
    """A journal record: one accepted profile's point for one series, with its sequence number."""

    seq: int
    key: SeriesKey
    resource: dict[str, str]
    summary: ProfileSummary


def _columns(items: tuple[Any, ...], names: tuple[str, ...]) -> dict[str, list[Any]]:
    return {name: [getattr(item, name) for item in items] for name in names}


def _rows(columns: Any, cls: type[Any], names: tuple[str, ...], what: str) -> tuple[Any, ...]:
    if not isinstance(columns, dict):
        raise CodecError(f"summary.{what}: expected columns")
    present = [n for n in names if n in columns]
    unknown = set(columns) - set(names)
    if unknown:
        raise CodecError(f"summary.{what}: unknown fields {sorted(unknown)} (written by a newer release?)")
    lengths = {len(columns[n]) for n in present}
    if len(lengths) > 1:
        raise CodecError(f"summary.{what}: columns of different lengths")
    n = lengths.pop() if lengths else 0
    return tuple(cls(**{name: columns[name][i] for name in present}) for i in range(n))


def summary_to_plain(summary: ProfileSummary) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _SUMMARY_FIELDS:
        value = getattr(summary, name)
        default = _SUMMARY_DEFAULTS.get(name, dataclasses.MISSING)
        if type(value) is type(default) and value == default and str(value) == str(default):  # -0.0 is kept
            continue
        if name == "sites":
            value = _columns(value, _SITE_FIELDS)
        elif name == "groups":
            value = _columns(value, _GROUP_FIELDS)
        elif name == "kind":
            value = value.value
        elif name == "labels":
            value = dict(value)
        out[name] = value
    return out


def summary_from_plain(plain: Any) -> ProfileSummary:
    if not isinstance(plain, dict):
        raise CodecError("summary: expected a mapping")
    unknown = set(plain) - set(_SUMMARY_FIELDS)
    if unknown:
        raise CodecError(f"summary: unknown fields {sorted(unknown)} (written by a newer release?)")
    fields = dict(plain)
    try:
        fields["kind"] = ProfileKind(fields["kind"])
        if "sites" in fields:
            fields["sites"] = _rows(fields["sites"], SiteValue, _SITE_FIELDS, "sites")
        if "groups" in fields:
            fields["groups"] = _rows(fields["groups"], GoroutineGroup, _GROUP_FIELDS, "groups")
        return ProfileSummary(**fields)
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"summary: {type(exc).__name__}: {exc}") from exc


# A point payload is the dict {"q": seq, "k": key, "r": resource, "s": summary}. What "k" and "r" encode to
# depends only on the key and the resource (the strings written before them are "q" alone), and they repeat
# on every point of a series: their bytes and the codec's string table after them are kept, by key and
# resource, for the next point (the same bytes `encode_value` of the whole dict writes; a bounded cache).


def _point_start() -> bytes:
    out = bytearray((_DICT,))
    _varint(out, 4)
    _Encoder(out, None).put_str("q")
    return bytes(out)


_POINT_HEAD_TAGS = _point_start()  # a dict of 4 entries, then the key "q"
_POINT_HEADS: dict[tuple[SeriesKey, tuple[tuple[str, str], ...]], tuple[bytes, tuple[str, ...]]] = {}
# Series whose heads are kept (about 0.4 KiB each: the default `state.max_series` of 10,000 fits); beyond,
# the cache starts over.
MAX_POINT_HEADS = 16384


def point_payload(seq: int, key: SeriesKey, resource: dict[str, str], summary: ProfileSummary) -> bytes:
    """The codec value {"q": seq, "k": key, "r": resource, "s": summary} (see the module docstring)."""
    cache_key = (key, tuple(resource.items()))
    head = _POINT_HEADS.get(cache_key)
    if head is None:
        if len(_POINT_HEADS) >= MAX_POINT_HEADS:
            _POINT_HEADS.clear()
        head = _POINT_HEADS[cache_key] = _series_part(key, resource, "s")
    middle, strings = head
    out, encoder = _after_seq(seq, middle)
    encoder.strings = dict(zip(strings, range(len(strings)), strict=True))
    encoder.put(summary_to_plain(summary), "$.s")
    return bytes(out)


def _series_part(key: SeriesKey, resource: dict[str, str], last: str) -> tuple[bytes, tuple[str, ...]]:
    """What a head {"q": seq, "k": key, "r": resource, `last`: ...} encodes to from "k" through the key
    `last`, and the codec's string table then (its strings in order): a point's and a checkpoint's."""
    encoder = _Encoder(bytearray(), None)
    encoder.strings["q"] = 0
    encoder.put_str("k")
    encoder.put(key_to_plain(key), "$.k")
    encoder.put_str("r")
    encoder.put(resource, "$.r")
    encoder.put_str(last)
    return bytes(encoder.out), tuple(encoder.strings)


def _after_seq(seq: int, middle: bytes) -> tuple[bytearray, _Encoder]:
    """A head's bytes up to its last value: the dict of 4 entries, "q", `seq`, then `middle` (`_series_part`);
    and an encoder writing after them."""
    out = bytearray(_POINT_HEAD_TAGS)
    encoder = _Encoder(out, None)
    encoder.put(seq, "$.q")
    out += middle
    return out, encoder


def renumbered_point_frame(payload: bytes | memoryview, seq: int) -> bytes | None:
    """The point record of `payload` (a point payload `point_payload` wrote, e.g. received from another
    `serve` process) with sequence number `seq` instead of its own: the same bytes `point_frame` would
    write for the point it holds, without encoding it again. None when `payload` does not start as
    `point_payload` starts (then encode the point)."""
    view = memoryview(payload)
    start = len(_POINT_HEAD_TAGS)
    if view[:start] != _POINT_HEAD_TAGS or len(view) <= start or view[start] != _INT:
        return None
    end = start + 1
    while end < len(view) and view[end] & 0x80:  # the old number's varint
        end += 1
    if end >= len(view):
        return None
    out = bytearray(_POINT_HEAD_TAGS)
    _Encoder(out, None).put(seq, "$.q")
    out += view[end + 1 :]
    return frame(RecordType.POINT, bytes(out))


def point_frame(
    seq: int, key: SeriesKey, resource: dict[str, str], summary: ProfileSummary, *, compress: bool = True
) -> bytes:
    """A self-contained point record: every name inline. `compress=False` for a record that only crosses a
    local socket (deflating it costs more than sending the bytes saved)."""
    return frame(RecordType.POINT, point_payload(seq, key, resource, summary), compress=compress)


# -- names by id ---------------------------------------------------------------------------------------

_SITE_NAMES = ("function", "file", "line", "leaf")  # what names a site (the rest are its numbers)
_GROUP_NAMES = ("state", "blocking", "function", "file", "line", "creator")
_NAME_FIELDS = {"sites": _SITE_NAMES, "groups": _GROUP_NAMES}
NameKey = tuple[str, tuple[Any, ...]]  # (what: "sites", "groups" or "r", its naming fields)


def name_id(what: str, fields: tuple[Any, ...]) -> int:
    """The stable 31-bit id of a site's, group's or resource's naming fields."""
    text = json.dumps([what, *fields], separators=(",", ":"), ensure_ascii=False)
    # 31 bits: the codec packs a list of them as int32.
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little") & 0x7FFFFFFF


class NameTable:
    """The writer's side: which ids this journal segment defines. `encode` returns the frames of one
    upload's points (a NAMES record first when they use new names); `commit` after they were written,
    `abort` when the write failed (the new names were not written either)."""

    def __init__(self) -> None:
        self.ids: dict[NameKey, int] = {}
        self.taken: dict[int, NameKey] = {}
        self._pending: dict[NameKey, int] = {}
        self._pending_taken: dict[int, NameKey] = {}

    def _ref(self, name: NameKey) -> int | None:
        """The id of `name`, defining it (pending) if new; None on a collision."""
        found = self.ids.get(name)
        if found is None:
            found = self._pending.get(name)
        if found is not None:
            return found
        new = name_id(name[0], name[1])
        if new in self.taken or new in self._pending_taken:
            return None
        self._pending[name] = new
        self._pending_taken[new] = name
        return new

    def encode(self, points: list[tuple[int, SeriesKey, dict[str, str], ProfileSummary]]) -> list[bytes]:
        defined = len(self._pending)
        bodies = []
        for seq, key, resource, summary in points:
            body = self._point(seq, key, resource, summary)
            bodies.append(body if body is not None else point_payload(seq, key, resource, summary))
        frames = [frame(RecordType.POINT, b) for b in bodies]
        fresh = list(self._pending.items())[defined:]
        if fresh:
            frames.insert(0, names_frame(fresh))
        return frames

    def _point(self, seq: int, key: SeriesKey, resource: dict[str, str], summary: ProfileSummary) -> bytes | None:
        mark = (dict(self._pending), dict(self._pending_taken))
        plain = summary_to_plain(summary)
        resource_id = self._ref(("r", tuple(sorted(resource.items()))))
        ok = resource_id is not None
        for what, fields in _NAME_FIELDS.items():
            columns = plain.get(what)
            if columns is None or not ok:
                continue
            refs = []
            for row in zip(*(columns[f] for f in fields), strict=True):
                ref = self._ref((what, row))
                if ref is None:
                    ok = False
                    break
                refs.append(ref)
            if ok:
                plain[what] = {"id": refs, **{k: v for k, v in columns.items() if k not in fields}}
        if not ok:  # a collision: this point goes inline, and defines nothing
            self._pending, self._pending_taken = mark
            return None
        return encode_value({"q": seq, "k": key_to_plain(key), "n": 1, "r": resource_id, "s": plain})

    def commit(self) -> None:
        self.ids.update(self._pending)
        self.taken.update(self._pending_taken)
        self.abort()

    def abort(self) -> None:
        self._pending, self._pending_taken = {}, {}


def names_frame(names: list[tuple[NameKey, int]]) -> bytes:
    """A NAMES record: per kind of name, the ids and the naming fields by column."""
    value: dict[str, Any] = {}
    for what in ("sites", "groups"):
        rows = [(i, fields) for (w, fields), i in names if w == what]
        if rows:
            columns: dict[str, list[Any]] = {"id": [i for i, _ in rows]}
            for n, field in enumerate(_NAME_FIELDS[what]):
                columns[field] = [fields[n] for _, fields in rows]
            value[what] = columns
    resources = [(i, fields) for (w, fields), i in names if w == "r"]
    if resources:
        value["r"] = {"id": [i for i, _ in resources], "resource": [dict(fields) for _, fields in resources]}
    return frame(RecordType.NAMES, encode_value(value))


class NameBook:
    """The reader's side: the names a journal segment defined, by id (`add` each NAMES record in order)."""

    def __init__(self) -> None:
        self.names: dict[str, dict[int, Any]] = {"sites": {}, "groups": {}, "r": {}}

    def add(self, payload: bytes | memoryview) -> None:
        value = decode_value(payload)
        if not isinstance(value, dict):
            raise CodecError("names: expected a mapping")
        for what, fields in _NAME_FIELDS.items():
            columns = value.get(what)
            if columns is None:
                continue
            ids = columns.get("id") if isinstance(columns, dict) else None
            if not isinstance(ids, list) or any(len(columns.get(f, ())) != len(ids) for f in fields):
                raise CodecError(f"names.{what}: columns of different lengths")
            for n, i in enumerate(ids):
                self.names[what][i] = tuple(columns[f][n] for f in fields)
        r = value.get("r")
        if r is not None:
            if not isinstance(r, dict) or len(r.get("id", ())) != len(r.get("resource", ())):
                raise CodecError("names.r: ids and resources differ in length")
            for i, resource in zip(r["id"], r["resource"], strict=True):
                self.names["r"][i] = resource

    def resolve(self, value: dict[str, Any]) -> dict[str, Any]:
        """A point payload written by id, with its names put back (as an inline record holds them)."""
        try:
            resource = self.names["r"][value["r"]]
            plain = dict(value["s"])
            for what, fields in _NAME_FIELDS.items():
                columns = plain.get(what)
                if columns is None:
                    continue
                rows = [self.names[what][i] for i in columns["id"]]
                named = {f: [row[n] for row in rows] for n, f in enumerate(fields)}
                plain[what] = {**named, **{k: v for k, v in columns.items() if k != "id"}}
        except (KeyError, TypeError) as exc:
            raise CodecError(f"point: name id {exc} is not defined in its journal segment") from exc
        return {**value, "r": resource, "s": plain}


def point_route(payload: bytes | memoryview) -> tuple[int, SeriesKey]:
    """A point record's sequence number and series, without decoding its summary."""
    head = decode_head(payload, 2)
    if len(head) != 2 or not isinstance(head[0], int):
        raise CodecError("point: expected a sequence number and a series key first")
    return head[0], key_from_plain(head[1])


def point_from_payload(payload: bytes | memoryview, names: NameBook | None = None) -> PointRecord:
    """A point record read back; `names`: the NAMES of its journal segment (for a point written by id)."""
    value = decode_value(payload)
    if not isinstance(value, dict):
        raise CodecError("point: expected a mapping")
    if value.get("n"):
        if names is None:
            raise CodecError("point: written with name ids, read without its journal's names")
        value = names.resolve(value)
    try:
        seq, key, resource = value["q"], key_from_plain(value["k"]), value["r"]
    except KeyError as exc:
        raise CodecError(f"point: missing {exc}") from exc
    if not isinstance(seq, int) or not isinstance(resource, dict):
        raise CodecError("point: bad seq or resource")
    return PointRecord(seq, key, {str(k): str(v) for k, v in resource.items()}, summary_from_plain(value.get("s")))


# -- checkpoints --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckpointHead:
    """A checkpoint record's head: the series, its resource and report state, and the sequence it covers."""

    seq: int
    key: SeriesKey
    resource: dict[str, str]
    report: dict[str, Any] | None  # the detector's own report state, as `to_state()["report"]`


def checkpoint_payload(seq: int, key: SeriesKey, resource: dict[str, str], state: dict[str, Any]) -> bytes:
    # The report rides in the head as deflated JSON: restore reads every head at start-up, and C's JSON parser
    # reads a report ten times faster than the pure-Python codec (the report is kept once, here).
    report = _json_bytes(state.get("report"))
    head = _checkpoint_head(seq, key, resource, isal_zlib.compress(report, 1))
    columns = Columns()  # the history's arrays (a state from `to_state(arrays=True)`)
    index: list[str] = []
    rest = _take_arrays({k: v for k, v in state.items() if k != "report"}, (), columns, index)  # report: in the head
    rest.pop(_COLUMNS_KEY, None)  # (the index is that key, last)
    main = isal_zlib.compress(_with_index(_json_bytes(rest), index), 1)  # a zlib stream
    block = columns.pack()
    parts = [_CHECKPOINT_MAGIC, _U32.pack(len(head)), head, _U32.pack(len(main)), main, _U32.pack(len(block)), block]
    return b"".join(parts + columns.coded)


# A checkpoint's head is the codec value {"q": seq, "k": key, "r": resource, "report": bytes}: as a point's, its
# bytes from "k" to the key "report" depend only on the key and the resource, and are kept for the next
# checkpoint of the series (the same bytes `encode_value` of the whole dict writes; a bounded cache).
_CHECKPOINT_HEADS: dict[tuple[SeriesKey, tuple[tuple[str, str], ...]], bytes] = {}
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def _checkpoint_head(seq: int, key: SeriesKey, resource: dict[str, str], report: bytes) -> bytes:
    cache_key = (key, tuple(resource.items()))
    try:
        middle = _CHECKPOINT_HEADS.get(cache_key)
        hashable = True
    except TypeError:  # a resource value that is not hashable (not a str): encoded as it is
        middle, hashable = None, False
    if not hashable or type(seq) is not int or not _INT64_MIN <= seq <= _INT64_MAX:
        # (a seq past int64 is written as a string, which would move the table's numbers after it)
        return encode_value({"q": seq, "k": key_to_plain(key), "r": resource, "report": report})
    if middle is None:
        if len(_CHECKPOINT_HEADS) >= MAX_POINT_HEADS:
            _CHECKPOINT_HEADS.clear()
        middle = _CHECKPOINT_HEADS[cache_key] = _series_part(key, resource, "report")[0]
    out, encoder = _after_seq(seq, middle)
    encoder.put(report, "$.report")  # (bytes: no string of the table)
    return bytes(out)


_COLUMNS_KEY = "\0columns"
# `json.dumps` with these separators, without its set-up per call; a state holds no cycles (a detector's
# `to_state` builds it afresh), so the encoder need not look for them: the same text.
_to_json = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
_COLUMNS_JSON = _to_json(_COLUMNS_KEY) + ":"


def _json_bytes(value: Any) -> bytes:
    """`_to_json(value).encode()`, written by `_json.dumps` when it takes `value` (plain data of exact types:
    all a detector's state holds), in one buffer: the same bytes, without a str for every key and number."""
    text = dumps(value)
    return text if text is not None else _to_json(value).encode()


def index_json(index: list[str]) -> str:
    """The column index `_take_arrays` wrote (each entry as its JSON text), as the JSON text of the list."""
    return f"[{','.join(index)}]"


def _with_index(text: bytes, index: list[str]) -> bytes:
    """`text` (the JSON of a mapping) with the column index `index` as its last key, `_COLUMNS_KEY`: the JSON
    of the mapping with that key added, without encoding each entry's path and dtype again (ASCII: `_to_json`
    escapes the rest)."""
    tail = f"{',' if len(text) > 2 else ''}{_COLUMNS_JSON}{index_json(index)}}}".encode()
    return b"".join((text[:-1], tail))


# Values `_take_arrays` copies as they are, without looking for a part to finish (`resolve_state`).
_PLAIN_TYPES = frozenset((int, float, str, bool, type(None)))
_COLUMN_DTYPE_SET = frozenset(COLUMN_DTYPES)
_DTYPE_STR = {np.dtype(d): d for d in COLUMN_DTYPES}  # `dtype.str` of these, without building the string
_DIFFERENCE_DTYPES = frozenset(("<i8", "<f8"))  # arrays stored as int64 differences (float64: when whole)
_PLAIN_ARRAY = 0  # how `_take_arrays` stores an array (`_array_plan`): as it is; ...
_DIFFERENCES = -1  # as int64 differences when it has 4 elements or more (a float64 array: when whole); a
# width (1 to 8): Huffman-coded (when it has any elements)

# What `_take_arrays` does with an array of one name, place and dtype, kept (the same for every checkpoint of
# every series): its index entry's JSON text up to its length ('[["sites","values","4"],"|u1",'), its coding
# (_PLAIN_ARRAY, _DIFFERENCES or a Huffman width), its block keys (`_block_key`) stored as it is and as int64
# differences, and its itemsize. A list of strings has one too, of dtype _STRINGS.
_Plan = tuple[str, int, str, str, int]
_PLANS: dict[tuple[tuple[str, ...], str, Any], _Plan] = {}
_MAX_PLANS = 4096  # beyond (states of many shapes), the cache starts over


def _array_plan(path: tuple[str, ...], name: str, dtype: str) -> _Plan:
    head = _to_json([[*path, name], dtype])[:-1] + ","
    if dtype == _STRINGS:
        return head, _PLAIN_ARRAY, _block_key(name, _STRINGS), "", 1
    coding = _DIFFERENCES if dtype in _DIFFERENCE_DTYPES else _PLAIN_ARRAY
    if dtype == "|u1" and path and path[-1] == "values":
        coding = _NOISE_WIDTHS.get(name, coding)
    return head, coding, _block_key(name, dtype), _block_key(name, "<i8"), _ITEMSIZE[dtype]


def _plan(path: tuple[str, ...], name: str, dtype: Any) -> _Plan:
    """The plan of an array of `dtype` (a numpy dtype; TypeError for one a column block does not hold) or of
    a list of strings (`_STRINGS`) at `path` + `name`."""
    text = dtype if dtype == _STRINGS else _DTYPE_STR.get(dtype) or dtype.str
    if text != _STRINGS and text not in _COLUMN_DTYPE_SET:
        raise TypeError(f"{'.'.join((*path, name))}: an array of dtype {text}")
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.clear()
    plan = _PLANS[path, name, dtype] = _array_plan(path, name, text)
    return plan


def _take_arrays(value: dict[str, Any], path: tuple[str, ...], columns: Columns, index: list[str]) -> dict[str, Any]:
    """`_take_arrays_py` in one call to the C (`_columns.take_arrays`; the same parts, entries and copy) on a
    little-endian machine."""
    if not _LITTLE_ENDIAN:
        return _take_arrays_py(value, path, columns, index)
    lists = (_PLANS, _plan, np.ndarray, columns.parts, columns.planes, columns.keys, columns.coded, index)
    out, added = take_arrays(value, path, (*lists, _huffman.encode, np.ascontiguousarray, _STRINGS))
    columns.size += added
    return out


def _take_arrays_py(value: dict[str, Any], path: tuple[str, ...], columns: Columns, index: list[str]) -> dict[str, Any]:
    """A copy of `value` (nested dicts) with its numpy arrays moved to `columns` (listed in `index`, each entry
    as its JSON text: path, dtype, length, and `_DELTA` for int64 arrays and float64 arrays of whole numbers, of
    4 elements or more, stored as differences: times, totals and counters grow by a few bytes' worth a point;
    `_HUFFMAN` for a grid's value plane of a width up to 8). Arrays of one name and stored dtype share a
    deflate block (`_block_key`): a series' start and its history, say."""
    out: dict[str, Any] = {}
    plans = _PLANS
    append = index.append
    for k, item in value.items():
        kind = type(item)
        if kind in _PLAIN_TYPES:
            out[k] = item
            continue
        v = item
        if kind is not np.ndarray and kind is not dict and kind is not list:
            resolve = getattr(item, "resolve_state", None)
            # A part the detector left for the encoder to finish (in its thread).
            if resolve is not None:
                v = resolve()
                kind = type(v)
            if kind is not np.ndarray and isinstance(v, np.ndarray):
                kind = np.ndarray
            elif kind is not dict and isinstance(v, dict):
                kind = dict
        if kind is np.ndarray:
            plan = plans.get((path, k, v.dtype)) or _plan(path, k, v.dtype)
            if v.ndim != 1:
                raise TypeError(f"{'.'.join((*path, k))}: an array of {v.ndim} dimensions, dtype {v.dtype.str}")
            head, coding, key, delta_key, itemsize = plan
            n = len(v)
            out[k] = None
            if coding > 0 and n:
                columns.coded.append(_huffman.encode(v if v.flags.c_contiguous else np.ascontiguousarray(v), coding))
                append(f"{head}{n},2]")  # _HUFFMAN
            elif coding and n >= 4 and columns.add_differences(v, key=delta_key):
                append(f"{head}{n},1]")  # _DELTA
            else:
                columns.add_plain(v, itemsize, key)
                append(f"{head}{n}]")
        elif kind is dict:
            out[k] = _take_arrays_py(v, (*path, k), columns, index)
        elif kind is list and len(v) >= _STRINGS_MIN and (data := join_strings(v)) is not None:
            head, _, key, _, _ = plans.get((path, k, _STRINGS)) or _plan(path, k, _STRINGS)
            columns.add_bytes(data, key=key)
            append(f"{head}{len(v)},{len(data)}]")
            out[k] = None
        else:
            out[k] = v
    return out


_STRINGS = "str"  # a column index entry of a list of strings: [path, "str", count, bytes] (UTF-8, joined by NUL)
_STRINGS_MIN = 8  # lists of strings this long go to the column block: a split there is faster than JSON


def resolve_state(value: Any) -> Any:
    """`value` (a `to_state(arrays=True)`) with every part the detector left for the encoder finished
    (`resolve_state`): what `checkpoint_frame` encodes, for encoding one state many times (benchmarks)."""
    resolve = getattr(value, "resolve_state", None)
    if resolve is not None:
        return resolve_state(resolve())
    if isinstance(value, dict):
        return {k: resolve_state(v) for k, v in value.items()}
    return value


def _block_key(name: str, stored: str) -> str:
    return f"{name}/{stored}"


def _layout_offsets(index: list[list[Any]]) -> list[int]:
    """Where each entry of a CB4 or CB5 column index starts in the block: `Columns.layout` of each entry's
    size and key (`_block_key`, here the pair it joins), in one pass. The parts of a key share a slot where its
    first part came, the others have one each; an entry's offset is its slot's start plus what came before it
    in the slot. A Huffman-coded plane (not in the block: they follow it, in index order) is given 0."""
    slot_sizes: list[int] = []
    slots: dict[tuple[str, str], int] = {}
    slot_of: list[int] = []  # each entry's slot (-1: not in the block, whose start is 0 below)
    at_of: list[int] = []  # and its offset in it
    itemsizes = _ITEMSIZE
    for entry in index:
        dtype = entry[1]
        if len(entry) > 3:
            if entry[3] == _HUFFMAN:  # after the block, one after the other: no offset
                slot_of.append(-1)
                at_of.append(0)
                continue
            if dtype == _STRINGS:
                size = entry[3]
                key: tuple[str, str] | None = (entry[0][-1], dtype)
            else:  # int64 differences
                n = entry[2]
                size = n * 8
                key = None if n >= _SHUFFLE_MIN else (entry[0][-1], "<i8")
        else:
            if dtype == _STRINGS:
                raise IndexError(f"column {entry[0]}: a string column without its size")
            item = itemsizes[dtype]
            n = entry[2]
            size = n * item
            key = None if item > 1 and n >= _SHUFFLE_MIN else (entry[0][-1], dtype)
        slot = None if key is None else slots.get(key)
        if slot is None:
            if key is not None:
                slots[key] = len(slot_sizes)
            slot_of.append(len(slot_sizes))
            at_of.append(0)
            slot_sizes.append(size)
        else:
            slot_of.append(slot)
            at_of.append(slot_sizes[slot])
            slot_sizes[slot] += size
    starts = list(itertools.accumulate(slot_sizes, initial=0))
    starts.append(0)  # slot -1
    return [starts[slot] + at for slot, at in zip(slot_of, at_of, strict=True)]


def _put_arrays(value: dict[str, Any], columns: Columns, layout: int, coded: memoryview | None = None) -> None:
    """Put the arrays of `columns` (and, layout 5, of the Huffman-coded planes `coded`) back into `value`
    where its column index says (layouts 4 and 5: the offsets from `Columns.layout`; 3: written in each
    entry)."""
    index = value.pop(_COLUMNS_KEY, None)
    if not isinstance(index, list):
        raise CodecError("checkpoint state: no column index")
    try:
        offsets = _layout_offsets(index) if layout >= 4 else [entry[3] for entry in index]  # CB3: written in
        data = columns.block()
        size = len(data)
        column_dtypes = _COLUMN_DTYPE
        frombuffer = np.frombuffer
        coded_at = 0  # where the next coded plane starts
        deltas: list[tuple[dict[str, Any], str]] = []  # where and name of each delta column
        spans: list[tuple[int, int, bool]] = []  # its length, offset, float64 or not: decoded together below
        for entry, offset in zip(index, offsets, strict=True):
            path, dtype, n = entry[0], entry[1], entry[2]
            if len(path) == 2:  # most are
                where = value[path[0]]
            else:
                where = value
                for k in path[:-1]:
                    where = where[k]
            size_of_entry = len(entry)
            if (size_of_entry == 3 or layout < 4) and dtype != _STRINGS:  # an array as it is or shuffled
                stored = column_dtypes.get(dtype)
                if (
                    stored is not None
                    and (stored.itemsize == 1 or n < _SHUFFLE_MIN)
                    and n >= 0
                    and 0 <= offset <= size - n * stored.itemsize
                ):  # stored as it is (most are): a view of the block, as `get` gives
                    where[path[-1]] = frombuffer(data, stored, n, offset)
                else:  # shuffled, or not in the block (`get` says why)
                    where[path[-1]] = columns.get(dtype, n, offset)
            elif size_of_entry == 4 and entry[3] == _HUFFMAN and layout >= 5 and coded is not None:
                if dtype != "|u1":
                    raise ValueError(f"column {path}: a coded plane of dtype {dtype}")
                plane, used = _huffman.decode(coded[coded_at:], n)  # where it ends is where the next starts
                coded_at += used
                where[path[-1]] = frombuffer(plane, np.uint8)
            elif dtype == _STRINGS:
                if layout < 4:
                    raise ValueError(f"column {path}: a string column in a layout without them")
                strings = columns.text(offset, entry[3]).split("\0")
                if len(strings) != n:
                    raise ValueError(f"column {path}: {len(strings)} strings, not {n}")
                where[path[-1]] = strings
            elif size_of_entry == 4 and entry[3] == _DELTA and dtype in ("<i8", "<f8"):
                deltas.append((where, path[-1]))
                spans.append((n, offset, dtype == "<f8"))
            else:
                raise ValueError(f"column {path}: coding {entry[3:]} of a {dtype} array")
        for (where, name), array in zip(deltas, columns.get_deltas(spans), strict=True):
            where[name] = array
        if coded is not None and coded_at != len(coded):
            raise ValueError(f"{len(coded)} bytes of coded planes, of which the index reads {coded_at}")
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CodecError(f"checkpoint state: bad column index: {exc}") from exc


def decode_index(payload: bytes | memoryview) -> list[list[Any]]:
    """The column index of a checkpoint payload with a column block (benchmarks and tests: how each array
    is stored)."""
    view = memoryview(payload)
    at, layout = _checkpoint_start(view)
    if not layout:
        raise CodecError("checkpoint: no column block")
    (n,) = _U32.unpack_from(view, at)
    (m,) = _U32.unpack_from(view, at + 4 + n)
    index: list[list[Any]] = json.loads(isal_zlib.decompress(view[at + 8 + n : at + 8 + n + m]))[_COLUMNS_KEY]
    return index


def _checkpoint_start(view: memoryview) -> tuple[int, int]:
    """Where a checkpoint payload's head length is, and its layout: 5 (CB5), 4 (CB4: no coded planes), 3
    (CB3, a column block with offsets in its index) or 0 (no column block)."""
    return (4, _CHECKPOINT_LAYOUTS[magic]) if (magic := bytes(view[:4])) in _CHECKPOINT_LAYOUTS else (0, 0)


def checkpoint_frame(seq: int, key: SeriesKey, resource: dict[str, str], state: dict[str, Any]) -> bytes:
    return frame(RecordType.CHECKPOINT, checkpoint_payload(seq, key, resource, state), compress=False)


def checkpoint_head(payload: bytes | memoryview) -> CheckpointHead:
    view = memoryview(payload)
    at, _ = _checkpoint_start(view)
    if len(view) < at + 4:
        raise CodecError("checkpoint: shorter than its head length")
    (n,) = _U32.unpack_from(view, at)
    value = decode_value(view[at + 4 : at + 4 + n])
    if not isinstance(value, dict):
        raise CodecError("checkpoint head: expected a mapping")
    try:
        seq, key, resource, report = value["q"], key_from_plain(value["k"]), value["r"], value["report"]
        report = json.loads(isal_zlib.decompress(report) if isinstance(report, bytes) else report)
    except KeyError as exc:
        raise CodecError(f"checkpoint head: missing {exc}") from exc
    except _REPORT_ERRORS as exc:
        raise CodecError(f"checkpoint head: bad report: {exc}") from exc
    if not isinstance(seq, int) or not isinstance(resource, dict) or not isinstance(report, dict | None):
        raise CodecError("checkpoint head: bad seq, resource or report")
    return CheckpointHead(seq, key, {str(k): str(v) for k, v in resource.items()}, report)


def checkpoint_route(payload: bytes | memoryview) -> tuple[int, SeriesKey]:
    """A checkpoint's sequence number and series, without reading the rest."""
    view = memoryview(payload)
    at, _ = _checkpoint_start(view)
    if len(view) < at + 4:
        raise CodecError("checkpoint: shorter than its head length")
    (n,) = _U32.unpack_from(view, at)
    head = decode_head(view[at + 4 : at + 4 + n], 2)
    if len(head) != 2 or not isinstance(head[0], int):
        raise CodecError("checkpoint head: expected a sequence number and a series key first")
    return head[0], key_from_plain(head[1])


def checkpoint_state(payload: bytes | memoryview) -> dict[str, Any]:
    """The detector state of a checkpoint payload (the expensive half, read when the series is needed)."""
    view = memoryview(payload)
    at, layout = _checkpoint_start(view)
    if len(view) < at + 4:
        raise CodecError("checkpoint state: cut short")
    (n,) = _U32.unpack_from(view, at)
    start = at + 4 + n
    if len(view) < start + 4:
        raise CodecError("checkpoint state: cut short")
    (m,) = _U32.unpack_from(view, start)
    if layout:
        rest = start + 4 + m
        coded = None
        if layout >= 5:  # the column block's length, the block, then the coded planes to the end
            if len(view) < rest + 4:
                raise CodecError("checkpoint state: cut short")
            (b,) = _U32.unpack_from(view, rest)
            if len(view) < rest + 4 + b:
                raise CodecError(f"checkpoint state: a column block of {b} bytes past the payload's end")
            columns = Columns.unpack(view[rest + 4 : rest + 4 + b])
            coded = view[rest + 4 + b :]
        else:
            columns = Columns.unpack(view[rest:])
        try:
            value = json.loads(isal_zlib.decompress(view[start + 4 : start + 4 + m]))
        except JSON_OR_INFLATE_ERRORS as exc:
            raise CodecError(f"checkpoint state: {exc}") from exc
        if not isinstance(value, dict):
            raise CodecError("checkpoint state: expected a mapping")
        _put_arrays(value, columns, layout, coded)
        head = decode_value(view[at + 4 : at + 4 + n])  # the report is kept once, in the head
        try:
            report = head["report"]
            value["report"] = json.loads(isal_zlib.decompress(report) if isinstance(report, bytes) else report)
        except _REPORT_OR_KEY_ERRORS as exc:
            raise CodecError(f"checkpoint head: bad report: {exc}") from exc
        return value
    blobs = decode_value(view[start + 4 + m :])
    if not isinstance(blobs, list) or not all(isinstance(b, bytes) for b in blobs):
        raise CodecError("checkpoint state: bad blob list")
    try:
        raw = zlib.decompress(view[start + 4 : start + 4 + m])
    except zlib.error as exc:
        raise CodecError(f"checkpoint state: {exc}") from exc
    value = decode_value(raw, blobs)
    if not isinstance(value, dict):
        raise CodecError("checkpoint state: expected a mapping")
    return value


def checkpoint_file_head(journal_epoch: int, next_seq: int, series: int) -> bytes:
    payload = encode_value({"journal_epoch": journal_epoch, "next_seq": next_seq, "series": series})
    return frame(RecordType.CHECKPOINT_HEAD, payload)


def probe_frame() -> bytes:
    return frame(RecordType.PROBE, b"")
