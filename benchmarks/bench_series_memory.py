"""Memory retained per tracked series: one `SeriesDetector` holding a full default window.

For each kind (heap, goroutine, mutex) it feeds a fresh detector 2 x `max_points` (480) summaries, one per
`window_seconds / max_points` (30 s: the history is full, its far end merged, and the points that left it
kept for fix verification, as in a series older than its window), each with the default top-K (64) sites
or goroutine groups, and measures with tracemalloc what stays allocated once the summaries are gone: the
detector's points, grids, site descriptions, fix-verification segment and its last report. Every summary
is built with fresh string objects, as the decoder makes them, so names are not shared by accident between
profiles. A sibling series of the same service (another pod, fed first, kept alive) holds the same names:
the interned names and file paths are shared between them, as between the pods of a service, and are
charged to neither (`--alone` deletes the sibling first, so one series pays for its names).

`--state` also prints the size of `to_state()` as compact JSON (what a snapshot file holds per series)
and the median time of `to_state()` + `json.dumps` and of `json.loads` + `from_state()` (21 runs each).

Prints figures only; asserts nothing. `retained KiB` is what stays allocated after the feeding; `process
KiB` the part of it that stays allocated once the series is deleted as well (numpy's process-wide caches of
small buffers and ufunc loops, which the first series traced in a process fills: not the series' memory);
`series KiB` the difference, what the series holds (and `per point B` of it). `--series N` also feeds N
series kept alive together and prints their growth divided by N: the cost of one more series in a warm
process, with numpy's small-buffer caches shared out over the N instead of subtracted.

`--breakdown` prints, per kind, where the bytes go: each numpy array the detector holds (its path, shape,
dtype and data bytes) and the rest of the retained bytes (Python objects: names, site descriptions, the
report, dicts, array headers).

`--fine-points N` sets `processor.fine_points` (the default keeps every point whole; 60 merges the far end).

Usage: python benchmarks/bench_series_memory.py [--points N] [--sites K] [--state] [--breakdown] [--fine-points N]
       [--series N]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from otel_leakproc.model import GoroutineGroup, ProfileKind, ProfileSummary, SeriesKey, SiteValue
from otel_leakproc.processor import trend
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.detector import SeriesDetector

NANOS = 1_000_000_000
T0 = 1_790_000_000
PKG = "github.com/acme/shop/internal/orders"
TRACE_DEPTH = 25  # frames kept per allocation, enough to see whether trend.py made it


def _name(i: int) -> str:
    # A fresh str object per call (as the decoder produces), with realistic Go symbol lengths.
    return "".join([PKG, ".(*Processor).handleStage", str(i)])


def heap_summary(j: int, t: int, sites: int, rng: random.Random) -> ProfileSummary:
    values = [(1 << 20) * (1 + i % 7) + rng.randrange(1 << 16) + (4096 * j if i == 3 else 0) for i in range(sites)]
    site_values = tuple(
        SiteValue(_name(i), "".join(["orders/stage", str(i), ".go"]), 100 + i, float(v), float(v // 64), "runtime.malg")
        for i, v in sorted(enumerate(values), key=lambda iv: -iv[1])
    )
    total = float(sum(values) + (8 << 20))
    return ProfileSummary(
        kind=ProfileKind.HEAP,
        time_nanos=t,
        total=total,
        total_count=total / 64,
        cumulative=float(1_000_000 + 10_000 * j),
        sites=site_values,
        other=float(8 << 20),
    )


def goroutine_summary(j: int, t: int, groups: int, rng: random.Random) -> ProfileSummary:
    counts = [10 + i % 13 + rng.randrange(3) + (j // 4 if i == 5 else 0) for i in range(groups)]
    group_values = tuple(
        GoroutineGroup(
            state="chan receive",
            blocking="".join([PKG, ".(*Queue).wait", str(i)]),
            function=_name(i),
            file="".join(["orders/stage", str(i), ".go"]),
            line=100 + i,
            creator="".join([PKG, ".(*Server).spawn", str(i)]),
            count=c,
            max_wait_minutes=rng.randrange(30),
        )
        for i, c in sorted(enumerate(counts), key=lambda ic: -ic[1])
    )
    sites = tuple(SiteValue(g.function, g.file, g.line, float(g.count), float(g.count)) for g in group_values)
    return ProfileSummary(
        kind=ProfileKind.GOROUTINE,
        time_nanos=t,
        total=float(sum(counts)),
        total_count=float(sum(counts)),
        sites=sites,
        groups=group_values,
    )


def mutex_summary(j: int, t: int, sites: int, rng: random.Random) -> ProfileSummary:
    delays = [float((i + 1) * 1_000_000 * (j + 1) + rng.randrange(1000)) for i in range(sites)]
    site_values = tuple(
        SiteValue(_name(i), "".join(["orders/stage", str(i), ".go"]), 100 + i, d, d / 1e5, "sync.(*Mutex).Unlock")
        for i, d in sorted(enumerate(delays), key=lambda id_: -id_[1])
    )
    return ProfileSummary(
        kind=ProfileKind.MUTEX,
        time_nanos=t,
        total=sum(delays),
        total_count=sum(delays) / 1e5,
        cumulative=float(100 * (j + 1)),
        sites=site_values,
    )


BUILDERS: dict[ProfileKind, Callable[[int, int, int, random.Random], ProfileSummary]] = {
    ProfileKind.HEAP: heap_summary,
    ProfileKind.GOROUTINE: goroutine_summary,
    ProfileKind.MUTEX: mutex_summary,
}


def fed_series(kind: ProfileKind, instance: str, points: int, width: int, config: ProcessorConfig) -> SeriesDetector:
    """A new detector of one pod of the service, fed `points` summaries one window step apart."""
    step = int(config.window_seconds / config.max_points * NANOS)
    detector = SeriesDetector(SeriesKey("tenant", "checkout", instance, kind), config)
    rng = random.Random(7)
    for j in range(points):
        detector.update(BUILDERS[kind](j, T0 * NANOS + j * step, width, rng))
    return detector


def retained(
    kind: ProfileKind, points: int, width: int, config: ProcessorConfig, alone: bool = False
) -> tuple[int, int, int, SeriesDetector]:
    """Bytes still allocated after feeding `points` summaries to a new detector (summaries dropped), and of
    those, the bytes still allocated once the detector is deleted too (not the series': numpy's process-wide
    caches of small buffers and ufunc loops, which a first series of a process fills; see `--breakdown`).

    A first detector of the same kind (a sibling pod) is fed untraced, so process-wide caches (the pair
    indices of the trend statistics per window length, the frame-classification caches) are warm and not
    charged to the series; it stays alive unless `alone`, sharing the interned names. The detector returned
    is an identical one, fed after the measurement.
    """

    def fed(instance: str) -> SeriesDetector:
        return fed_series(kind, instance, points, width, config)

    warm = fed("pod-0")
    if alone:
        del warm
    gc.collect()
    tracemalloc.start(TRACE_DEPTH)
    before = tracemalloc.take_snapshot()
    detector = fed("pod-1")
    gc.collect()
    after = tracemalloc.take_snapshot()
    del detector
    gc.collect()
    gone = tracemalloc.take_snapshot()
    tracemalloc.stop()
    # The trend statistics' pair-index cache is process-wide (one entry per window length, LRU): it
    # churns while a series fills up, so it is reported on its own, not charged to the series.
    shared = [tracemalloc.Filter(True, trend.__file__, all_frames=True)]
    series_only = [tracemalloc.Filter(False, trend.__file__, all_frames=True)]
    size = sum(
        d.size_diff for d in after.filter_traces(series_only).compare_to(before.filter_traces(series_only), "filename")
    )
    cache = sum(d.size_diff for d in after.filter_traces(shared).compare_to(before.filter_traces(shared), "filename"))
    # What stays allocated without the series (tracemalloc's own file cache excluded).
    process = [*series_only, tracemalloc.Filter(False, "*linecache.py"), tracemalloc.Filter(False, "<frozen*")]
    left = sum(d.size_diff for d in gone.filter_traces(process).compare_to(before.filter_traces(process), "filename"))
    return size, cache, max(0, left), fed("pod-1")


def amortised(kind: ProfileKind, points: int, width: int, config: ProcessorConfig, series: int) -> int:
    """Bytes per series of `series` detectors fed and kept alive together (after an untraced sibling), the
    trend statistics' process-wide pair-index cache excluded as in `retained`: what each more series of a
    service costs once the process is warm, with numpy's small-buffer caches amortised over all of them
    rather than subtracted."""

    def fed(instance: str) -> SeriesDetector:
        return fed_series(kind, instance, points, width, config)

    warm = fed("pod-0")
    gc.collect()
    tracemalloc.start(TRACE_DEPTH)
    before = tracemalloc.take_snapshot()
    kept = [fed(f"pod-{i + 1}") for i in range(series)]
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    series_only = [tracemalloc.Filter(False, trend.__file__, all_frames=True)]
    size = sum(
        d.size_diff for d in after.filter_traces(series_only).compare_to(before.filter_traces(series_only), "filename")
    )
    del kept, warm
    return size // series


def arrays_of(obj: Any, path: str = "detector", seen: set[int] | None = None) -> list[tuple[str, Any]]:
    """(path, array) of every numpy array reachable from `obj` through attributes, tuples and lists."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, (str, bytes, int, float, type)) or obj is None:
        return []
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return [(path, obj)]
    if isinstance(obj, (tuple, list)):
        return [found for i, item in enumerate(obj) for found in arrays_of(item, f"{path}[{i}]", seen)]
    names = [n for cls in type(obj).__mro__ for n in getattr(cls, "__slots__", ())]
    names += list(getattr(obj, "__dict__", {}))
    return [found for n in names if hasattr(obj, n) for found in arrays_of(getattr(obj, n), f"{path}.{n}", seen)]


