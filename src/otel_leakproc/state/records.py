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

Checkpoint payload: u32 length of the head, the head (codec value: {"q": seq of the last point in it,
"k": key, "r": resource, "report": the detector's report state as JSON text}), then the detector's
`to_state()`: u32 length and the codec value deflated, with the raw bytes of its base64 strings (the
detector's arrays, deflated already) taken out as blobs, then the list of blobs (a codec value).
Restore reads only heads up front; the detector is rebuilt when first needed.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from otel_leakproc.model import GoroutineGroup, ProfileKind, ProfileSummary, SeriesKey, SiteValue
from otel_leakproc.state.codec import (
    _DICT,
    _INT,
    CodecError,
    _Encoder,
    _varint,
    decode_head,
    decode_value,
    encode_value,
    frame,
)

_U32 = struct.Struct("<I")
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
        encoder = _Encoder(bytearray(), None)
        encoder.strings["q"] = 0
        encoder.put_str("k")
        encoder.put(key_to_plain(key), "$.k")
        encoder.put_str("r")
        encoder.put(resource, "$.r")
        if len(_POINT_HEADS) >= MAX_POINT_HEADS:
            _POINT_HEADS.clear()
        head = _POINT_HEADS[cache_key] = (bytes(encoder.out), tuple(encoder.strings))  # strings in order
    middle, strings = head
    out = bytearray(_POINT_HEAD_TAGS)
    encoder = _Encoder(out, None)
    encoder.put(seq, "$.q")
    out += middle
    encoder.strings = dict(zip(strings, range(len(strings)), strict=True))
    encoder.put_str("s")
    encoder.put(summary_to_plain(summary), "$.s")
    return bytes(out)


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
    """`compress=False` for a record that only crosses a local socket (deflating it costs more than sending
    the bytes saved)."""
    return frame(RecordType.POINT, point_payload(seq, key, resource, summary), compress=compress)


def point_route(payload: bytes | memoryview) -> tuple[int, SeriesKey]:
    """A point record's sequence number and series, without decoding its summary."""
    head = decode_head(payload, 2)
    if len(head) != 2 or not isinstance(head[0], int):
        raise CodecError("point: expected a sequence number and a series key first")
    return head[0], key_from_plain(head[1])


def point_from_payload(payload: bytes | memoryview) -> PointRecord:
    value = decode_value(payload)
    if not isinstance(value, dict):
        raise CodecError("point: expected a mapping")
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
    seq: int
    key: SeriesKey
    resource: dict[str, str]
    report: dict[str, Any] | None  # the detector's own report state, as `to_state()["report"]`


def checkpoint_payload(seq: int, key: SeriesKey, resource: dict[str, str], state: dict[str, Any]) -> bytes:
    # The report rides in the head as JSON text: restore reads every head at start-up, and C's JSON parser
    # reads a report ten times faster than the pure-Python codec (the same report is in the state too).
    report = json.dumps(state.get("report"), separators=(",", ":"))
    head = encode_value({"q": seq, "k": key_to_plain(key), "r": resource, "report": report})
    # The detector's packed arrays (deflated already) go apart as blobs; only the rest is deflated.
    blobs: list[bytes] = []
    main = zlib.compress(encode_value(state, blobs), 1)
    return b"".join((_U32.pack(len(head)), head, _U32.pack(len(main)), main, encode_value(blobs)))


def checkpoint_frame(seq: int, key: SeriesKey, resource: dict[str, str], state: dict[str, Any]) -> bytes:
    return frame(RecordType.CHECKPOINT, checkpoint_payload(seq, key, resource, state), compress=False)


def checkpoint_head(payload: bytes | memoryview) -> CheckpointHead:
    view = memoryview(payload)
    if len(view) < 4:
        raise CodecError("checkpoint: shorter than its head length")
    (n,) = _U32.unpack_from(view)
    value = decode_value(view[4 : 4 + n])
    if not isinstance(value, dict):
        raise CodecError("checkpoint head: expected a mapping")
    try:
        seq, key, resource = value["q"], key_from_plain(value["k"]), value["r"]
        report = json.loads(value["report"])
    except KeyError as exc:
        raise CodecError(f"checkpoint head: missing {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise CodecError(f"checkpoint head: bad report: {exc}") from exc
    if not isinstance(seq, int) or not isinstance(resource, dict) or not isinstance(report, dict | None):
        raise CodecError("checkpoint head: bad seq, resource or report")
    return CheckpointHead(seq, key, {str(k): str(v) for k, v in resource.items()}, report)


def checkpoint_route(payload: bytes | memoryview) -> tuple[int, SeriesKey]:
    """A checkpoint's sequence number and series, without reading the rest."""
    view = memoryview(payload)
    if len(view) < 4:
        raise CodecError("checkpoint: shorter than its head length")
    (n,) = _U32.unpack_from(view)
    head = decode_head(view[4 : 4 + n], 2)
    if len(head) != 2 or not isinstance(head[0], int):
        raise CodecError("checkpoint head: expected a sequence number and a series key first")
    return head[0], key_from_plain(head[1])


def checkpoint_state(payload: bytes | memoryview) -> dict[str, Any]:
    """The detector state of a checkpoint payload (the expensive half, read when the series is needed)."""
    view = memoryview(payload)
    (n,) = _U32.unpack_from(view)
    start = 4 + n
    if len(view) < start + 4:
        raise CodecError("checkpoint state: cut short")
    (m,) = _U32.unpack_from(view, start)
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
