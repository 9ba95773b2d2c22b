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

Usage: PYTHONPATH=src python benchmarks/long_series_study.py build/long-series [--window 14400] [--json]
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
from otel_leakproc.processor import history

OFF = 1_000_000  # fine_points that no series reaches: merging off


def run(folder: Path, fine: int, window: float | None) -> dict[str, dict[str, Any]]:
    """Per series and kind: verdict, first flag, final status and the status after every profile."""
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
    totals |= {"missed_merged": 0, "missed_whole": 0}
    for name, m in merged.items():
        w = whole[name]
        differ = sum(1 for a, b in zip(m["statuses"], w["statuses"], strict=True) if a != b)
        totals["series"] += 1
        totals["differ_series"] += bool(differ)
        totals["differ_reports"] += differ
        for tag, r in (("merged", m), ("whole", w)):
            totals[f"false_{tag}"] += r["verdict"] == "FALSE ALARM"
            totals[f"missed_{tag}"] += r["verdict"] == "MISSED"
        quiet = not m["flagged_profiles"] and not w["flagged_profiles"] and not m["positive"]
        if quiet and name.endswith("/goroutine"):
            continue  # the goroutine series of heap scenarios: quiet either way

        def cell(r: dict[str, Any]) -> str:
            flag = "-" if r["flagged_tick"] is None else r["flagged_tick"]
            return f"{flag} / {r['final']} / {r['flagged_profiles']} / {r['verdict']}"

        lines.append(f"| {name} | {m['profiles']} | {cell(m)} | {cell(w)} | {differ} |")
    return "\n".join(lines), totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--window", type=float, help="processor.window_seconds (default: as shipped)")
    parser.add_argument("--fine", type=int, default=history.COMPACT_FINE_POINTS, help="fine_points of the merged run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    merged = run(args.folder, args.fine, args.window)
    whole = run(args.folder, OFF, args.window)
    table, totals = compare(merged, whole)
    if args.json:
        print(json.dumps({"merged": merged, "whole": whole, "totals": totals}))
        return 0
    print(f"window {args.window or 'as shipped'} s, merged run fine_points {args.fine}, whole run {OFF}\n")
    print(table)
    print(f"\n{json.dumps(totals)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