def print_breakdown(size: int, detector: SeriesDetector) -> None:
    arrays = [(path, a) for path, a in arrays_of(detector) if a.nbytes]
    for path, a in sorted(arrays, key=lambda pa: -pa[1].nbytes):
        print(f"  {path:<34} {'x'.join(map(str, a.shape)):>9} {a.dtype.name:>8} {a.nbytes / 1024:8.1f} KiB")
    data = sum(a.nbytes for _, a in arrays)
    print(f"  {'arrays':<53} {data / 1024:8.1f} KiB")
    print(f"  {'the rest (Python objects, array headers)':<53} {(size - data) / 1024:8.1f} KiB")
    shared = "(not in it: its site descriptions, shared with the sibling)"
    print(f"  {shared:<53} {_meta_bytes(detector) / 1024:8.1f} KiB")


def _meta_bytes(detector: SeriesDetector) -> int:
    """Bytes of the site descriptions (`SiteMeta`) the detector refers to: shared with its sibling series
    (`history.shared_meta`), so not in its retained bytes."""
    return sum(sys.getsizeof(meta) for meta in {id(m): m for m in detector.meta.values()}.values())


def _median_ms(call: Callable[[], object], runs: int = 21) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    config = ProcessorConfig()
    parser.add_argument(
        "--points", type=int, default=2 * config.max_points, help="profiles fed (default: 2 x max_points)"
    )
    parser.add_argument("--alone", action="store_true", help="no sibling series sharing the names")
    parser.add_argument("--sites", type=int, default=64, help="sites or groups per profile (default top-K 64)")
    parser.add_argument("--state", action="store_true", help="also print the JSON size of to_state()")
    parser.add_argument("--breakdown", action="store_true", help="also print the arrays each series holds")
    parser.add_argument(
        "--series", type=int, default=0, help="also print the bytes per series of N series fed and kept together"
    )
    parser.add_argument(
        "--fine-points",
        type=int,
        default=config.fine_points,
        help=f"processor.fine_points (default {config.fine_points}: nothing merged; 60: the compact history)",
    )
    args = parser.parse_args(argv)
    config = replace(config, fine_points=args.fine_points)
    print(
        f"python {sys.version.split()[0]}; window {config.window_seconds:.0f} s, max_points {config.max_points}, "
        f"fine_points {config.fine_points}, "
        f"{args.points} profiles of {args.sites} sites/groups each, retained bytes by tracemalloc"
    )
    header = (
        f"{'kind':<10} {'points':>6} {'profiles':>8} {'names':>6} {'retained KiB':>12} {'process KiB':>11}"
        f" {'series KiB':>10} {'per point B':>11} {'shared cache KiB':>16}"
    )
    if args.series:
        header += f" {'KiB per series of ' + str(args.series):>20}"
    if args.state:
        header += f" {'state JSON KiB':>14} {'to_state ms':>11} {'from_state ms':>13}"
    print(header)
    print("-" * len(header))
    for kind in BUILDERS:
        size, cache, left, detector = retained(kind, args.points, args.sites, config, args.alone)
        names = len({*detector._sites.index, *detector._groups.index})
        own = size - left
        line = (
            f"{kind.value:<10} {len(detector.points):6d} {detector.points.profiles:8d} {names:6d} {size / 1024:12.1f} "
            f"{left / 1024:11.1f} {own / 1024:10.1f} {own / max(1, len(detector.points)):11.0f} {cache / 1024:16.1f}"
        )
        if args.series:
            line += f" {amortised(kind, args.points, args.sites, config, args.series) / 1024:20.1f}"
        if args.state:
            state = json.dumps(detector.to_state(), separators=(",", ":"))
            save = _median_ms(lambda d=detector: json.dumps(d.to_state(), separators=(",", ":")))
            load = _median_ms(lambda d=detector, s=state: SeriesDetector.from_state(d.key, config, json.loads(s)))
            line += f" {len(state) / 1024:14.1f} {save:11.2f} {load:13.2f}"
        print(line)
        if args.breakdown:
            print_breakdown(own, detector)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
