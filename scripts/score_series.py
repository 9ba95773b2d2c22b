"""Per-series scores of the detectors on a labelled series folder, as Markdown tables (one per set).

    PYTHONPATH=src .venv/bin/python scripts/score_series.py tests/testdata/series [--json]

For every labelled scenario and every profile kind it holds: the truth, when the status first became
flagged (profile number) and the latency from the labelled start, the top grower when flagged and at the
end, the final status, how many status changes the series went through, and how many times a flagged
status fell back to `ok` and was flagged again (flapping). The `set` field of labels.json splits the
tables (tuning / heldout); see tests/testdata/series/HELDOUT.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from otel_leakproc.analyze import AnalyzeOptions, analyze_paths
from otel_leakproc.config import load_settings
from otel_leakproc.evaluation import TICK_SECONDS, corpus_time, evaluate_series
from otel_leakproc.model import Status


@dataclass(frozen=True, slots=True)
class Score:
    series: str
    set: str
    kind: str
    truth: str
    flagged_tick: int | None
    latency: int | None
    top_at_flag: str | None
    top_final: str | None
    final_status: str
    transitions: list[tuple[int, str, str]]
    flaps: int
    flagged_after_restart: bool
    verdict: str
    growth_per_hour: float
    restarts: int


def _flaps(statuses: list[Status]) -> int:
    """flagged -> ok -> flagged cycles (insufficient_data counts as ok)."""
    cycles, was_flagged, dropped = 0, False, False
    for status in statuses:
        if status.flagged:
            if dropped:
                cycles += 1
            was_flagged, dropped = True, False
        elif was_flagged:
            dropped = True
    return cycles


def score(folder: Path) -> list[Score]:
    labels: dict[str, dict[str, Any]] = json.loads((folder / "labels.json").read_text())
    settings = load_settings(None)
    options = AnalyzeOptions(keep_timeline=True, time_of=corpus_time)
    scores = []
    for name, label in sorted(labels.items()):
        for result in analyze_paths([str(folder / name)], settings.processor, settings.decode.to_limits(), options):
            case = evaluate_series(name, label, result)
            first = result.timeline[0].last_time_nanos if result.timeline else 0
            ticks = [round((r.last_time_nanos - first) / 1e9 / TICK_SECONDS) for r in result.timeline]
            statuses = [r.status for r in result.timeline]
            transitions = [
                (ticks[i], statuses[i - 1].value, statuses[i].value)
                for i in range(1, len(statuses))
                if statuses[i] is not statuses[i - 1]
            ]
            if case.positive:
                verdict = "found" if case.detected else "MISSED"
                if case.detected and not case.top1_ok:
                    verdict += ", wrong top"
            else:
                verdict = "FALSE ALARM" if case.false_alarm else "quiet"
            if case.positive and case.flagged_after_restart:
                verdict += ", flagged after fixing restart"
            scores.append(
                Score(
                    series=name,
                    set=str(label.get("set", "")),
                    kind=case.kind.value,
                    truth=_truth(label, case.positive, case.start_tick, case.kind.value),
                    flagged_tick=case.flagged_tick,
                    latency=case.latency if case.positive else None,
                    top_at_flag=case.top1_at_flag,
                    top_final=case.top1_final,
                    final_status=case.final_status,
                    transitions=transitions,
                    flaps=_flaps(statuses),
                    flagged_after_restart=case.flagged_after_restart,
                    verdict=verdict,
                    growth_per_hour=result.report.growth_per_hour,
                    restarts=result.report.restarts,
                )
            )
    return scores


def _truth(label: dict[str, Any], positive: bool, start: int, kind: str) -> str:
    if not positive:
        return "-"
    rate = label.get("leak_rate_bytes_per_tick_nominal")
    if kind == "heap" and rate:
        return f"leak {rate / 1024:.0f} KiB/min @{start}"
    return f"leak @{start}"


def _growth(s: Score) -> str:
    if s.kind != "heap":
        return f"{s.growth_per_hour:+.0f}/h"
    return f"{s.growth_per_hour / 2**20:+.1f} MiB/h"


def _short(function: str | None) -> str:
    return "-" if function is None else function.removeprefix("main.")


def markdown(scores: list[Score]) -> str:
    out = []
    for group in ("tuning", "heldout"):
        rows = [s for s in scores if s.set == group]
        if not rows:
            continue
        positives = [s for s in rows if s.truth != "-"]
        found = [s for s in positives if s.verdict.startswith("found")]
        false = [s for s in rows if s.verdict.startswith("FALSE")]
        latencies = [s.latency for s in found if s.latency is not None]
        quiet_goroutines = [s for s in rows if s.kind == "goroutine" and s.truth == "-" and s.verdict == "quiet"]
        rows = [s for s in rows if s not in quiet_goroutines]
        out.append(f"### {group} set\n")
        out.append(
            f"{len(found)} of {len(positives)} labelled problems flagged, false alarms: {len(false)}, "
            f"top grower right on {sum(1 for s in found if 'wrong top' not in s.verdict)} of {len(found)}, "
            f"latency {min(latencies, default=0)}-{max(latencies, default=0)} profiles "
            f"(mean {sum(latencies) / len(latencies) if latencies else 0:.1f}); "
            f"{len(quiet_goroutines)} goroutine series without a goroutine leak all quiet and not listed.\n"
        )
        out.append(
            "| series | kind | truth | flagged@ | latency | top at flag / final | final | growth (final) | restarts "
            "| changes | flaps | verdict |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for s in rows:
            flagged = "-" if s.flagged_tick is None else str(s.flagged_tick)
            latency = "-" if s.latency is None else str(s.latency)
            tops = _short(s.top_at_flag)
            if s.top_at_flag != s.top_final:
                tops += f" / {_short(s.top_final)}"
            if s.flagged_tick is None:
                tops = "-"
            changes = ", ".join(f"{t}:{a[:4]}>{b[:4]}" for t, a, b in s.transitions) or "-"
            out.append(
                f"| {s.series} | {s.kind} | {s.truth} | {flagged} | {latency} | {tops} "
                f"| {s.final_status} | {_growth(s)} | {s.restarts} | {len(s.transitions)} ({changes}) | {s.flaps} "
                f"| {s.verdict} |"
            )
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    scores = score(args.folder)
    if args.json:
        print(json.dumps([asdict(s) for s in scores], indent=1))
    else:
        print(markdown(scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
