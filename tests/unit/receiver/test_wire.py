"""The C reader of protobuf wire data (`receiver/decode/_wire.c`): what it decodes, and that malformed or
hostile bytes give a `WireError` naming the byte and the fault, never a read past the buffer."""

from __future__ import annotations

import random

import numpy as np
import pytest
from google.protobuf.message import DecodeError

from otel_leakproc.receiver.decode import _wire
from otel_leakproc.receiver.decode._wire import WireError
from otel_leakproc.receiver.proto import profile_pb2


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _delimited(number: int, body: bytes) -> bytes:
    return _tag(number, 2) + _varint(len(body)) + body


def _spans(*pairs: tuple[int, int]) -> bytes:
    return np.array(pairs, dtype=np.int64).reshape(-1, 2).tobytes()


def _int64s(raw: bytearray) -> list[int]:
    return np.frombuffer(raw, dtype=np.int64).tolist()


def _uint64s(raw: bytearray) -> list[int]:
    return np.frombuffer(raw, dtype=np.uint64).tolist()


def _repeated(
    data: bytes, spans: bytes, numbers: tuple[int, ...] = (1,), messages: tuple[int, ...] = ()
) -> list[tuple[list[int], list[int]]]:
    """Each number's (values, counts per span) as lists."""
    return [
        (_uint64s(values), _int64s(counts)) for values, counts in _wire.repeated_varints(data, spans, numbers, messages)
    ]


# ---- what it reads -----------------------------------------------------------------------------------


def test_index_finds_each_numbers_fields_in_order_and_steps_over_the_others() -> None:
    data = (
        _tag(1, 0)
        + _varint(300)  # a varint
        + _delimited(2, b"ab")
        + _tag(9, 1)
        + bytes(8)  # fixed64
        + _delimited(4, b"")
        + _tag(9, 5)
        + bytes(4)  # fixed32
        + _delimited(2, b"xyz")
    )
    twos, fours, sevens = _wire.index(data, 0, len(data), (2, 4, 7))
    assert _int64s(twos) == [5, 7, 25, 28]
    assert data[5:7] == b"ab"
    assert data[25:28] == b"xyz"
    assert _int64s(fours) == [18, 18]
    assert _int64s(sevens) == []
    inner = _wire.index(data, 3, 7, (2,))[0]  # (a part of the data: offsets stay the data's)
    assert _int64s(inner) == [5, 7]


def test_index_of_nothing() -> None:
    assert [bytes(a) for a in _wire.index(b"", 0, 0, (1, 2))] == [b"", b""]
    assert _wire.index(b"\x08\x01", 0, 2, ()) == ()


def test_repeated_varints_merge_packed_and_unpacked_fields_in_order_per_message() -> None:
    first = (
        _tag(1, 0)
        + _varint(7)
        + _delimited(1, _varint(1) + _varint(2**64 - 1) + _varint(128))
        + _tag(1, 0)
        + _varint(0)
    )
    second = _delimited(2, _varint(5)) + _delimited(3, _tag(1, 0) + _varint(1))  # no field 1; a label
    third = b""
    data = first + second + third
    spans = _spans((0, len(first)), (len(first), len(first) + len(second)), (len(data), len(data)))
    ids, values = _repeated(data, spans, (1, 2), (3,))
    assert ids == ([7, 1, 2**64 - 1, 128, 0], [5, 0, 0])
    assert values == ([5], [0, 1, 0])


def test_repeated_varints_equal_protobufs_parse_of_random_samples() -> None:
    rng = random.Random(15)
    samples = []
    for _ in range(300):
        sample = profile_pb2.Sample(
            location_id=[rng.choice([1, 127, 128, 16383, 16384, 2**35, 2**64 - 1]) for _ in range(rng.randrange(0, 9))],
            value=[rng.choice([0, 1, -1, 2**62, -(2**63)]) for _ in range(rng.randrange(0, 4))],
        )
        for _ in range(rng.randrange(0, 3)):
            sample.label.add(key=rng.randrange(9), num=rng.randrange(-5, 5))
        samples.append(sample.SerializeToString())
    data = b"".join(samples)
    ends = np.cumsum([len(s) for s in samples])
    spans = np.stack([ends - [len(s) for s in samples], ends], axis=1).astype(np.int64)
    ids, values = _repeated(data, spans.tobytes(), (1, 2), (3,))
    parsed = [profile_pb2.Sample.FromString(s) for s in samples]
    assert ids[0] == [i for p in parsed for i in p.location_id]
    assert ids[1] == [len(p.location_id) for p in parsed]
    assert [v - 2**64 if v >= 2**63 else v for v in values[0]] == [v for p in parsed for v in p.value]
    assert values[1] == [len(p.value) for p in parsed]


