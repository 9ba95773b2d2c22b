"""Ingest cost per profile against the decode floor, measured side by side in one run.

For every profile it times, alternating and repeated:

- floor: `gzip.decompress` + `profile_pb2.Profile.FromString` (the least any pprof reader pays);
- floor-isal: the same with ISA-L's inflate (`isal.igzip.decompress`), the inflater the decoder uses,
  so the ratio against a reader with the same fast gunzip is printed too;
- decode: `process_upload` of the profile as an `/ingest?format=pprof` upload, the function every
  decoder worker of `serve` runs (bounded gunzip, parse, validate, summarise, series identity);
- ingest: `process_upload` + `SeriesTable.update` on a table whose series holds a full window (what the
  service pays per profile: decode + summarise + detect + state update; only the exporters are left out).

The detector sees each series repeated over and over on a synthetic clock one minute per profile, with
the cumulative counter carried across repetitions, so it stays in its steady state (full window, no
restarts). Times are this thread's CPU time (every mode is single-threaded), so other processes on a
shared machine do not add their time slices to a call. Peak memory is the growth of the maximum RSS of
a fresh process around one call.

Prints figures only; asserts nothing. Run `benchmarks/make_profiles.sh` first for the large series.

Usage: python benchmarks/bench_ingest.py [--reps 25] [--large-dir DIR] [--small FILE ...] [--cprofile 30]
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import gzip
import importlib
import io
import math
import pstats
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from isal import igzip

from otel_leakproc.model import ProfileSummary, SeriesKey, SeriesReport
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.proto import profile_pb2
from otel_leakproc.receiver.uploads import UploadRequest, process_upload

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_LARGE_DIR = HERE / "out" / "large"
DEFAULT_SMALL = REPO / "tests" / "testdata" / "pprof" / "go_heap_steady_leak_0059.pb.gz"
STEP_NANOS = 60 * 1_000_000_000  # the synthetic clock of the timed runs: one profile a minute
VERDICT_STEP_NANOS = 5 * STEP_NANOS  # the verdict pass: past the heap warm-up within a short series
START_NANOS = 1_790_000_000 * 1_000_000_000
TARGET_RATIO = 1.5
LIMITS = DecodeLimits()
QUERY = (("name", "bench{instance=bench-1}"), ("format", "pprof"))
MODES = ("floor", "floor-isal", "decode", "ingest")
# --reference: the same code with its fast paths turned off, timed in the same run, so before/after is a
# ratio of one run: the pprof decoder sample by sample (its path for small profiles) and the detector
# building its matrices from the points (its fallback for series whose names churn).
REF_MODES = ("decode-ref", "ingest-ref")
ALL_MODES = MODES + REF_MODES


class Detector(Protocol):
    def update(self, summary: ProfileSummary) -> SeriesReport: ...


DetectorFactory = Callable[[SeriesKey, ProcessorConfig], Detector]


def load_detector_factory() -> tuple[DetectorFactory | None, str]:
    """`SeriesDetector` if the processor has it, else None and why."""
    try:
        module = importlib.import_module("otel_leakproc.processor.detector")
        factory: DetectorFactory = module.SeriesDetector
    except (ImportError, AttributeError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return factory, ""


def floor(data: bytes) -> profile_pb2.Profile:
    return profile_pb2.Profile.FromString(gzip.decompress(data))


def floor_isal(data: bytes) -> profile_pb2.Profile:
    return profile_pb2.Profile.FromString(igzip.decompress(data))


def decode(data: bytes) -> ProfileSummary:
    """What a decoder worker of `serve` runs for one `/ingest?format=pprof` upload."""
    [profile] = process_upload(UploadRequest("ingest", data, query=QUERY, received_nanos=START_NANOS), LIMITS).profiles
    return profile.summary


def decode_reference(data: bytes) -> ProfileSummary:
    """`decode` through the sample-by-sample path only (no vectorised path), if the decoder has one."""
    module = importlib.import_module("otel_leakproc.receiver.decode.pprof")
    saved = getattr(module, "FAST_PATH_MIN_SAMPLES", None)
    if saved is None:
        return decode(data)
    setattr(module, "FAST_PATH_MIN_SAMPLES", sys.maxsize)  # noqa: B010
    try:
        return decode(data)
    finally:
        setattr(module, "FAST_PATH_MIN_SAMPLES", saved)  # noqa: B010


def reference_detector_factory(factory: DetectorFactory) -> DetectorFactory:
    """Detectors whose site grid is disabled (MAX_GRID_ROWS 0): matrices rebuilt from the points."""
    module = importlib.import_module("otel_leakproc.processor.detector")

    def make(key: SeriesKey, config: ProcessorConfig) -> Detector:
        saved = getattr(module, "MAX_GRID_ROWS", None)
        if saved is None:
            return factory(key, config)
        setattr(module, "MAX_GRID_ROWS", 0)  # noqa: B010 (a module attribute, typed as ModuleType)
        try:
            return factory(key, config)
        finally:
            setattr(module, "MAX_GRID_ROWS", saved)  # noqa: B010

    return make


class _TableDetector:
    """A series of the service's `SeriesTable` (detector update, report, event and LRU bookkeeping)."""

    def __init__(self, key: SeriesKey, config: ProcessorConfig) -> None:
        module = importlib.import_module("otel_leakproc.processor.state")
        self.table = module.SeriesTable(config, max_series=16)
        self.key = key

    def update(self, summary: ProfileSummary) -> SeriesReport:
        report: SeriesReport = self.table.update(self.key, {"service.name": self.key.service}, summary).series.report
        return report


