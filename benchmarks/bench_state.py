"""Series state figures of the journal store (`otel_leakproc.state`).

Prints, for a full default window (2 x 240 profiles of 64 sites/groups, 30 s apart, as bench_series_memory.py
builds it: the history full, its far end merged, the start kept for fix verification): memory retained
per series (tracemalloc, as bench_series_memory.py measures it, a sibling pod sharing the names), the
checkpoint record size, and the medians and minima of `to_state(arrays=True)` (on the event loop), encode
(`checkpoint_frame`, in a worker thread), decode (`checkpoint_state`) and `from_state`; then journal
bytes per profile (names by id, and inline for comparison) and append time for real corpus heap profiles
and for 64-site profiles with long Go names; then the start-up restore time (`StatePersistence.restore`)
of N checkpointed full heap series, and the time to build all their detectors afterwards (done in the
background by serve). Each section prints the machine's load average (`os.getloadavg`).

Prints figures only; asserts nothing.

`--fine-points N` sets `processor.fine_points` (the default keeps every point whole; 60 merges the far end).
`--breakdown` prints, before the rest, where the bytes of each kind's checkpoint record go (`breakdown`).
`--only-breakdown` prints just that, and `--real DIR` adds the record of a real series: the heap profiles
in DIR fed in name order through `SeriesDetector.update`, 30 s apart.

Usage: python benchmarks/bench_state.py [--series 1000 10000] [--fine-points N] [--breakdown] [--real DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_series_memory import NANOS, T0, fed_series, goroutine_summary, heap_summary, retained
from isal import isal_zlib

from otel_leakproc.analyze import load_series
from otel_leakproc.model import ProfileKind, ProfileSummary, SeriesKey
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.detector import SeriesDetector
from otel_leakproc.processor.state import SeriesTable
from otel_leakproc.receiver.decode import DecodeLimits
from otel_leakproc.state.codec import Columns, read_frames
from otel_leakproc.state.journal import FileCheckpointWriter, FileStore
from otel_leakproc.state.persist import StatePersistence
from otel_leakproc.state.records import (
    _HUFFMAN,
    NameTable,
    _checkpoint_start,
    _take_arrays,
    checkpoint_frame,
    checkpoint_head,
    checkpoint_state,
    index_json,
    point_frame,
    resolve_state,
)

CORPUS = Path(__file__).parents[1] / "tests" / "testdata" / "corpus" / "steady_leak" / "heap"
CONFIG = ProcessorConfig()


def full_series(kind: ProfileKind, seed: int = 1) -> SeriesDetector:
    key = SeriesKey("t", f"svc-{seed}", "pod", kind)
    detector = SeriesDetector(key, CONFIG)
    rng = random.Random(seed)
    make = heap_summary if kind is ProfileKind.HEAP else goroutine_summary
    for j in range(2 * CONFIG.max_points):
        detector.update(make(j, (T0 + 30 * j) * NANOS, 64, rng))
    return detector


def timed(fn: Callable[[], object], runs: int = 41) -> str:
    """Median and minimum of `runs` calls, in ms (the minimum: the machine to itself)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return f"{statistics.median(times) * 1000:.2f}/{min(times) * 1000:.2f}"


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def per_series() -> None:
    print(f"per series ({load()}); times: median/minimum ms")
    print(
        f"{'kind':10} {'memory KiB':>10} {'record KiB':>10} {'to_state':>11} {'encode':>11}"
        f" {'head':>11} {'decode':>11} {'from_state':>11}"
    )
    for kind in (ProfileKind.HEAP, ProfileKind.GOROUTINE, ProfileKind.MUTEX):
        retained_bytes, _, process, detector = retained(kind, 2 * CONFIG.max_points, 64, CONFIG)
        memory = retained_bytes - process  # the series own (see bench_series_memory.py)
        state = detector.to_state(arrays=True)
        record = checkpoint_frame(1, detector.key, {"service.name": "svc"}, state)
        payload = read_frames(record)[0][0].payload
        decoded = checkpoint_state(payload)
        print(
            f"{kind.value:10} {memory / 1024:10.1f} {len(record) / 1024:10.1f}"
            f" {timed(lambda: detector.to_state(arrays=True)):>11}"  # noqa: B023
            f" {timed(lambda: checkpoint_frame(1, detector.key, {}, state)):>11}"  # noqa: B023
            f" {timed(lambda: checkpoint_head(payload)):>11}"  # noqa: B023
            f" {timed(lambda: checkpoint_state(payload)):>11}"  # noqa: B023
            f" {timed(lambda: SeriesDetector.from_state(detector.key, CONFIG, decoded)):>11}"  # noqa: B023
        )
    print(f"({load()})")


