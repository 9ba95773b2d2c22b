"""Hostile uploads built from real Go profiles: the shapes an attacker used against `serve` (issue 16).

Each keeps a real profile's structure (sample types, stacks, values) and only makes names huge, so the
decoders accept it and the upload reaches the series table: that is what has to stay bounded.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from otel_leakproc.receiver.proto import profile_pb2

TESTDATA = Path(__file__).resolve().parents[1] / "testdata"
HEAP = TESTDATA / "pprof" / "go_heap_steady_leak_0059.pb.gz"
GOROUTINE_DUMP = TESTDATA / "goroutine-text" / "goroutine_leak_0059.txt"


def long_function_names(tag: str, functions: int = 64, chars: int = 900_000) -> bytes:
    """A real Go heap profile whose first `functions` function names are each `chars` characters long,
    unique per `tag` (so no two uploads share a name). Gzipped, about 60 KB for the defaults."""
    profile = profile_pb2.Profile.FromString(gzip.decompress(HEAP.read_bytes()))
    for index, function in enumerate(profile.function[:functions]):
        prefix = f"main.{tag}_{index}_"
        profile.string_table.append(prefix + "x" * (chars - len(prefix)))
        function.name = len(profile.string_table) - 1
    return gzip.compress(profile.SerializeToString(), 6)


def long_goroutine_function(tag: str, chars: int = 10_000_000) -> bytes:
    """A real goroutine `debug=2` dump (gzipped) where one user function name is `chars` characters long."""
    text = GOROUTINE_DUMP.read_text()
    name = f"main.{tag}_" + "y" * chars
    return gzip.compress(text.replace("main.(*orderAPIServer).orderWorker", name, 1).encode(), 6)


def slow_heap_profile(samples: int = 150_000, functions: int = 2000) -> bytes:
    """A valid heap profile with many distinct stacks: slow enough to decode (a few hundred ms) to hold
    a decode slot, as a flood of large uploads does."""
    p = profile_pb2.Profile()
    p.string_table.extend(["", "inuse_space", "bytes", "inuse_objects", "count"])
    p.sample_type.add(type=1, unit=2)
    p.sample_type.add(type=3, unit=4)
    for i in range(1, functions + 1):
        p.string_table.append(f"main.f{i}")
        p.function.add(id=i, name=len(p.string_table) - 1, filename=0)
        p.location.add(id=i, line=[profile_pb2.Line(function_id=i, line=i)])
    for s in range(samples):
        stack = [1 + s % functions, 1 + (s * 7) % functions, 1 + (s * 13) % functions]
        p.sample.add(location_id=stack, value=[64 + s, 1])
    p.time_nanos = 1_790_000_000_000_000_000
    return gzip.compress(p.SerializeToString(), 1)


def padded_heap_profile(size: int) -> bytes:
    """A real Go heap profile, uncompressed, padded with unused string table entries to `size` bytes."""
    profile = profile_pb2.Profile.FromString(gzip.decompress(HEAP.read_bytes()))
    body = profile.SerializeToString()
    # Each padding entry is field 6 (string_table), length-delimited: tag, 2-byte varint length, payload.
    chunk = 1000
    entry = bytes([0x32]) + bytes([(chunk & 0x7F) | 0x80, chunk >> 7]) + b"p" * chunk
    count = max(0, (size - len(body)) // len(entry))
    return body + entry * count


def negative_in_use(value: int = -4_600_000_000_000_000_000) -> bytes:
    """A real Go heap profile whose first sample claims `value` in-use bytes."""
    profile = profile_pb2.Profile.FromString(gzip.decompress(HEAP.read_bytes()))
    types = [profile.string_table[t.type] for t in profile.sample_type]
    profile.sample[0].value[types.index("inuse_space")] = value
    return gzip.compress(profile.SerializeToString(), 6)