def table_factory(factory: DetectorFactory) -> DetectorFactory:
    """Series updated through `SeriesTable` where the processor has it (as `serve` does), else `factory`."""
    try:
        importlib.import_module("otel_leakproc.processor.state").SeriesTable  # noqa: B018
    except (ImportError, AttributeError):
        return factory
    return _TableDetector


class SeriesFeeder:
    """Feeds one series to a detector forever: monotonic clock, cumulative counter carried over."""

    def __init__(self, factory: DetectorFactory, key: SeriesKey, step_nanos: int = STEP_NANOS) -> None:
        self.detector = factory(key, ProcessorConfig())
        self.step_nanos = step_nanos
        self.clock = START_NANOS
        self.offset = 0.0
        self.last_cumulative = 0.0

    def feed(self, summary: ProfileSummary) -> SeriesReport:
        self.clock += self.step_nanos
        cumulative = summary.cumulative
        if cumulative is not None:
            if cumulative + self.offset < self.last_cumulative:  # the series wrapped around
                self.offset = self.last_cumulative
            cumulative += self.offset
            self.last_cumulative = cumulative
        return self.detector.update(dataclasses.replace(summary, time_nanos=self.clock, cumulative=cumulative))


@dataclasses.dataclass
class Subject:
    """One profile under test and its timings (milliseconds, per mode)."""

    name: str
    series: str
    data: bytes
    raw_bytes: int
    samples: int
    locations: int
    times: dict[str, list[float]] = dataclasses.field(default_factory=lambda: {m: [] for m in ALL_MODES})
    peak_kib: dict[str, float] = dataclasses.field(default_factory=dict)


def load_subject(path: Path, series: str) -> Subject:
    data = path.read_bytes()
    raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    profile = profile_pb2.Profile.FromString(raw)
    return Subject(path.name, series, data, len(raw), len(profile.sample), len(profile.location))


