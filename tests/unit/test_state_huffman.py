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


# Codes written here, bit by bit, from chosen lengths (what `encode` would write for a plane whose optimal
# code had them): the decoder's table of windows, a value or two a lookup, checked against every length up
# to 12, codes that leave windows unused, and planes short and long (the window widens with the count).


def _canonical_codes(lengths: list[int]) -> list[int]:
    codes = [0] * len(lengths)
    code = 0
    for bits in range(1, 13):
        for s, length in enumerate(lengths):
            if length == bits:
                codes[s] = code
                code += 1
        code <<= 1
    return codes


def _written(width: int, lengths: list[int], symbols: list[int], invalid_at: int = -1) -> bytes:
    """The coded plane of `symbols` under the canonical code of `lengths`; at `invalid_at`, in place of that
    symbol, the first 12-bit window no code starts."""
    head = bytes([width, len(lengths) - 1])
    nibbles = lengths + [0] * (len(lengths) % 2)
    head += bytes(nibbles[i] | nibbles[i + 1] << 4 for i in range(0, len(nibbles), 2))
    codes = _canonical_codes(lengths)
    bits = []
    for i, s in enumerate(symbols):
        if i == invalid_at:
            unused = sum(1 << (12 - length) for length in lengths if length)
            bits.append(format(unused, "012b"))
        else:
            bits.append(format(codes[s], f"0{lengths[s]}b"))
    text = "".join(bits)
    text += "0" * (-len(text) % 8)
    return head + bytes(int(text[i : i + 8], 2) for i in range(0, len(text), 8))


def _random_lengths(rng: np.random.Generator, width: int, longest: int, complete: bool) -> list[int]:
    """Code lengths for symbols 0 to 2**width - 1 (0: not in the code), at most `longest` bits, one of them
    `longest` long, their Kraft sum 1 (`complete`) or below it."""
    symbols = 1 << width
    lengths = [0] * symbols
    room = 1 << 12  # what is left of the Kraft sum, in units of 2**-12
    order = rng.permutation(symbols)
    lengths[order[0]] = longest
    room -= 1 << (12 - longest)
    for s in order[1:]:
        fits = [b for b in range(1, longest + 1) if (1 << (12 - b)) <= room]
        if not fits or rng.random() < 0.2:
            continue
        lengths[s] = int(rng.choice(fits[-4:] if rng.random() < 0.7 else fits))
        room -= 1 << (12 - lengths[s])
    if complete:  # spend what is left on symbols without a code, else deepen codes
        for s in order:
            while room:
                if lengths[s] == 0 and (1 << (12 - longest)) <= room:
                    lengths[s] = longest
                    room -= 1 << (12 - longest)
                else:
                    break
        while room:  # split the room among codes: lengthen nothing, shorten the longest that fits
            s = max((s for s in range(symbols) if lengths[s] > 1), key=lambda s: lengths[s])
            if (1 << (12 - lengths[s])) <= room:
                room -= 1 << (12 - lengths[s])
                lengths[s] -= 1
            else:
                break
    last = max(s for s in range(symbols) if lengths[s])
    return lengths[: last + 1]


@pytest.mark.parametrize("width", range(1, 9))
def test_decode_reads_codes_of_every_length_a_value_or_two_a_lookup(width: int) -> None:
    rng = np.random.default_rng(width)
    for longest in range(max(1, width - 2), 13):
        if longest == 1 and width > 1:
            continue
        for complete in (True, False):
            lengths = _random_lengths(rng, width, longest, complete)
            present = [s for s, length in enumerate(lengths) if length]
            for n in (1, 7, 8, 9, 33, 600, 3000, 9000):
                symbols = [int(s) for s in rng.choice(present, n)]
                data = _written(width, lengths, symbols)
                values, used = _huffman.decode(data + b"\xff" * 3, n)
                assert list(values) == symbols
                assert used == len(data)


@pytest.mark.parametrize("width", range(1, 9))
def test_decode_refuses_a_window_no_code_starts_wherever_it_is(width: int) -> None:
    rng = np.random.default_rng(100 + width)
    for longest in range(max(2, width), 13):
        lengths = _random_lengths(rng, width, longest, complete=False)
        if sum(2.0**-length for length in lengths if length) == 1.0:
            continue
        present = [s for s, length in enumerate(lengths) if length]
        for n in (2, 9, 40, 3000):
            symbols = [int(s) for s in rng.choice(present, n)]
            for invalid_at in {0, 1, n // 2, n - 2, n - 1}:  # in the 8-at-a-time loop and in the rest
                data = _written(width, lengths, symbols, invalid_at) + b"\x00\x00"
                with pytest.raises(ValueError, match="a code not in the table"):
                    _huffman.decode(data, n)
            data = _written(width, lengths, symbols)
            with pytest.raises(ValueError, match=r"the data ends inside a code|a code not in the table"):
                _huffman.decode(data[:-1], n)  # the last byte holds a code's last bit


@pytest.mark.parametrize("width", range(1, 9))
def test_decode_reads_a_long_plane_with_the_widest_window(width: int) -> None:
    rng = np.random.default_rng(200 + width)
    n = 17000  # past 4 * 2**12: a table of 4096 windows
    for longest in sorted({max(1, width - 1), min(12, width + 2), 12}):
        if longest == 1 and width > 1:
            continue
        lengths = _random_lengths(rng, width, longest, complete=longest < 12)
        present = [s for s, length in enumerate(lengths) if length]
        symbols = [int(s) for s in rng.choice(present, n)]
        data = _written(width, lengths, symbols)
        values, used = _huffman.decode(data, n)
        assert list(values) == symbols
        assert used == len(data)
        if sum(2.0**-length for length in lengths if length) < 1.0:
            with pytest.raises(ValueError, match="a code not in the table"):
                _huffman.decode(_written(width, lengths, symbols, n // 3), n)
