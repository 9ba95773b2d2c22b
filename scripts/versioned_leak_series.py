"""Build heap profile series from tests/testdata/go/versionedleak, one minute apart.

The Go program runs its ticks as fast as it can; this rewrites each profile's `time_nanos` to
`1790000000 s + NNNN * 60 s` (the shared corpus's convention) so a series reads like a service that
pushes a heap profile once a minute. Usage:

    python scripts/versioned_leak_series.py BINARY OUT_DIR

writes the series the detection tests use (see tests/testdata/versions/README.md).
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

from otel_leakproc.receiver.proto import profile_pb2

BASE_SECONDS = 1_790_000_000
TICK_SECONDS = 60

# (folder, first profile number, ticks, leaked bytes per tick, leaked object size, churn seed)
SERIES = [
    ("steady_sampled/heap", 0, 60, 150 * 1024, 512, 12),
    ("checkout_fixed/v1.4.1/heap", 0, 40, 300 * 1024, 512, 2),
    ("checkout_fixed/v1.4.2/heap", 40, 40, 0, 512, 3),
    ("checkout_unfixed/v1.4.1/heap", 0, 40, 300 * 1024, 512, 4),
    ("checkout_unfixed/v1.4.2/heap", 40, 40, 300 * 1024, 512, 5),
]


def retime(folder: Path) -> None:
    for file in sorted(folder.glob("*.pb.gz")):
        number = int(file.name.split(".")[0])
        profile = profile_pb2.Profile.FromString(gzip.decompress(file.read_bytes()))
        profile.time_nanos = (BASE_SECONDS + number * TICK_SECONDS) * 1_000_000_000
        file.write_bytes(gzip.compress(profile.SerializeToString(), mtime=0))


def main(binary: str, out: str) -> None:
    for folder, first, ticks, leak, size, seed in SERIES:
        target = Path(out) / folder
        args = [binary, "-out", str(target), "-first", str(first), "-ticks", str(ticks)]
        args += ["-leak", str(leak), "-object", str(size), "-seed", str(seed)]
        subprocess.run(args, check=True)
        retime(target)


if __name__ == "__main__":
    main(*sys.argv[1:3])