def prefilled_feeder(factory: DetectorFactory, series: str, members: list[Subject]) -> SeriesFeeder:
    """A feeder whose detector already holds a full window (the steady state of a long-lived series)."""
    summaries = [decode(s.data) for s in members]
    feeder = SeriesFeeder(factory, SeriesKey("bench", series, "bench", summaries[0].kind))
    window_points = int(ProcessorConfig().window_seconds * 1_000_000_000 // STEP_NANOS) + 1
    for i in range(window_points):
        feeder.feed(summaries[i % len(summaries)])
    return feeder


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def time_one(subject: Subject, mode: str, feeders: dict[str, SeriesFeeder]) -> float:
    """CPU time of one call (this thread's): on a shared machine, wall time also counts the time slices
    other processes take while the call waits for a core."""
    data = subject.data
    if mode == "floor":
        start = time.thread_time_ns()
        floor(data)
        end = time.thread_time_ns()
    elif mode == "floor-isal":
        start = time.thread_time_ns()
        floor_isal(data)
        end = time.thread_time_ns()
    elif mode == "decode":
        start = time.thread_time_ns()
        decode(data)
        end = time.thread_time_ns()
    elif mode == "decode-ref":
        start = time.thread_time_ns()
        decode_reference(data)
        end = time.thread_time_ns()
    elif mode == "ingest-ref":
        feeder = feeders["ref:" + subject.series]
        start = time.thread_time_ns()
        feeder.feed(decode_reference(data))
        end = time.thread_time_ns()
    else:
        feeder = feeders[subject.series]
        start = time.thread_time_ns()
        feeder.feed(decode(data))
        end = time.thread_time_ns()
    return (end - start) / 1e6


def run(
    subjects: list[Subject], modes: Sequence[str], reps: int, warmup: int, feeders: dict[str, SeriesFeeder]
) -> None:
    """Every repetition visits every profile in series order; the mode order rotates per repetition."""
    for rep in range(warmup + reps):
        gc.collect()
        for i, subject in enumerate(subjects):
            shift = (rep + i) % len(modes)
            for mode in (*modes[shift:], *modes[:shift]):
                elapsed = time_one(subject, mode, feeders)
                if rep >= warmup:
                    subject.times[mode].append(elapsed)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to /proc/self/clear_refs resets the peak RSS (VmHWM) to the current RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        _status_kib("VmHWM")
    except (OSError, LookupError):
        return False
    return True


def peak_rss_probe(mode: str, path: Path) -> None:
    """Child process: print the growth of the peak RSS (KiB) around one call of `mode`.

    The peak is reset first where Linux allows it, so start-up and imports do not hide a smaller peak of
    the call itself; elsewhere it is the growth of `ru_maxrss`, which may read 0 for small profiles.
    """
    data = path.read_bytes()
    decode(data)  # first-call costs (imports, descriptor pools) are not the profile's
    gc.collect()
    reset = _reset_peak_rss()
    before = _status_kib("VmRSS") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = floor(data) if mode == "floor" else decode(data)
    after = _status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del result
    print(after - before)


def measure_peaks(subjects: list[Subject], paths: dict[str, Path]) -> None:
    for subject in subjects:
        for mode in ("floor", "decode"):
            out = subprocess.run(
                [sys.executable, __file__, "--peak-probe", mode, str(paths[subject.name])],
                check=True,
                capture_output=True,
                text=True,
            )
            subject.peak_kib[mode] = float(out.stdout.strip())


def fmt_ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):7.2f} /{percentile(values, 90):7.2f}"


def ratio(values: list[float], base: list[float]) -> str:
    if not values or not base:
        return "n/a"
    return f"{statistics.median(values) / statistics.median(base):5.2f}"


