"""Series state figures of the journal store (`otel_leakproc.state`).

Prints, for a full default window (240 profiles of 64 sites/groups, as bench_series_memory.py builds it):
memory retained per series (tracemalloc, as bench_series_memory.py measures it), the checkpoint record
size, encode and decode times (medians), and two experiments on the record size: the value history packed
as float32, and coarser far history with 16-bit values (the codec stores what `to_state()` gives); then
journal bytes and append time per profile for real corpus heap profiles; then the start-up restore time
(`StatePersistence.restore`) of N checkpointed full heap series, and the time to build all their detectors
afterwards (done in the background by serve).

Prints figures only; asserts nothing.

Usage: python benchmarks/bench_state.py [--series 1000 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_series_memory import NANOS, T0, goroutine_summary, heap_summary, retained

from otel_leakproc.analyze import load_series
from otel_leakproc.model import ProfileKind, SeriesKey
from otel_leakproc.processor import detector as detector_module
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.detector import SeriesDetector
from otel_leakproc.processor.state import SeriesTable
from otel_leakproc.receiver.decode import DecodeLimits
from otel_leakproc.state.codec import read_frames
from otel_leakproc.state.journal import FileCheckpointWriter, FileStore
from otel_leakproc.state.persist import StatePersistence
from otel_leakproc.state.records import checkpoint_frame, checkpoint_head, checkpoint_state, point_frame

CORPUS = Path(__file__).parents[1] / "tests" / "testdata" / "corpus" / "steady_leak" / "heap"
CONFIG = ProcessorConfig()


def median_ms(fn: Callable[[], object], runs: int = 21) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def full_series(kind: ProfileKind, seed: int = 1) -> SeriesDetector:
    key = SeriesKey("t", f"svc-{seed}", "pod", kind)
    detector = SeriesDetector(key, CONFIG)
    rng = random.Random(seed)
    make = heap_summary if kind is ProfileKind.HEAP else goroutine_summary
    for j in range(CONFIG.max_points):
        detector.update(make(j, (T0 + 30 * j) * NANOS, 64, rng))
    return detector


def float32_size(state: dict[str, object], key: SeriesKey) -> int:
    """The record size if the grids' values and the totals were packed as float32 (experiment)."""
    narrowed = dict(state)
    for field in ("sites", "groups"):
        grid = dict(narrowed[field])  # type: ignore[call-overload]
        values = detector_module._unpack_values(grid["values"]).astype(np.float32)
        grid["values"] = detector_module._pack(values)
        narrowed[field] = grid
    return len(checkpoint_frame(1, key, {}, narrowed))


