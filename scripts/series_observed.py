"""Add what the profiles themselves show to a generated series folder's labels.json (`observed`).

    PYTHONPATH=src .venv/bin/python scripts/series_observed.py tests/testdata/series

Per profile, as `go tool pprof -sample_index=inuse_space` would sum them: the heap's total `inuse_space`
and the `inuse_space` of the samples whose stack holds the labelled function (`leak_function`, else
`bounded_function`); for goroutine leaks, the goroutines whose stack holds `goroutine_leak_function`.
Next to `observed.ground_truth` (the exact bytes the program retained) they show what sampling makes of
it: Go records about one heap sample per 512 KiB allocated, so a slow leak moves in steps.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any

from otel_leakproc.receiver.proto import profile_pb2


def _load(file: Path) -> Any:
    profile = profile_pb2.Profile()
    profile.ParseFromString(gzip.decompress(file.read_bytes()))
    return profile


def _sums(profile: Any, function: str | None, value_type: str) -> tuple[int, int]:
    """(total, at the function) of one sample value."""
    strings = profile.string_table
    index = [strings[t.type] for t in profile.sample_type].index(value_type)
    names = {f.id: strings[f.name] for f in profile.function}
    holds: dict[int, bool] = {
        loc.id: any(names.get(line.function_id) == function for line in loc.line) for loc in profile.location
    }
    total = at = 0
    for sample in profile.sample:
        value = int(sample.value[index])
        total += value
        if function is not None and any(holds.get(loc, False) for loc in sample.location_id):
            at += value
    return total, at


def observe(folder: Path) -> dict[str, dict[str, Any]]:
    labels: dict[str, dict[str, Any]] = json.loads((folder / "labels.json").read_text())
    for name, label in labels.items():
        observed = label.setdefault("observed", {})
        function = label.get("leak_function") or label.get("bounded_function")
        totals, at_function = [], []
        for file in sorted((folder / name / "heap").glob("*.pb.gz")):
            total, at = _sums(_load(file), function, "inuse_space")
            totals.append(total)
            at_function.append(at)
        observed["heap_inuse_space_total_per_tick"] = totals
        observed["heap_function"] = function
        observed["heap_function_inuse_space_per_tick"] = at_function
        if label.get("goroutine_leak"):
            leak_function = label["goroutine_leak_function"]
            counts = [
                _sums(_load(f), leak_function, "goroutine")[1]
                for f in sorted((folder / name / "goroutine").glob("*.pb.gz"))
            ]
            observed["goroutine_leak_function_goroutines_per_tick"] = counts
    return labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="add observed per-profile figures to labels.json")
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    labels = observe(args.folder)
    (args.folder / "labels.json").write_text(json.dumps(labels, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
