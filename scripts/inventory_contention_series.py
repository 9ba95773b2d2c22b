"""Record the mutex and block profiles of examples/inventory before and after its fix (a deploy).

Builds examples/inventory, runs it as v1 (map-wide lock held over the warehouse round trip), then as
`-fixed -version v2` (sharded locks) and as `-version v2` without the fix (a deploy that did not fix the
lock), each for PROFILES scrapes of `/debug/pprof/{mutex,block}` every INTERVAL seconds of real time, and
writes them as tests/testdata/inventory/<process>/<kind>/NNNN.pb.gz. The profiles are Go's own bytes except
two changes: `time_nanos` is rewritten to `1790000000 s + NNNN * INTERVAL` (v1 is NNNN 0..PROFILES-1, both
v2 processes follow it), and a pprof comment `service.version=<version>` is added (the decoder reads it).
Usage (from the repository root, about 4 minutes):

    PYTHONPATH=src .venv/bin/python scripts/inventory_contention_series.py [OUT_DIR]
"""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from otel_leakproc.receiver.proto import profile_pb2

ROOT = Path(__file__).resolve().parent.parent
BASE_SECONDS = 1_790_000_000
INTERVAL = 2  # seconds between scrapes, as examples/inventory/demo.yaml scrapes
PROFILES = 40
KINDS = ("mutex", "block")
# (folder, version, inventory flags, first profile number)
PROCESSES = [
    ("v1", "v1", [], 0),
    ("v2-fixed", "v2", ["-fixed"], PROFILES),
    ("v2-unfixed", "v2", [], PROFILES),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rewrite(raw: bytes, number: int, version: str) -> bytes:
    profile = profile_pb2.Profile.FromString(gzip.decompress(raw))
    profile.time_nanos = (BASE_SECONDS + number * INTERVAL) * 1_000_000_000
    profile.string_table.append(f"service.version={version}")
    profile.comment.append(len(profile.string_table) - 1)
    return gzip.compress(profile.SerializeToString(), mtime=0)


def record(binary: Path, out: Path, folder: str, version: str, flags: list[str], first: int) -> None:
    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen([str(binary), "-listen", address, "-version", version, *flags], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"listening on ")
        start = time.monotonic()
        for n in range(PROFILES):
            time.sleep(max(0.0, start + n * INTERVAL - time.monotonic()))
            for kind in KINDS:
                with urllib.request.urlopen(f"http://{address}/debug/pprof/{kind}", timeout=10) as response:
                    raw = response.read()
                target = out / folder / kind / f"{first + n:04d}.pb.gz"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(rewrite(raw, first + n, version))
    finally:
        proc.kill()
        proc.wait(10)


def main(out: Path) -> None:
    go = os.environ.get("GO", str(ROOT / ".venv" / "bin" / "go"))
    with tempfile.TemporaryDirectory() as work:
        binary = Path(work) / "inventory"
        env = {**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "HOME": work}
        env.setdefault("GOCACHE", str(ROOT / "build" / "go-cache"))
        subprocess.run(
            [go, "build", "-trimpath", "-o", str(binary), "."], cwd=ROOT / "examples" / "inventory", env=env, check=True
        )
        for folder, version, flags, first in PROCESSES:
            record(binary, out, folder, version, flags, first)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "testdata" / "inventory")