def test_an_empty_packed_run_reads_nothing() -> None:
    """Empty packed fields, in the last of 8 numbers too: the arrays a number's values are decoded into
    are kept between calls and made on first use, so for a position no call used before there is none
    yet (a first version read the null pointer there)."""
    data = _delimited(8, b"") + _delimited(1, b"") + _tag(2, 0) + _varint(3)
    spans = _spans((0, len(data)), (0, 0))
    assert _repeated(data, spans, (1, 3, 4, 5, 6, 7, 9, 8)) == [([], [0, 0])] * 8
    assert _repeated(data, spans, (2,)) == [([3], [1, 0])]


def test_table_takes_the_last_of_a_field_and_lists_the_nested_ones() -> None:
    one = _tag(1, 0) + _varint(5) + _tag(3, 0) + _varint(9) + _tag(1, 0) + _varint(6) + _tag(8, 0) + _varint(1)
    one += _delimited(4, b"\x08\x02") + _delimited(4, b"")
    two = b""
    data = one + two
    columns, nested = _wire.table(data, _spans((0, len(one)), (len(one), len(one))), 4, 4)
    assert np.frombuffer(columns, dtype=np.uint64).reshape(2, 4).tolist() == [[0, 6, 0, 9], [0, 0, 0, 0]]
    body = len(one) - 6
    assert _int64s(nested) == [0, body + 2, body + 4, 0, len(one), len(one)]


def test_the_arrays_are_writable() -> None:
    values, counts = _wire.repeated_varints(b"\x08\x01", _spans((0, 2)), (1,), ())[0]
    array = np.frombuffer(values, dtype=np.uint64)
    array[0] = 7
    assert np.frombuffer(counts, dtype=np.int64).tolist() == [1]


# ---- bounds --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x08", "byte 1: truncated varint"),  # the value of field 1 is missing
        (b"\x08\x80", "byte 1: truncated varint"),
        (b"\x80", "byte 0: truncated varint"),  # the tag itself
        (b"\x08" + b"\xff" * 9 + b"\x02", "byte 1: varint wider than 64 bits"),  # a tenth byte above 1
        (b"\x08" + b"\xff" * 10 + b"\x01", "byte 1: varint wider than 64 bits"),  # eleven bytes
        (b"\x12\x05abc", "byte 1: length 5 runs past the end of its message (3 bytes left)"),
        (b"\x12\xff\xff\xff\xff\x0f", "byte 1: length 4294967295 runs past the end of its message (0 bytes left)"),
        (b"\x12\x80\x80\x80\x80\x80\x01", "byte 1: length wider than 32 bits"),  # a 6-byte length
        (b"\x80\x80\x80\x80\x80\x01", "byte 0: tag wider than 32 bits"),
        (b"\x07\x01", "byte 0: field number 0"),
        (b"\x0b\x0c", "byte 0: group (wire type 3 or 4): not read"),
        (b"\x0e", "byte 0: unknown wire type (6 or 7)"),
        (b"\x09\x00\x00", "byte 0: fixed-width field runs past the end of its message"),
        (b"\x20\x01", "byte 0: field 4 has wire type 0, expected 2 (length-delimited)"),
    ],
)
def test_index_rejects_malformed_fields(data: bytes, message: str) -> None:
    with pytest.raises(WireError) as info:
        _wire.index(data, 0, len(data), (4,))
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_a_message_ends_where_its_span_does() -> None:
    """A length reaching past the span (not past the buffer) is refused: each message is bounded alone."""
    data = b"\x0a\x04\x01\x02" + b"\x0a\x01\x03"
    with pytest.raises(WireError, match="byte 1: length 4 runs past the end of its message"):
        _wire.repeated_varints(data, _spans((0, 4), (4, 7)), (1,), ())
    with pytest.raises(WireError, match="byte 3: truncated varint"):
        _wire.repeated_varints(b"\x0a\x02\x01\x80\x08\x01", _spans((0, 4)), (1,), ())  # a packed run cut short
    with pytest.raises(WireError, match="byte 3: truncated varint"):
        _wire.index(b"\x08\x01\x08\x96\x01", 0, 4, ())  # (the varint at byte 3 would end at byte 4)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x0a\x03\x01\x02\x80", "byte 4: truncated varint"),  # a packed run's last varint unfinished
        (b"\x0a\x0b" + b"\xff" * 10 + b"\x01", "byte 2: varint wider than 64 bits"),
        (b"\x0d\x00\x00\x00\x00", "byte 0: field 1 has wire type 5, expected 0 or 2 (a varint or a packed run)"),
        (b"\x18\x01", "byte 0: field 3 has wire type 0, expected 2 (a message)"),
        (b"\x1a\x02\x08\x80", "byte 3: truncated varint"),  # a label's own field
        (b"\x1a\x01\x0f", "byte 2: unknown wire type (6 or 7)"),
    ],
)
def test_repeated_varints_rejects_malformed_samples(data: bytes, message: str) -> None:
    with pytest.raises(WireError) as info:
        _wire.repeated_varints(data, _spans((0, len(data))), (1,), (3,))
    assert str(info.value) == message


