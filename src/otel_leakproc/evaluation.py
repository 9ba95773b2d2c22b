"""Scores the detectors on a labelled corpus of real profile series (see the corpus README).

For every scenario folder listed in `labels.json` it runs `analyze` (keeping the status after every
profile) and compares with the labels: was each leak flagged, how many profiles after it started, was
the labelled function ranked first, and was anything flagged where nothing leaks (or after a restart).
Run it with `make evaluate CORPUS=path/to/corpus` or `python -m otel_leakproc.evaluation PATH`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otel_leakproc.analyze import AnalyzeOptions, SeriesResult, analyze_paths
from otel_leakproc.config import load_settings
from otel_leakproc.model import FixVerdict, ProfileKind, SeriesReport

BASE_SECONDS = 1_790_000_000  # corpus convention: profile NNNN was taken at BASE + NNNN * 60 s
TICK_SECONDS = 60
_NUMBER = re.compile(r"(\d+)")


def corpus_time(file: str | Path) -> int:
    """Collection time of a corpus text dump, from its profile number (dumps carry no timestamp)."""
    return (BASE_SECONDS + profile_number(file) * TICK_SECONDS) * 1_000_000_000


def profile_number(file: str | Path) -> int:
    """A corpus file's profile number (`NNNN.pb.gz`; 0 when the name has none)."""
    match = _NUMBER.search(Path(file).stem)
    return int(match.group(1)) if match else 0


@dataclass(frozen=True, slots=True)
class Case:
    """One series of one scenario and what it should show."""

    scenario: str
    source: str
    kind: ProfileKind
    positive: bool
    function: str | None
    start_tick: int
    restart_tick: int | None
    flagged_tick: int | None
    flagged_after_restart: bool
    top1_at_flag: str | None
    top1_final: str | None
    final_status: str

    @property
    def detected(self) -> bool:
        return self.flagged_tick is not None and (self.restart_tick is None or self.flagged_tick < self.restart_tick)

    @property
    def false_alarm(self) -> bool:
        return (not self.positive and self.flagged_tick is not None) or self.flagged_after_restart

    @property
    def latency(self) -> int | None:
        return None if self.flagged_tick is None else self.flagged_tick - self.start_tick

    @property
    def top1_ok(self) -> bool:
        return self.function is not None and self.top1_at_flag == self.function and self.top1_final == self.function


def _tick(nanos: int | None, first_nanos: int) -> int | None:
    return None if nanos is None else round((nanos - first_nanos) / 1e9 / TICK_SECONDS)


def _expectation(label: dict[str, Any], kind: ProfileKind) -> tuple[bool, str | None, int]:
    if kind is ProfileKind.HEAP:
        return bool(label.get("heap_leak")), label.get("leak_function"), int(label.get("leak_start_tick") or 0)
    if kind in (ProfileKind.GOROUTINE, ProfileKind.GOROUTINELEAK):
        start = label.get("goroutine_leak_start_tick", label.get("leak_start_tick")) or 0
        return bool(label.get("goroutine_leak")), label.get("goroutine_leak_function"), int(start)
    function = (
        label.get("contention_function") if kind is ProfileKind.MUTEX else label.get("contention_waiter_function")
    )
    return bool(label.get("contention")), function, int(label.get("contention_start_tick") or 0)


def evaluate_series(scenario: str, label: dict[str, Any], result: SeriesResult, first_tick: int = 0) -> Case:
    """Compare one analysed series with its scenario's label (`first_tick`: the profile number of its
    first profile, when the series was thinned)."""
    kind = result.report.key.kind
    positive, function, start = _expectation(label, kind)
    restart = label.get("restart_tick")
    # A deploy that did not fix the leak: a flag after the restart is right, not a false alarm.
    leaks_after_restart = kind is ProfileKind.HEAP and bool(label.get("heap_leak_after_restart"))
    timeline = result.timeline
    first = timeline[0].last_time_nanos if timeline else 0
    flagged_tick = None
    top1_at_flag = None
    flagged_after_restart = False
    for report in timeline:
        tick = (_tick(report.last_time_nanos, first) or 0) + first_tick
        if report.status.flagged and flagged_tick is None:
            flagged_tick = tick
            top1_at_flag = _top1(report)
        # A flag held across a deploy while its fix verification is pending is the old process's verdict,
        # not one on the new version (it resolves, or is confirmed as not fixed, at the comparison age).
        pending = report.fix is not None and report.fix.verdict is FixVerdict.PENDING
        if (
            restart is not None
            and tick >= restart
            and report.status.flagged
            and not leaks_after_restart
            and not pending
        ):
            flagged_after_restart = True
    final: SeriesReport = result.report
    if restart is not None and flagged_tick is not None:  # attribution judged while the leak was live
        live = [r for r in timeline if (_tick(r.last_time_nanos, first) or 0) + first_tick < restart]
        final = live[-1] if live else final
    return Case(
        scenario=scenario,
        source=result.source,
        kind=kind,
        positive=positive,
        function=function,
        start_tick=start,
        restart_tick=restart,
        flagged_tick=flagged_tick,
        flagged_after_restart=flagged_after_restart,
        top1_at_flag=top1_at_flag,
        top1_final=_top1(final),
        final_status=result.report.status.value,
    )