def print_table(subjects: list[Subject]) -> None:
    header = (
        f"{'profile':<34} {'gz KiB':>7} {'raw KiB':>8} {'samples':>7} {'locs':>6} "
        f"{'floor ms med/p90':>17} {'decode ms med/p90':>17} {'+detect ms med/p90':>18} "
        f"{'dec/fl':>6} {'ing/fl':>6} {'prof/s':>6} {'peak KiB fl/dec':>15}"
    )
    print(header)
    print("-" * len(header))
    for s in subjects:
        ingest = s.times["ingest"]
        per_second = f"{1000 / statistics.median(ingest):6.0f}" if ingest else "   n/a"
        peaks = f"{s.peak_kib['floor']:.0f}/{s.peak_kib['decode']:.0f}" if s.peak_kib else "n/a"
        print(
            f"{s.series + '/' + s.name:<34} {len(s.data) / 1024:7.1f} {s.raw_bytes / 1024:8.1f} {s.samples:7d} "
            f"{s.locations:6d} {fmt_ms(s.times['floor']):>17} {fmt_ms(s.times['decode']):>17} "
            f"{fmt_ms(ingest):>18} {ratio(s.times['decode'], s.times['floor']):>6} "
            f"{ratio(ingest, s.times['floor']):>6} {per_second} {peaks:>15}"
        )


def print_series_totals(subjects: list[Subject]) -> None:
    """Per series: sums of the per-profile medians, so one ratio per series."""
    print()
    for series in dict.fromkeys(s.series for s in subjects):
        members = [s for s in subjects if s.series == series]
        sums = {m: sum(statistics.median(s.times[m]) for s in members if s.times[m]) for m in ALL_MODES}
        line = f"series {series}: {len(members)} profiles, floor {sums['floor']:.1f} ms, decode {sums['decode']:.1f} ms"
        line += f" (x{sums['decode'] / sums['floor']:.2f})"
        if sums["ingest"]:
            ingest = sums["ingest"]
            line += f", ingest {ingest:.1f} ms (x{ingest / sums['floor']:.2f}, target <= {TARGET_RATIO})"
        print(line)
        # On a shared machine the medians carry other processes' time slices (longer calls are preempted
        # more often); the fastest repetition of each is the cost with the machine to itself.
        fastest = {m: sum(min(s.times[m]) for s in members if s.times[m]) for m in ALL_MODES}
        line = f"series {series} fastest of each: floor {fastest['floor']:.1f} ms, decode {fastest['decode']:.1f} ms"
        line += f" (x{fastest['decode'] / fastest['floor']:.2f})"
        if fastest["ingest"]:
            line += f", ingest {fastest['ingest']:.1f} ms (x{fastest['ingest'] / fastest['floor']:.2f})"
        print(line)
        if sums["floor-isal"]:
            label = f"series {series} against a floor with ISA-L inflate"
            print(_ratios(label, sums, "floor-isal", "decode", "ingest"))
        if sums["decode-ref"]:
            label = f"series {series} reference (fast paths off, same run)"
            print(_ratios(label, sums, "floor", "decode-ref", "ingest-ref"))


def _ratios(label: str, sums: dict[str, float], base: str, decode: str, ingest: str) -> str:
    """One line: the decode (and ingest, when timed) sums against the `base` floor's sum."""
    line = f"{label} ({base} {sums[base]:.1f} ms): decode {sums[decode]:.1f} ms (x{sums[decode] / sums[base]:.2f})"
    if sums[ingest]:
        line += f", ingest {sums[ingest]:.1f} ms (x{sums[ingest] / sums[base]:.2f})"
    return line


def print_verdicts(factory: DetectorFactory, subjects: list[Subject]) -> None:
    """One pass of each series through a fresh detector, five minutes apart: does it see the leak?"""
    print()
    for series in dict.fromkeys(s.series for s in subjects):
        members = [s for s in subjects if s.series == series]
        feeder: SeriesFeeder | None = None
        report: SeriesReport | None = None
        for s in members:
            summary = decode(s.data)
            if feeder is None:
                key = SeriesKey("bench", series, "bench", summary.kind)
                feeder = SeriesFeeder(factory, key, VERDICT_STEP_NANOS)
            report = feeder.feed(summary)
        if report is None:
            continue
        top = report.top_growers[0].function if report.top_growers else "-"
        print(
            f"verdict {series} after {report.profiles} profiles: {report.status.value}, "
            f"growth {report.growth_per_hour:.0f}/h, top grower {top}"
        )