# Sections of a checkpoint record, by the path of an array of the detector state (the first that matches).
SECTIONS = (
    ("values", ("values", "floor", "widths")),
    ("ties", ("ties", "tied", "whole", "whole_ids")),
    ("ids, lengths", ("ids", "lengths")),
    ("times, totals, counters", ("time_nanos", "total", "cumulative", "weight", "base", "last")),
    ("names, site metadata", ("meta", "names")),
)


def _section(path: list[str]) -> str:
    for name, keys in SECTIONS:
        if any(p in keys for p in path):
            return name
    return "other arrays"


def breakdown(detector: SeriesDetector, title: str) -> None:
    """Bytes of `detector`'s checkpoint record by section. The column block is attributed array by array:
    what the deflated stream grew by with each (`Columns.pack(shares=...)`, each array then ending a deflate
    block: their sum is a little more than the record's own block); the Huffman-coded planes after it by
    their own sizes."""
    state = detector.to_state(arrays=True)
    record = checkpoint_frame(1, detector.key, {"service.name": detector.key.service}, state)
    payload = read_frames(record)[0][0].payload
    view = memoryview(payload)
    at, _ = _checkpoint_start(view)
    head = int.from_bytes(view[at : at + 4], "little")
    report_json = json.dumps(state.get("report"), separators=(",", ":")).encode()
    main = int.from_bytes(view[at + 4 + head : at + 8 + head], "little")
    block = int.from_bytes(view[at + 8 + head + main : at + 12 + head + main], "little")
    coded_bytes = len(view) - (at + 12 + head + main + block)
    columns = Columns()
    entries: list[str] = []
    rest = _take_arrays({k: v for k, v in state.items() if k != "report"}, (), columns, entries)
    names = json.dumps({"names": rest.get("names"), "meta": rest.get("meta")}, separators=(",", ":")).encode()
    index: list[list[object]] = json.loads(index_json(entries))
    sizes: list[int] = []
    attributed = len(columns.pack(shares=sizes))
    shares: dict[str, int] = {}
    coded = [entry for entry in index if len(entry) == 4 and entry[3] == _HUFFMAN]
    in_block = [entry for entry in index if not (len(entry) == 4 and entry[3] == _HUFFMAN)]
    for (path, *_), size in zip(in_block, sizes, strict=True):
        name = _section(path)  # type: ignore[arg-type]
        shares[name] = shares.get(name, 0) + size
    shares["(stream end)"] = attributed - sum(sizes)
    coded_shares: dict[str, int] = {}
    for (path, *_), data in zip(coded, columns.coded, strict=True):
        name = _section(path)  # type: ignore[arg-type]
        coded_shares[name] = coded_shares.get(name, 0) + len(data)
    print(f"checkpoint record of {title}: {len(record)} bytes ({len(record) / 1024:.1f} KiB)")
    print(f"  frame header and lengths   {len(record) - len(payload) + at + 12:6d}")
    print(f"  head (seq, key, resource)  {head:6d}  of which the report as JSON {len(report_json)} raw")
    print(
        f"  state, deflated JSON       {main:6d}  (names and site metadata alone {len(isal_zlib.compress(names, 1))},"
        f" scalars and the column index the rest)"
    )
    total = sum(shares.values())
    print(f"  column block               {block:6d}  by section (sum {total}):")
    for name, size in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"    {name:26} {size:6d}")
    print(f"  Huffman-coded planes       {coded_bytes:6d}  by section:")
    for name, size in sorted(coded_shares.items(), key=lambda kv: -kv[1]):
        print(f"    {name:26} {size:6d}")


def real_series(folder: Path) -> SeriesDetector:
    """A heap series of real profiles (`folder`'s *.pb.gz in name order, e.g. `make_profiles.sh 240` or
    `make long-series`) through the production update path, 30 s apart (their own times replaced)."""
    by_kind, errors = load_series(sorted(folder.glob("*.pb.gz")), DecodeLimits(), ProfileKind.HEAP)
    if errors or ProfileKind.HEAP not in by_kind:
        raise SystemExit(f"{folder}: no heap series ({errors})")
    detector = SeriesDetector(SeriesKey("t", folder.name, "pod", ProfileKind.HEAP), CONFIG)
    for j, summary in enumerate(by_kind[ProfileKind.HEAP]):
        detector.update(replace(summary, time_nanos=(T0 + 30 * j) * NANOS))
    return detector


def _journal_bytes(key: SeriesKey, resource: dict[str, str], summaries: list[ProfileSummary]) -> tuple[float, float]:
    """Median bytes per profile written by id (NAMES records included, spread over the points) and inline."""
    table = NameTable()
    by_id = []
    for i, s in enumerate(summaries):
        by_id.append(sum(len(f) for f in table.encode([(i, key, resource, s)])))
        table.commit()
    inline = [len(point_frame(i, key, resource, s)) for i, s in enumerate(summaries)]
    return statistics.median(by_id[1:]), statistics.median(inline)


