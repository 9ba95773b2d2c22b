"""Verdict study of the series state: does the history's representation change any report?

Runs the detectors over every series of the labelled corpora (`--corpus`, repeatable; by default the shared
corpus at ../shared/corpus, tests/testdata/corpus and the generated series of tests/testdata/series, tuning
and held-out sets), as `analyze` and the evaluation do, and records the report after every profile (the
detector's own plain form, floats bit for bit).

- `--save FILE`: write those reports (run it with the sources before a change: `PYTHONPATH=old/src`);
- `--compare FILE`: run again and compare every report of every point with the saved ones; prints each
  difference (series, profile, field, before, after) and the number of identical reports;
- `--round-trip`: also, after every profile, write the detector's checkpoint record, read it back into a
  new detector, feed both the next profile and compare their reports (save/restore must change nothing);
- `--fine N`: keep only the newest N points whole (`processor.fine_points`; the default, 240, merges
  nothing) so the corpus series, 60 profiles long, go through the coarse history; `--compare` then shows
  what coarsening changes.

Prints the evaluation scores of each corpus too (what `make evaluate` prints for the shared corpus).

Usage: python benchmarks/verdict_study.py [--save F | --compare F] [--round-trip] [--fine N] [--corpus DIR ...]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from otel_leakproc.analyze import SeriesResult, _merge_versions, collect_files, load_series
from otel_leakproc.config import load_settings
from otel_leakproc.evaluation import corpus_time, evaluate_series, summarize
from otel_leakproc.model import ProfileKind, SeriesKey
from otel_leakproc.processor.detector import SeriesDetector, _report_to_state

ROOT = Path(__file__).parents[1]
# The shared corpus (`make evaluate`'s CORPUS, ../shared/corpus) and the committed ones.
CORPORA = (ROOT.parent / "shared" / "corpus", ROOT / "tests/testdata/corpus", ROOT / "tests/testdata/series")


def _restored(detector: SeriesDetector) -> SeriesDetector:
    from otel_leakproc.state.codec import read_frames  # noqa: PLC0415
    from otel_leakproc.state.records import checkpoint_frame, checkpoint_state  # noqa: PLC0415

    record = checkpoint_frame(1, detector.key, {}, detector.to_state(arrays=True))
    frames, tail = read_frames(record)
    assert tail is None
    return SeriesDetector.from_state(detector.key, detector.config, checkpoint_state(frames[0].payload))


def run(
    round_trip: bool, corpora: list[Path], fine: int | None = None
) -> tuple[dict[str, list[Any]], dict[str, dict[str, Any]], list[str]]:
    settings = load_settings(None)
    config = settings.processor if fine is None else replace(settings.processor, fine_points=fine)
    limits = settings.decode.to_limits()
    reports: dict[str, list[Any]] = {}
    scores: dict[str, dict[str, Any]] = {}
    trip_differences: list[str] = []
    for corpus in corpora:
        if not (corpus / "labels.json").exists():
            print(f"skipped (missing): {corpus}")
            continue
        labels: dict[str, dict[str, Any]] = json.loads((corpus / "labels.json").read_text())
        cases = []
        for scenario, label in sorted(labels.items()):
            folder = corpus / scenario
            if not folder.is_dir():
                continue
            for series_folder, where, versions in _merge_versions(collect_files([str(folder)])):
                by_kind: dict[ProfileKind, list[Any]] = {}
                for version, found in versions:
                    loaded, _ = load_series(found, limits, None, corpus_time)
                    for kind, summaries in loaded.items():
                        by_kind.setdefault(kind, []).extend((s, version) for s in summaries)
                for entries in by_kind.values():
                    entries.sort(key=lambda e: e[0].time_nanos)
                service, _, instance = where.partition("/")
                for kind, versioned in sorted(by_kind.items(), key=lambda kv: kv[0]):
                    key = SeriesKey("", service, instance, kind)
                    detector = SeriesDetector(key, config)
                    timeline = []
                    name = f"{corpus.name}/{Path(series_folder).relative_to(corpus)}/{kind.value}"  # (a str since #15)
                    for i, (summary, version) in enumerate(versioned):
                        shadow = _restored(detector) if round_trip and i else None
                        report = detector.update(summary, version)
                        timeline.append(report)
                        if shadow is not None:
                            again = shadow.update(summary, version)
                            a, b = _report_to_state(report), _report_to_state(again)
                            if json.dumps(a) != json.dumps(b):
                                trip_differences.append(f"{name} point {i}: {_diff(a, b)[:3]}")
                    reports[name] = [_report_to_state(r) for r in timeline]
                    result = SeriesResult(str(series_folder), detector.report(), timeline, [])
                    cases.append(evaluate_series(scenario, label, result))
        scores[str(corpus)] = summarize(cases)
    return reports, scores, trip_differences


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += _diff(x, y, f"{path}[{i}]")
        return out
    return [] if json.dumps(a) == json.dumps(b) else [f"{path}: {a!r} -> {b!r}"]


def _relative(before: str, after: str) -> float:
    """|after - before| / |before| of two printed numbers (inf when they are not numbers)."""
    try:
        a, b = (float(re.sub(r"np\.float64\((.*)\)", r"\1", x)) for x in (before, after))
    except ValueError:
        return math.inf
    return abs(b - a) / abs(a) if a else math.inf


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--save")
    parser.add_argument("--compare")
    parser.add_argument("--round-trip", action="store_true")
    parser.add_argument("--fine", type=int)
    parser.add_argument("--verbose", action="store_true", help="print every differing report")
    parser.add_argument(
        "--corpus",
        action="append",
        type=lambda text: Path(text).resolve(),
        help="a corpus folder with labels.json (repeatable; default: ../shared/corpus, tests/testdata/corpus and"
        " tests/testdata/series)",
    )
    args = parser.parse_args()
    started = time.monotonic()
    reports, scores, trips = run(args.round_trip, args.corpus or list(CORPORA), args.fine)
    points = sum(len(r) for r in reports.values())
    print(f"{len(reports)} series, {points} reports in {time.monotonic() - started:.0f} s")
    for corpus, s in scores.items():
        print(f"scores {corpus}: {json.dumps(s, sort_keys=True)}")
    if args.round_trip:
        print(f"save/restore round trips: {points - len(reports)} checked, {len(trips)} reports differ")
        for line in trips[:20]:
            print("  ", line)
    if args.save:
        Path(args.save).write_text(json.dumps({"reports": reports, "scores": scores}))
    if args.compare:
        saved = json.loads(Path(args.compare).read_text())
        same = differ = 0
        fields: dict[str, list[float]] = {}  # differing field (indices dropped) -> relative differences
        for name, timeline in saved["reports"].items():
            now = reports.get(name)
            if now is None or len(now) != len(timeline):
                print(f"{name}: missing or of another length")
                differ += 1
                continue
            for i, (a, b) in enumerate(zip(timeline, now, strict=True)):
                d = _diff(a, b)
                if d:
                    differ += 1
                    if args.verbose:
                        print(f"{name} point {i}: {'; '.join(d[:4])}{' ...' if len(d) > 4 else ''}")
                    for line in d:
                        field, _, change = line.partition(": ")
                        before, _, after = change.partition(" -> ")
                        fields.setdefault(re.sub(r"\[\d+\]", "[]", field), []).append(_relative(before, after))
                else:
                    same += 1
        print(f"compared with {args.compare}: {same} reports identical, {differ} differ")
        for field, changes in sorted(fields.items(), key=lambda kv: -len(kv[1])):
            print(f"  {field}: differs in {len(changes)} reports, largest relative difference {max(changes):.2g}")
        for corpus, s in saved["scores"].items():
            print(f"scores {corpus}: {'unchanged' if s == scores.get(corpus) else 'CHANGED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
