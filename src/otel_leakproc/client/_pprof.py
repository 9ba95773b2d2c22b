"""Builds pprof `perftools.profiles.Profile` messages (profile.proto) with the writer in `_wire`.

Field numbers are those of github.com/google/pprof/proto/profile.proto. Locations and functions are
interned: one Location per (file, line, function), one Function per (name, file).
"""

from __future__ import annotations

from collections.abc import Sequence

from otel_leakproc.client._wire import bytes_field, packed_field, string_field, uint_field, varint

# A frame as the client resolved it: (function name, file name, line).
Frame = tuple[str, str, int]


class ProfileBuilder:
    """Accumulates samples and writes one pprof message.

    Args:
        sample_types: (type, unit) pairs, e.g. `[("inuse_objects", "count"), ("inuse_space", "bytes")]`.
        period_type: (type, unit) of the sampling period.
        period: the sampling period (1: every event counted).
    """

    def __init__(self, sample_types: Sequence[tuple[str, str]], period_type: tuple[str, str], period: int) -> None:
        self._strings: dict[str, int] = {"": 0}
        self._functions: dict[tuple[str, str], int] = {}
        self._function_msgs: list[bytes] = []
        self._locations: dict[Frame, int] = {}
        self._location_msgs: list[bytes] = []
        self._samples: list[bytes] = []
        self._n_values = len(sample_types)
        self._sample_types = [self._value_type(t, u) for t, u in sample_types]
        self._period_type = self._value_type(*period_type)
        self._period = period

    def _string(self, text: str) -> int:
        index = self._strings.get(text)
        if index is None:
            index = self._strings[text] = len(self._strings)
        return index

    def _value_type(self, kind: str, unit: str) -> bytes:
        return uint_field(1, self._string(kind)) + uint_field(2, self._string(unit))

    def _location(self, frame: Frame) -> int:
        loc_id = self._locations.get(frame)
        if loc_id is not None:
            return loc_id
        name, file, line = frame
        fn_key = (name, file)
        fn_id = self._functions.get(fn_key)
        if fn_id is None:
            fn_id = self._functions[fn_key] = len(self._functions) + 1
            self._function_msgs.append(
                uint_field(1, fn_id)
                + uint_field(2, self._string(name))
                + uint_field(3, self._string(name))
                + uint_field(4, self._string(file))
            )
        loc_id = self._locations[frame] = len(self._locations) + 1
        line_msg = uint_field(1, fn_id) + uint_field(2, max(line, 0))
        self._location_msgs.append(uint_field(1, loc_id) + bytes_field(4, line_msg))
        return loc_id

    def add(self, stack: Sequence[Frame], values: Sequence[int]) -> None:
        """One sample: `stack` leaf first (pprof order), one value per sample type."""
        if len(values) != self._n_values:
            raise ValueError(f"{len(values)} values for {self._n_values} sample types")
        if not stack:
            stack = (("(unknown)", "", 0),)
        ids = [self._location(frame) for frame in stack]
        self._samples.append(packed_field(1, ids) + bytes_field(2, b"".join(varint(v) for v in values)))

    def encode(self, time_nanos: int, duration_nanos: int) -> bytes:
        """The serialised Profile (not compressed)."""
        parts = [bytes_field(1, vt) for vt in self._sample_types]
        parts.extend(bytes_field(2, s) for s in self._samples)
        parts.extend(bytes_field(4, loc) for loc in self._location_msgs)
        parts.extend(bytes_field(5, fn) for fn in self._function_msgs)
        parts.extend(bytes_field(6, s.encode("utf-8", "replace")) for s in self._strings)
        parts.append(uint_field(9, time_nanos))
        parts.append(uint_field(10, duration_nanos))
        parts.append(bytes_field(11, self._period_type))
        parts.append(uint_field(12, self._period))
        return b"".join(parts)


def push_request(series: Sequence[tuple[Sequence[tuple[str, str]], Sequence[tuple[bytes, str]]]]) -> bytes:
    """A Pyroscope `push.v1.PushRequest`: series of (labels, [(raw pprof, sample id)])."""
    out = []
    for labels, samples in series:
        body = b"".join(bytes_field(1, string_field(1, k) + string_field(2, v)) for k, v in labels)
        body += b"".join(bytes_field(2, bytes_field(1, raw) + string_field(2, sid)) for raw, sid in samples)
        out.append(bytes_field(1, body))
    return b"".join(out)
