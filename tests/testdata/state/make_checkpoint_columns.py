"""Writes checkpoint_columns_cb5.bin, the checkpoint payload (layout CB5) of `coded_state()`: a grid's value
differences by width (`values`), which CB5 Huffman-codes after the column block. Wrote, for the release
before CB5, checkpoint_columns_cb4.bin: the checkpoint payload (layout CB4) of `column_state()`, a made-up
detector state with an array of every column dtype in every length class the codec treats apart (empty,
under 4, under 64, shuffled, over a deflate block), float64 arrays of whole numbers and of not quite whole
ones (NaN, infinities, -0.0, 2**53), int64 differences that wrap around, lists of strings (with a NUL, with
a non-string) and plain values, nested.

Kept for `tests/unit/test_state_checkpoint_bytes.py`: the checkpoint encoder was made cheaper, and must
keep writing these bytes (a record written by one release reads the same in the next, and a change of
its bytes is a choice, not a side effect). Written by the encoder of the release before that change;
rerun only when the bytes change on purpose (a new layout: then keep this file for the old one). CB5 wrote
`column_state()` as CB4 did but for its magic and the column block's length (it has no `values`), which the
test checks against the CB4 file; that file is no longer written.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from otel_leakproc.model import ProfileKind, SeriesKey

HERE = Path(__file__).parent
FIXTURE = HERE / "checkpoint_columns_cb4.bin"
FIXTURE_CB5 = HERE / "checkpoint_columns_cb5.bin"
KEY = SeriesKey("t", "svc", "pod-1", ProfileKind.HEAP)
RESOURCE = {"service.name": "svc"}
SEQ = 7
DTYPES = ("<f8", "<f4", "<i8", "<i4", "<i2", "<u2", "|i1", "|u1")
LENGTHS = (0, 1, 3, 4, 5, 63, 64, 65, 200, 1100)


def _noise(n: int, seed: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    """`n` pseudo-random int64s from integer arithmetic alone (the same on every machine and numpy)."""
    step, add = np.uint64(6364136223846793005), np.uint64(1442695040888963407)  # an LCG's, wrapping around
    x = (np.arange(n, dtype=np.uint64) + np.uint64(seed)) * step + add
    x ^= x >> np.uint64(29)
    return x.view(np.int64)


def column_state() -> dict[str, Any]:
    """The state `FIXTURE` holds (see the module docstring)."""
    columns: dict[str, Any] = {}
    for d, dtype in enumerate(DTYPES):
        by_length: dict[str, Any] = {}
        for n in LENGTHS:
            raw = _noise(n, 100 * d + n)
            if dtype[1] == "f":
                by_length[str(n)] = ((raw >> 40).astype(np.float64) / 7.0).astype(dtype)  # fractions
            else:
                bits = 8 * np.dtype(dtype).itemsize
                by_length[str(n)] = (raw >> (64 - bits)).astype(np.int64).astype(dtype) if bits < 64 else raw
        columns[dtype] = by_length
    whole: dict[str, Any] = {}
    for n in (4, 64, 300):
        clock = (1_790_000_000 + 30 * np.arange(n)).astype(np.float64)
        whole[f"clock{n}"] = clock  # whole: int64 differences
        whole[f"nanos{n}"] = clock * 1e9  # whole, but past 2**53
        whole[f"nan{n}"] = np.where(np.arange(n) == n - 1, np.nan, clock)
        whole[f"inf{n}"] = np.where(np.arange(n) == 0, -np.inf, clock)
        whole[f"negzero{n}"] = np.where(np.arange(n) == n // 2, -0.0, clock)
        whole[f"big{n}"] = np.arange(n, dtype=np.float64) - 2.0**53  # whole, but not above -2**53
        whole[f"half{n}"] = np.arange(n, dtype=np.float64) / 2
        whole[f"wrap{n}"] = np.resize(np.array([2**63 - 1, -(2**63), 0, -1], dtype=np.int64), n)
    return {
        "version": 1,
        "kind": "heap",
        "profiles": 480,
        "first_time": 1_790_000_000_000_000_000,
        "segment_start": 1_790_000_000.0,
        "session": None,
        "flag": True,
        "report": {"score": 0.25, "growth_per_hour": -10566.195509802226, "top": [{"function": "main.leak"}]},
        "transitions": [[1_790_001_800_000_000_000, "insufficient_data", "ok"]],
        "columns": columns,
        "whole": whole,
        "strings": {
            "names": [f"github.com/acme/shop.fn{i}" for i in range(70)],
            "short": ["a", "b", "c"],  # too short for the column block
            "nul": ["a\0b"] + ["c"] * 9,  # a NUL: stays in the JSON
            "mixed": ["a"] * 9 + [1],  # not only strings
            "unicode": ["état", "größe", "名前", "x"] * 3,
            "empty": [""] * 8,
        },
        "deep": {"a": {"b": {"c": np.arange(70, dtype="<i4"), "d": [1, 2, 3]}}},
        # Arrays of the names above in another dict (a detector's early history, say): those of one name and
        # stored dtype are laid out together (`Columns.layout`).
        "early": {
            "columns": {d: {k: a[: len(a) // 2] for k, a in columns[d].items()} for d in ("|u1", "<i2", "<i8")},
            "whole": {"clock64": whole["clock64"][:10]},
            "strings": {"names": [f"early.fn{i}" for i in range(9)]},
        },
    }


def coded_state() -> dict[str, Any]:
    """The state `FIXTURE_CB5` holds: `column_state()`'s and two grids' value differences of every width a
    byte holds, skewed to the small ones as a grid's are, one of a single value, one empty (not coded), and a
    width-9 plane (uint16: not coded)."""
    state = column_state()

    def values(seed: int, n: int) -> dict[str, Any]:
        planes: dict[str, Any] = {}
        for width in range(1, 9):
            raw = _noise(n * width, seed + width).view(np.uint64) >> np.uint64(64 - width)
            planes[str(width)] = np.minimum(raw, raw[::-1]).astype(np.uint8)  # the least of two: skewed
        planes["3"] = np.full(n, 5, dtype=np.uint8)  # one value only
        planes["2"] = np.zeros(0, dtype=np.uint8)
        planes["9"] = (_noise(n, seed).view(np.uint64) >> np.uint64(55)).astype(np.uint16)
        return planes

    state["sites"] = {"names": list(range(8)), "values": values(1, 480)}
    state["early"]["sites"] = {"names": list(range(8)), "values": values(2, 41)}
    return state


def with_index(payload: bytes, change: Any) -> bytes:
    """`payload` (a CB4 or CB5 checkpoint payload) with its column index passed through `change` (tests: a
    bad index)."""
    (n,) = struct.unpack_from("<I", payload, 4)
    start = 8 + n
    (m,) = struct.unpack_from("<I", payload, start)
    rest = json.loads(zlib.decompress(payload[start + 4 : start + 4 + m]))
    rest["\0columns"] = change(rest["\0columns"])
    main = zlib.compress(json.dumps(rest, separators=(",", ":")).encode())
    return payload[:start] + struct.pack("<I", len(main)) + main + payload[start + 4 + m :]


def main() -> None:
    from otel_leakproc.state.records import checkpoint_payload

    FIXTURE_CB5.write_bytes(checkpoint_payload(SEQ, KEY, RESOURCE, coded_state()))


if __name__ == "__main__":
    main()