def journal_figures() -> None:
    by_kind, _ = load_series(sorted(CORPUS.glob("*.pb.gz")), DecodeLimits(), ProfileKind.HEAP)
    summaries = by_kind[ProfileKind.HEAP]
    key = SeriesKey("default", "checkout", "pod-1", ProfileKind.HEAP)
    resource = {"service.name": "checkout", "service.instance.id": "pod-1"}
    sites = statistics.median(len(s.sites) for s in summaries)
    rng = random.Random(3)
    full = [heap_summary(j, (T0 + 30 * j) * NANOS, 64, rng) for j in range(50)]
    for what, series in ((f"{sites:.0f} sites, real heap profiles", summaries), ("64 sites, long Go names", full)):
        by_id, inline = _journal_bytes(key, resource, series)
        print(f"journal: {by_id:.0f} bytes per profile by name id ({inline:.0f} inline), median, {what}")
    with tempfile.TemporaryDirectory() as tmp:
        for policy in ("never", "interval", "always"):
            table = SeriesTable(CONFIG, 100)
            store = FileStore(Path(tmp) / policy, policy)  # type: ignore[arg-type]
            persistence = StatePersistence(table, store, CONFIG)
            persistence.restore()
            times = []
            for s in summaries:
                start = time.perf_counter()
                persistence.append([(key, resource, s)])
                times.append(time.perf_counter() - start)
            store.close()
            print(f"journal: append {statistics.median(times) * 1e6:.0f} us per profile (fsync {policy}; {load()})")


def restore_figures(counts: list[int]) -> None:
    base = full_series(ProfileKind.HEAP)
    state = resolve_state(base.to_state(arrays=True))  # packed once for the `count` records
    for count in counts:
        with tempfile.TemporaryDirectory() as tmp:
            table = SeriesTable(CONFIG, count)
            store = FileStore(tmp, "never")
            persistence = StatePersistence(table, store, CONFIG)
            persistence.restore()
            # `count` checkpointed full heap series (the same history under different names).
            writer = FileCheckpointWriter(store, store.rotate(), 1)
            for i in range(count):
                key = SeriesKey("t", f"svc-{i}", "pod", ProfileKind.HEAP)
                writer.put(f"{i}", checkpoint_frame(0, key, {"service.name": f"svc-{i}"}, state))
            writer.commit()
            store.close()
            size = (Path(tmp) / "checkpoint.bin").stat().st_size
            table = SeriesTable(CONFIG, count)
            persistence = StatePersistence(table, FileStore(tmp, "never"), CONFIG)
            start = time.perf_counter()
            result = persistence.restore()
            restored = time.perf_counter() - start
            start = time.perf_counter()
            sample = list(table)[: min(count, 200)]
            for tracked in sample:
                tracked.materialize()
            per = (time.perf_counter() - start) / len(sample)
            print(
                f"({load()}) restore {count:6d} full heap series: {restored:.2f} s to serving"
                f" (checkpoint {size / 2**20:.1f} MiB, {result.series} series); detectors then built in the"
                f" background at {per * 1000:.1f} ms each ({per * count:.0f} s in all)"
            )


def main() -> None:
    global CONFIG  # noqa: PLW0603 (the sections read the module's config)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument(
        "--fine-points",
        type=int,
        default=CONFIG.fine_points,
        help=f"processor.fine_points (default {CONFIG.fine_points}: nothing merged; 60: the compact history)",
    )
    parser.add_argument("--breakdown", action="store_true", help="where each kind's record bytes go")
    parser.add_argument("--only-breakdown", action="store_true", help="the breakdown alone")
    parser.add_argument("--real", type=Path, action="append", default=[], help="a folder of real heap profiles")
    args = parser.parse_args()
    CONFIG = replace(CONFIG, fine_points=args.fine_points)
    print(
        f"python {sys.version.split()[0]}; window {CONFIG.window_seconds:.0f} s, max_points {CONFIG.max_points},"
        f" fine_points {CONFIG.fine_points}"
    )
    if args.breakdown or args.only_breakdown or args.real:
        for kind in (ProfileKind.HEAP, ProfileKind.GOROUTINE, ProfileKind.MUTEX):
            detector = fed_series(kind, "pod-1", 2 * CONFIG.max_points, 64, CONFIG)  # as `per_series` measures it
            breakdown(detector, f"a full synthetic {kind.value} series (64 sites)")
        for folder in args.real:
            detector = real_series(folder)
            sites = len(detector.to_state()["names"])
            breakdown(detector, f"{folder} ({detector.profiles} real profiles, {sites} sites)")
        if args.only_breakdown:
            return
    per_series()
    journal_figures()
    restore_figures(args.series)
    asyncio.run(asyncio.sleep(0))


if __name__ == "__main__":
    main()