def _top1(report: SeriesReport) -> str | None:
    return report.top_growers[0].function if report.top_growers else None


def evaluate_corpus(corpus: Path, config_path: str | None = None, every: int = 1, phase: int = 0) -> list[Case]:
    """Run every labelled scenario of a corpus folder and return one case per series.

    `every` > 1 keeps only profiles whose number is `phase` modulo `every`: the same series as a service
    pushing every `every` minutes would send.
    """
    if every < 1 or not 0 <= phase < every:
        raise ValueError(f"every must be >= 1 and phase in [0, every), got every={every} phase={phase}")
    labels: dict[str, dict[str, Any]] = json.loads((corpus / "labels.json").read_text())
    settings = load_settings(config_path)
    select = None if every == 1 else (lambda f: profile_number(f) % every == phase)
    options = AnalyzeOptions(keep_timeline=True, time_of=corpus_time, select=select)
    cases = []
    for scenario, label in sorted(labels.items()):
        folder = corpus / scenario
        if not folder.is_dir():
            continue
        for result in analyze_paths([str(folder)], settings.processor, settings.decode.to_limits(), options):
            cases.append(evaluate_series(scenario, label, result, phase))
    return cases


def summarize(cases: Sequence[Case]) -> dict[str, Any]:
    """Precision, recall, top-1 attribution accuracy and latency over all cases."""
    tp = sum(1 for c in cases if c.positive and c.detected)
    fn = sum(1 for c in cases if c.positive and not c.detected)
    fp = sum(1 for c in cases if c.false_alarm)
    positives = [c for c in cases if c.positive and c.detected]
    latencies = [c.latency for c in positives if c.latency is not None]
    return {
        "series": len(cases),
        "true_positives": tp,
        "false_negatives": fn,
        "false_alarms": fp,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "top1_accuracy": sum(1 for c in positives if c.top1_ok) / len(positives) if positives else 1.0,
        "latency_max": max(latencies) if latencies else None,
        "latency_mean": sum(latencies) / len(latencies) if latencies else None,
    }


def render(cases: Sequence[Case]) -> str:
    lines = [
        f"{'SCENARIO':<26} {'SERIES':<22} {'TRUTH':<6} {'FLAGGED@':>8} {'LATENCY':>7} {'TOP-1':<6} FINAL / TOP GROWER"
    ]
    for c in cases:
        truth = "leak" if c.positive else "-"
        flagged = "-" if c.flagged_tick is None else str(c.flagged_tick)
        latency = "-" if not c.positive or c.latency is None else str(c.latency)
        verdict = "ok" if c.top1_ok else ("MISS" if c.positive else "")
        if c.false_alarm:
            verdict = "FALSE"
        where = Path(c.source).name
        lines.append(
            f"{c.scenario:<26} {c.kind.value + ' (' + where + ')':<22.22} {truth:<6} {flagged:>8} {latency:>7} "
            f"{verdict:<6} {c.final_status} / {c.top1_final or '-'}"
        )
    s = summarize(cases)
    lines.append("")
    lines.append(
        f"precision {s['precision']:.2f}  recall {s['recall']:.2f}  top-1 {s['top1_accuracy']:.2f}  "
        f"false alarms {s['false_alarms']}  missed {s['false_negatives']}  "
        f"latency mean {s['latency_mean'] if s['latency_mean'] is None else round(s['latency_mean'], 1)} "
        f"max {s['latency_max']} profiles"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="score the detectors on a labelled corpus")
    parser.add_argument("corpus", help="corpus folder with labels.json")
    parser.add_argument("--config", help="config file (default: embedded defaults)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--every", type=int, default=1, help="keep every N-th profile (a slower push interval)")
    parser.add_argument("--phase", type=int, default=0, help="with --every: start at this profile number")
    args = parser.parse_args(argv)
    try:
        cases = evaluate_corpus(Path(args.corpus), args.config, args.every, args.phase)
    except ValueError as exc:
        parser.error(str(exc))
    if args.json:
        print(json.dumps({"summary": summarize(cases)}, indent=2))
    else:
        print(render(cases))
    return 0


if __name__ == "__main__":
    sys.exit(main())
