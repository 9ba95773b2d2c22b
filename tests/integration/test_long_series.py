"""A real 240-profile series (tests/testdata/long-series) through the default and the compact history.

The committed corpora hold at most 60 profiles per series, so they never reach the merged part of a
compact history (`processor.fine_points: 60`). This series does: a sawtooth that is not a leak, quiet at
every profile with the default (every point whole) and flagged from its 199th profile with the compact
history, the false alarm that made the default keep every point whole (docs/detection.md).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from otel_leakproc.analyze import AnalyzeOptions, analyze_paths
from otel_leakproc.config import load_settings
from otel_leakproc.evaluation import corpus_time, evaluate_series

LONG = Path(__file__).parent.parent / "testdata" / "long-series"
SCENARIO = "periodic_flush_gogc400"

pytestmark = pytest.mark.corpus


def _flagged_ticks(fine_points: int | None) -> tuple[list[int], int]:
    settings = load_settings(None)
    config = settings.processor if fine_points is None else replace(settings.processor, fine_points=fine_points)
    label = json.loads((LONG / "labels.json").read_text())[SCENARIO]
    options = AnalyzeOptions(keep_timeline=True, time_of=corpus_time)
    [result] = analyze_paths([str(LONG / SCENARIO)], config, settings.decode.to_limits(), options)
    case = evaluate_series(SCENARIO, label, result)
    assert not case.positive
    first = result.timeline[0].last_time_nanos
    ticks = [round((r.last_time_nanos - first) / 60e9) for r in result.timeline if r.status.flagged]
    return ticks, len(result.timeline)


def test_the_default_history_keeps_a_long_sawtooth_quiet() -> None:
    flagged, profiles = _flagged_ticks(None)
    assert profiles == 240
    assert flagged == []


def test_the_compact_history_raises_the_false_alarm_the_default_avoids() -> None:
    flagged, _ = _flagged_ticks(60)
    assert flagged, "the compact history no longer flags the sawtooth: the long-series study needs redoing"
    assert min(flagged) >= 120  # only once merged points (past the newest 60 of 120 in the window) take part