def coarse_q16_size(state: dict[str, object], key: SeriesKey) -> int:
    """Experiment: the record size if the history kept the newest 60 points whole and averaged older points
    4 to 1 (105 points instead of 240), with site values stored as 16-bit log2 steps (relative error below
    0.02%). Needs the detector's representation to change; verdicts not checked."""
    narrowed = dict(state)
    for field in ("sites", "groups"):
        grid = dict(narrowed[field])  # type: ignore[call-overload]
        lengths = detector_module._unpack(grid["lengths"], "<i4")
        values = detector_module._unpack_values(grid["values"]).astype(np.float64)
        ids = detector_module._unpack(grid["ids"], "<i2")
        if len(lengths) == 0 or lengths[0] == 0 or (lengths != lengths[0]).any():
            continue
        width = int(lengths[0])
        matrix = values.reshape(len(lengths), width)
        old, new = matrix[:-60], matrix[-60:]
        old = old[: len(old) // 4 * 4].reshape(-1, 4, width).mean(axis=1)
        kept = np.concatenate([old, new])
        steps = np.round(np.log2(np.maximum(kept, 1.0)) * 2048).astype(np.uint16)
        grid["values"] = detector_module._pack(steps.ravel())
        grid["lengths"] = detector_module._pack(np.full(len(kept), width, dtype=np.int32))
        grid["ids"] = detector_module._pack(ids[: kept.size])
        narrowed[field] = grid
    points = dict(narrowed["points"])  # type: ignore[call-overload]
    for name, dtype in (("time_nanos", "<i8"), ("total", "<f8"), ("cumulative", "<f8")):
        column = detector_module._unpack(points[name], dtype)
        points[name] = detector_module._pack(np.concatenate([column[:-60][::4], column[-60:]]))
    narrowed["points"] = points
    return len(checkpoint_frame(1, key, {}, narrowed))


def per_series() -> None:
    print("memory: retained by one full series, measured as bench_series_memory.py does (tracemalloc)")
    print(
        f"{'kind':10} {'memory KiB':>10} {'record KiB':>10} {'f32 KiB':>8} {'coarse+q16 KiB':>14}"
        f" {'to_state ms':>11} {'encode ms':>9}"
        f" {'head ms':>7} {'decode ms':>9} {'from_state ms':>13}"
    )
    for kind in (ProfileKind.HEAP, ProfileKind.GOROUTINE, ProfileKind.MUTEX):
        memory, _, detector = retained(kind, CONFIG.max_points, 64, CONFIG)
        state = detector.to_state()
        record = checkpoint_frame(1, detector.key, {"service.name": "svc"}, state)
        payload = read_frames(record)[0][0].payload
        decoded = checkpoint_state(payload)
        print(
            f"{kind.value:10} {memory / 1024:10.1f} {len(record) / 1024:10.1f}"
            f" {float32_size(state, detector.key) / 1024:8.1f}"
            f" {coarse_q16_size(state, detector.key) / 1024:14.1f}"
            f" {median_ms(detector.to_state):11.2f}"
            f" {median_ms(lambda: checkpoint_frame(1, detector.key, {}, state)):9.2f}"  # noqa: B023
            f" {median_ms(lambda: checkpoint_head(payload)):7.3f}"  # noqa: B023
            f" {median_ms(lambda: checkpoint_state(payload)):9.2f}"  # noqa: B023
            f" {median_ms(lambda: SeriesDetector.from_state(detector.key, CONFIG, decoded)):13.2f}"  # noqa: B023
        )


def journal_figures() -> None:
    by_kind, _ = load_series(sorted(CORPUS.glob("*.pb.gz")), DecodeLimits(), ProfileKind.HEAP)
    summaries = by_kind[ProfileKind.HEAP]
    key = SeriesKey("default", "checkout", "pod-1", ProfileKind.HEAP)
    resource = {"service.name": "checkout", "service.instance.id": "pod-1"}
    sizes = [len(point_frame(i, key, resource, s)) for i, s in enumerate(summaries)]
    sites = statistics.median(len(s.sites) for s in summaries)
    rng = random.Random(3)
    full = [len(point_frame(j, key, resource, heap_summary(j, (T0 + 30 * j) * NANOS, 64, rng))) for j in range(50)]
    print(f"journal: {statistics.median(full):.0f} bytes per profile (median, 64 sites with long Go names)")
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
            print(
                f"journal: {statistics.median(sizes):.0f} bytes per profile (median, {sites:.0f} sites, real heap"
                f" profiles), append {statistics.median(times) * 1e6:.0f} us per profile (fsync {policy})"
            )


def restore_figures(counts: list[int]) -> None:
    base = full_series(ProfileKind.HEAP)
    state = base.to_state()
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
                f"restore {count:6d} full heap series: {restored:.2f} s to serving (checkpoint {size / 2**20:.1f}"
                f" MiB, {result.series} series); detectors then built in the background at {per * 1000:.1f} ms"
                f" each ({per * count:.0f} s in all)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="*", default=[1000, 10000])
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}; window {CONFIG.window_seconds:.0f} s, max_points {CONFIG.max_points}")
    per_series()
    journal_figures()
    restore_figures(args.series)
    asyncio.run(asyncio.sleep(0))


if __name__ == "__main__":
    main()