def test_table_rejects_fields_it_does_not_read() -> None:
    with pytest.raises(WireError, match=r"byte 0: field 2 has wire type 2, expected 0 \(a varint\)"):
        _wire.table(b"\x12\x00", _spans((0, 2)), 4, 4)
    with pytest.raises(WireError, match="byte 0: field 1 has wire type 1"):
        _wire.table(b"\x09" + bytes(8), _spans((0, 9)), 4, 0)
    with pytest.raises(WireError, match="byte 3: length 9 runs past the end"):
        _wire.table(b"\x08\x01\x22\x09\x08", _spans((0, 5)), 4, 4)


@pytest.mark.parametrize("pair", [(-1, 2), (3, 2), (0, 9), (2**62, 2**63 - 1)])
def test_spans_outside_the_data_are_refused(pair: tuple[int, int]) -> None:
    with pytest.raises(WireError, match=r"span 0: \[.*\) is not inside the 4 bytes of data"):
        _wire.repeated_varints(b"\x08\x01\x08\x02", _spans(pair), (1,), ())
    with pytest.raises(WireError, match=r"span 0: .* is not inside"):
        _wire.table(b"\x08\x01\x08\x02", _spans(pair), 2, 0)
    with pytest.raises(WireError, match="is not inside the 4 bytes of data"):
        _wire.index(b"\x08\x01\x08\x02", pair[0], pair[1], ())


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="spans must hold int64 \\(start, end\\) pairs"):
        _wire.repeated_varints(b"", b"\x00" * 8, (1,), ())
    with pytest.raises(ValueError, match="at most 8 field numbers"):
        _wire.index(b"", 0, 0, tuple(range(1, 10)))
    with pytest.raises(ValueError, match="0 is not a field number"):
        _wire.repeated_varints(b"", b"", (0,), ())
    with pytest.raises(ValueError, match=r"width must be 1\.\.64"):
        _wire.table(b"", b"", 0, 0)
    with pytest.raises(TypeError):
        _wire.index("text", 0, 0, ())  # type: ignore[arg-type]


def test_random_bytes_give_an_answer_or_a_wire_error() -> None:
    """Whatever the bytes (and the spans over them), a call returns or raises WireError; what it returns
    for a well-formed message agrees with protobuf."""
    rng = random.Random(7)
    answered = 0
    for _ in range(3000):
        data = bytes(
            rng.choice([0x08, 0x0A, 0x12, 0x1A, 0x80, 0xFF, 0x01, 0x00, rng.randrange(256)])
            for _ in range(rng.randrange(0, 24))
        )
        start = rng.randrange(len(data) + 1)
        spans = _spans((start, rng.randrange(start, len(data) + 1)), (0, len(data)))
        for name, args in (
            ("index", (data, 0, len(data), (1, 2, 3))),
            ("repeated_varints", (data, spans, (1, 2), (3,))),
            ("table", (data, spans, 4, 4)),
        ):
            try:
                getattr(_wire, name)(*args)
                answered += 1
            except WireError:
                pass
        try:
            sample = profile_pb2.Sample.FromString(data)
        except DecodeError:
            continue
        try:
            ids = _repeated(data, _spans((0, len(data))), (1,), (3,))[0][0]
        except WireError:
            continue  # (what protobuf takes as unknown fields, e.g. a label with a group, is refused here)
        assert ids == list(sample.location_id)
    assert answered > 200