def print_cprofile(subject: Subject, top: int) -> None:
    """Where `process_upload` spends its time on one profile (cumulative and own time)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(10):
        decode(subject.data)
    profiler.disable()
    for sort in ("cumulative", "tottime"):
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).strip_dirs().sort_stats(sort).print_stats(top)
        print(f"\ncProfile of 10 x process_upload({subject.series}/{subject.name}), sorted by {sort}:")
        print("\n".join(line for line in stream.getvalue().splitlines() if line.strip())[:20000])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--large-dir", type=Path, default=DEFAULT_LARGE_DIR, help="series from make_profiles.sh")
    parser.add_argument("--small", type=Path, nargs="*", default=[DEFAULT_SMALL], help="small profile(s), one series")
    parser.add_argument("--reps", type=int, default=25, help="timed repetitions per profile and mode")
    parser.add_argument("--warmup", type=int, default=3, help="untimed repetitions first")
    parser.add_argument("--no-peak", action="store_true", help="skip the peak-RSS probes (a subprocess each)")
    parser.add_argument("--cprofile", type=int, default=0, metavar="N", help="also print the top N cProfile rows")
    parser.add_argument(
        "--reference", action="store_true", help="also time the decoder and detector with their fast paths off"
    )
    parser.add_argument("--peak-probe", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak_probe:
        peak_rss_probe(args.peak_probe[0], Path(args.peak_probe[1]))
        return 0

    paths: dict[str, Path] = {}
    subjects: list[Subject] = []
    large = sorted(args.large_dir.glob("*.pb.gz")) if args.large_dir.is_dir() else []
    if not large:
        print(f"no profiles in {args.large_dir}: run benchmarks/make_profiles.sh first", file=sys.stderr)
    for series, files in (("large", large), ("small", [p for p in args.small if p.is_file()])):
        for path in files:
            subjects.append(load_subject(path, series))
            paths[path.name] = path
    if not subjects:
        print("nothing to measure", file=sys.stderr)
        return 1

    factory, why = load_detector_factory()
    detector_factory = factory
    if factory is not None:
        factory = table_factory(factory)
    modes: tuple[str, ...] = MODES
    feeders: dict[str, SeriesFeeder] = {}
    if factory is None:
        print(f"SeriesDetector not available ({why}): the +detect column is skipped")
        modes = ("floor", "floor-isal", "decode")
    else:
        for series in dict.fromkeys(s.series for s in subjects):
            feeders[series] = prefilled_feeder(factory, series, [s for s in subjects if s.series == series])
            if args.reference:
                members = [s for s in subjects if s.series == series]
                reference = reference_detector_factory(detector_factory or factory)
                feeders["ref:" + series] = prefilled_feeder(reference, series, members)
    if args.reference:
        modes = (*modes, "decode-ref") + (("ingest-ref",) if factory is not None else ())

    print(f"load average before: {Path('/proc/loadavg').read_text().strip()}")
    print(
        f"python {sys.version.split()[0]}, protobuf backend "
        f"{importlib.import_module('google.protobuf.internal.api_implementation').Type()}, "
        f"{args.reps} reps (+{args.warmup} warm-up), modes alternated: {', '.join(modes)}"
    )
    run(subjects, modes, args.reps, args.warmup, feeders)
    if not args.no_peak:
        measure_peaks(subjects, paths)
    print()
    print_table(subjects)
    print_series_totals(subjects)
    if factory is not None:
        print_verdicts(factory, subjects)
    print(f"\nload average after: {Path('/proc/loadavg').read_text().strip()}")
    print(f"\nmax RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if args.cprofile:
        print_cprofile(max(subjects, key=lambda s: s.raw_bytes), args.cprofile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
