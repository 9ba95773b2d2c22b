"""Long-series study of the coarser far history: do merged points change any verdict on real long series?

The committed corpora hold at most 60 profiles per series, so with `processor.fine_points: 60` the merged
part of a history is never read by their verdicts. This runs the detectors over long labelled series (made
by `make long-series`: the Go series generator with `-profiles 240`) twice: with the compact history
(merging the points older than the newest `--fine`, 60 by default) and with merging off (`fine_points`
past any series' length),
and prints per series and kind: the first flagged profile, the final status, the verdict against the label
(found / MISSED / FALSE ALARM / quiet), how many profiles were flagged, and how many reports' statuses differ
between the two runs.

`--window S` sets `processor.window_seconds` (default: the shipped 7200 s, 120 one-minute profiles; 14400 s
holds 240, the default `max_points`, as a 2-hour window at 30 s does). `--fine N` sets the merged run's
`fine_points` (default: 60, `history.COMPACT_FINE_POINTS`).

`--float32` compares the grids' value storage instead: both runs keep every point whole, the first with
the 16-bit levels the detector keeps (history.py `LEVELS`, the default), the second ("whole" in the
table) with every grid in float32 as before them; the columns and totals read the same way ("merged":
16-bit levels, "whole": float32), and `top_final` (the final top grower) is compared too.

Usage: PYTHONPATH=src python benchmarks/long_series_study.py build/long-series [--window 14400] [--float32] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from otel_leakproc.analyze import AnalyzeOptions, analyze_paths
from otel_leakproc.config import load_settings
from otel_leakproc.evaluation import corpus_time, evaluate_series
from otel_leakproc.processor import detector, history

OFF = 1_000_000  # fine_points that no series reaches: merging off


def run(folder: Path, fine: int, window: float | None, float32: bool = False) -> dict[str, dict[str, Any]]:
    """Per series and kind: verdict, first flag, final status and the status after every profile (with
    `float32`, every grid keeps float32 values, as before the 16-bit levels)."""
    scale = detector.value_scale
    if float32:
        detector.value_scale = lambda kind: history.FLOAT32  # type: ignore[assignment]
    try:
        return _run(folder, fine, window)
    finally:
        detector.value_scale = scale


def _run(folder: Path, fine: int, window: float | None) -> dict[str, dict[str, Any]]:
    labels: dict[str, dict[str, Any]] = json.loads((folder / "labels.json").read_text())
    settings = load_settings(None)
    config = replace(settings.processor, fine_points=fine)
    if window is not None:
        config = replace(config, window_seconds=window)
    options = AnalyzeOptions(keep_timeline=True, time_of=corpus_time)
    out: dict[str, dict[str, Any]] = {}
    for name, label in sorted(labels.items()):
        if not (folder / name).is_dir():
            continue
        for result in analyze_paths([str(folder / name)], config, settings.decode.to_limits(), options):
            case = evaluate_series(name, label, result)
            if case.positive:
                verdict = "found" if case.detected else "MISSED"
            else:
                verdict = "FALSE ALARM" if case.false_alarm else "quiet"
            statuses = [r.status.value for r in result.timeline]
            out[f"{name}/{case.kind.value}"] = {
                "positive": case.positive,
                "profiles": len(statuses),
                "flagged_tick": case.flagged_tick,
                "final": case.final_status,
                "verdict": verdict,
                "flagged_profiles": sum(1 for r in result.timeline if r.status.flagged),
                "top_final": case.top1_final,
                "statuses": statuses,
            }
    return out


def compare(merged: dict[str, dict[str, Any]], whole: dict[str, dict[str, Any]]) -> tuple[str, dict[str, int]]:
    lines = [
        "| series/kind | profiles | merged: flag@ / final / flagged / verdict"
        " | whole: flag@ / final / flagged / verdict | statuses differ |",
        "|---|---|---|---|---|",
    ]
    totals = {"series": 0, "differ_series": 0, "differ_reports": 0, "false_merged": 0, "false_whole": 0}
    totals |= {"missed_merged": 0, "missed_whole": 0, "top_final_differ": 0}
    for name, m in merged.items():
        w = whole[name]
        differ = sum(1 for a, b in zip(m["statuses"], w["statuses"], strict=True) if a != b)
        totals["series"] += 1
        totals["differ_series"] += bool(differ)
        totals["differ_reports"] += differ
        totals["top_final_differ"] += m["top_final"] != w["top_final"]
        for tag, r in (("merged", m), ("whole", w)):
            totals[f"false_{tag}"] += r["verdict"] == "FALSE ALARM"
            totals[f"missed_{tag}"] += r["verdict"] == "MISSED"
        quiet = not m["flagged_profiles"] and not w["flagged_profiles"] and not m["positive"]
        if quiet and name.endswith("/goroutine") and m["top_final"] == w["top_final"]:
            continue  # the goroutine series of heap scenarios: quiet either way

        def cell(r: dict[str, Any]) -> str:
            flag = "-" if r["flagged_tick"] is None else r["flagged_tick"]
            return f"{flag} / {r['final']} / {r['flagged_profiles']} / {r['verdict']}"

        top = "" if m["top_final"] == w["top_final"] else f" (final top grower {m['top_final']} / {w['top_final']})"
        lines.append(f"| {name} | {m['profiles']} | {cell(m)} | {cell(w)} | {differ}{top} |")
    return "\n".join(lines), totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--window", type=float, help="processor.window_seconds (default: as shipped)")
    parser.add_argument("--fine", type=int, default=history.COMPACT_FINE_POINTS, help="fine_points of the merged run")
    parser.add_argument("--float32", action="store_true", help="16-bit levels against float32 grids, both whole")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.float32:
        merged = run(args.folder, OFF, args.window)
        whole = run(args.folder, OFF, args.window, float32=True)
    else:
        merged = run(args.folder, args.fine, args.window)
        whole = run(args.folder, OFF, args.window)
    table, totals = compare(merged, whole)
    if args.json:
        print(json.dumps({"merged": merged, "whole": whole, "totals": totals}))
        return 0
    if args.float32:
        print(
            f"window {args.window or 'as shipped'} s, fine_points {OFF}: 'merged' = 16-bit levels, 'whole' = float32\n"
        )
    else:
        print(f"window {args.window or 'as shipped'} s, merged run fine_points {args.fine}, whole run {OFF}\n")
    print(table)
    print(f"\n{json.dumps(totals)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
