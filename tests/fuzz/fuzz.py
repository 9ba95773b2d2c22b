"""Coverage-guided fuzzing of one target with atheris (`make fuzz`, or by hand):

    python tests/fuzz/fuzz.py pprof --runs 1000000 [--corpus build/fuzz/pprof]

Needs the `fuzz` extra (atheris 3.0.0: 3.1.0 has no wheel for Python 3.11). The working corpus starts
from the target's real seeds (`targets.seeds`) plus what earlier runs kept in `--corpus`; a crash input is
written to `tests/fuzz/crashes/<target>/` (commit it with the fix: CI replays it). At the end libFuzzer
prints its final stats; this script prints the coverage reached (`cov:` edges, `ft:` features).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["otel_leakproc", "google.protobuf.json_format"]):
    import targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=sorted(targets.TARGETS))
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--corpus", type=Path, default=None, help="working corpus folder (default build/fuzz/T)")
    parser.add_argument("--max-len", type=int, default=256 * 1024)
    args, rest = parser.parse_known_args()
    corpus = args.corpus or Path("build") / "fuzz" / args.target
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in targets.seeds(args.target):
        (corpus / ("seed-" + hashlib.sha1(seed).hexdigest())).write_bytes(seed)
    crashes = targets.CRASHES / args.target
    crashes.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.argv[0],
        str(corpus),
        f"-runs={args.runs}",
        f"-max_len={args.max_len}",
        f"-artifact_prefix={crashes}{os.sep}",
        "-print_final_stats=1",
        "-timeout=20",
        "-rss_limit_mb=2048",
        *rest,
    ]
    target = targets.TARGETS[args.target]
    atheris.Setup(argv, target)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
