"""The Huffman code of a checkpoint's noisy byte planes (`state/_huffman.c`): every plane comes back as it
was, with the bytes it took; the code is near the plane's entropy; and every malformed input is refused with
the reason."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from otel_leakproc.state import _huffman


def _plane(rng: np.random.Generator, width: int, n: int, shape: str) -> bytes:
    top = (1 << width) - 1
    if shape == "uniform":
        values = rng.integers(0, top + 1, n)
    elif shape == "geometric":  # a grid's differences: mostly small
        values = np.minimum(rng.geometric(0.35, n) - 1, top)
    elif shape == "one":
        values = np.full(n, rng.integers(0, top + 1))
    else:  # two values only, one of them rare
        values = np.where(rng.random(n) < 0.01, top, 0)
    return values.astype(np.uint8).tobytes()


@pytest.mark.parametrize("shape", ["uniform", "geometric", "one", "rare"])
def test_every_plane_comes_back_with_the_bytes_it_took(shape: str) -> None:
    rng = np.random.default_rng(12)
    for _ in range(150):
        width = int(rng.integers(1, 9))
        n = int(rng.integers(0, 3000))
        plane = _plane(rng, width, n, shape)
        coded = _huffman.encode(plane, width)
        tail = bytes(rng.integers(0, 256, int(rng.integers(0, 20)), dtype=np.uint8))  # the next plane's bytes
        values, used = _huffman.decode(coded + tail, n)
        assert bytes(values) == plane
        assert used == len(coded)
        assert (coded == b"") == (n == 0)


def test_a_code_is_near_the_plane_entropy_and_limited_to_twelve_bits() -> None:
    rng = np.random.default_rng(3)
    plane = _plane(rng, 7, 20000, "geometric")
    counts = np.bincount(np.frombuffer(plane, np.uint8), minlength=128)
    p = counts[counts > 0] / len(plane)
    entropy_bytes = -(p * np.log2(p)).sum() * len(plane) / 8
    coded = _huffman.encode(plane, 7)
    assert len(coded) - 66 < entropy_bytes * 1.05  # the head: width, largest value, at most 128 lengths
    # No larger than deflate's own Huffman-only coding of it.
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_HUFFMAN_ONLY)
    assert len(coded) <= len(deflate.compress(plane) + deflate.flush())
    # Fibonacci counts make the optimal code as deep as there are symbols (20): limited to 12 bits.
    fibonacci = [1, 1]
    while len(fibonacci) < 20:
        fibonacci.append(fibonacci[-1] + fibonacci[-2])
    skewed = np.repeat(np.arange(20, dtype=np.uint8), fibonacci).tobytes()
    coded = _huffman.encode(skewed, 5)
    lengths = [(coded[2 + s // 2] >> (4 * (s % 2))) & 15 for s in range(20)]
    assert 5 < max(lengths) <= 12
    assert bytes(_huffman.decode(coded, len(skewed))[0]) == skewed
    assert sum(2.0**-length for length in lengths) == 1.0  # a complete code: no window is wasted


def test_encode_refuses_a_width_out_of_range_and_values_past_the_width() -> None:
    for width in (0, 9, -1):
        with pytest.raises(ValueError, match=f"a width of {width} bits"):
            _huffman.encode(b"\x00\x01", width)
    with pytest.raises(ValueError, match="a value of 4 in an alphabet of 4 symbols"):
        _huffman.encode(b"\x00\x04", 2)


def _coded(plane: bytes, width: int) -> bytearray:
    return bytearray(_huffman.encode(plane, width))


@pytest.mark.parametrize(
    ("spoil", "count", "message"),
    [
        (lambda c: c[:0], 5, "no bytes for the values"),
        (lambda c: bytes([9]) + c[1:], 5, "a width of 9 bits"),
        (lambda c: c[:1], 5, "no byte for the largest value"),
        (lambda c: c[:1] + bytes([4]) + c[2:], 5, "the largest value is past the width"),
        (lambda c: c[:3], 5, "shorter than the 4 of the code's lengths"),
        (lambda c: c[:2] + bytes([0xDD, 0x0D]) + c[4:], 5, "symbol 0 has a code of 13 bits"),
        (lambda c: c[:2] + bytes([0x11, 0x11]) + c[4:], 5, "not a prefix code"),
        (lambda c: c[:2] + bytes([0x00, 0x00]) + c[4:], 5, "not a prefix code"),
        (lambda c: c[:-1], 5, "the data ends inside a code"),
        (lambda c: c[:-1] + bytes([c[-1] | 1]), 5, "the padding is not 0"),
        (lambda c: c, -1, "a count of -1 values"),
        (lambda c: c, 10**12, "1000000000000 values cannot be in the 2 bytes after"),
    ],
)
def test_decode_refuses_malformed_data_with_the_reason(spoil: object, count: int, message: str) -> None:
    coded = _coded(b"\x00\x01\x02\x03\x00", 2)  # 4 symbols of 2 bits: 10 bits, 6 bits of padding
    with pytest.raises(ValueError, match=message):
        _huffman.decode(bytes(spoil(coded)), count)  # type: ignore[operator]


def test_decode_refuses_a_window_that_starts_no_code() -> None:
    # Lengths 1 and 2 for symbols 0 and 1 (codes 0 and 10): the window 11 is no code.
    data = bytes([2, 1, 0x21]) + bytes([0b11000000])
    with pytest.raises(ValueError, match="a code not in the table"):
        _huffman.decode(data, 1)
    with pytest.raises(ValueError, match="the lengths' padding is not 0"):
        _huffman.decode(bytes([2, 2, 0x21, 0x10]) + bytes([0]), 1)  # 3 lengths: the 4th nibble is padding
    long = bytes([2, 1, 0x21]) + bytes([0b10101010, 0b10101010, 0b10101010, 0b11111111] * 4)
    with pytest.raises(ValueError, match="a code not in the table"):
        _huffman.decode(long, 40)  # found in the 4-at-a-time loop too


def test_an_empty_plane_is_no_bytes() -> None:
    assert _huffman.encode(b"", 3) == b""
    values, used = _huffman.decode(b"rest", 0)
    assert (bytes(values), used) == (b"", 0)
    assert math.isfinite(used)
