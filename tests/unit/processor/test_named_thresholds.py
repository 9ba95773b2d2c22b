"""The thresholds that used to be written in the evaluators are settings, and the detectors obey them.

Real corpus series: with the defaults they are flagged (as the corpus labels say); a setting pushed to an
extreme turns the flag off, which shows the detector reads it.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest

from otel_leakproc.model import ProfileKind, ProfileSummary, SeriesKey, SeriesReport
from otel_leakproc.processor.config import ContentionConfig, GoroutineConfig, ProcessorConfig
from otel_leakproc.processor.detector import SeriesDetector
from otel_leakproc.receiver.decode import DecodeLimits, decode_profile

CORPUS = Path(__file__).parents[2] / "testdata" / "corpus"
DEFAULT = ProcessorConfig()


@cache
def series(folder: str, kind: ProfileKind) -> tuple[ProfileSummary, ...]:
    files = sorted((CORPUS / folder).glob("*.pb.gz"))
    return tuple(
        sorted(
            (decode_profile(f.read_bytes(), DecodeLimits(), kind_hint=kind) for f in files), key=lambda s: s.time_nanos
        )
    )


def final(folder: str, kind: ProfileKind, config: ProcessorConfig) -> SeriesReport:
    detector = SeriesDetector(SeriesKey("", "svc", "", kind), config)
    for summary in series(folder, kind):
        detector.update(summary)
    return detector.report()


@pytest.mark.parametrize(
    ("folder", "kind", "config"),
    [
        (
            "lock_contention/mutex",
            ProfileKind.MUTEX,
            replace(DEFAULT, contention=ContentionConfig(recent_fraction=0.9, high_delay_rate=1e6)),
        ),
        (
            "goroutine_leak/goroutine",
            ProfileKind.GOROUTINE,
            replace(DEFAULT, goroutine=GoroutineConfig(ongoing_ratio=1e6)),
        ),
    ],
)
def test_an_extreme_setting_turns_a_real_flag_off(folder: str, kind: ProfileKind, config: ProcessorConfig) -> None:
    assert final(folder, kind, DEFAULT).status.flagged
    assert not final(folder, kind, config).status.flagged


def test_auto_bucket_settings_reach_the_heap_evidence() -> None:
    assert final("steady_leak/heap", ProfileKind.HEAP, DEFAULT).evidence.bucket_seconds == 0.0  # one a minute
    config = replace(DEFAULT, auto_bucket_below_seconds=120.0, auto_bucket_seconds=90.0)
    assert final("steady_leak/heap", ProfileKind.HEAP, config).evidence.bucket_seconds == 90.0
