"""The evaluation's reading of a restart: a flag after it is a false alarm only when the leak was fixed."""

from __future__ import annotations

from otel_leakproc.analyze import SeriesResult
from otel_leakproc.evaluation import evaluate_series
from otel_leakproc.model import Grower, ProfileKind, SeriesKey, SeriesReport, Status

MINUTE = 60 * 10**9
LEAK = "main.(*connectionRegistry).trackConnection"


def _report(tick: int, status: Status, kind: ProfileKind = ProfileKind.HEAP) -> SeriesReport:
    grower = Grower(function=LEAK, file="main.go", line=1, growth_per_hour=1.0, share=1.0, current=1.0)
    return SeriesReport(
        key=SeriesKey("", "svc", "", kind),
        profiles=tick + 1,
        first_time_nanos=0,
        last_time_nanos=tick * MINUTE,
        status=status,
        first_flagged_at_nanos=None,
        score=0.0,
        current=0.0,
        growth_per_hour=0.0,
        time_to_limit_seconds=None,
        restarts=0,
        top_growers=(grower,) if status.flagged else (),
    )


def _result(kind: ProfileKind = ProfileKind.HEAP) -> SeriesResult:
    # flagged at 2, restart at 4 (ok), flagged again at 6
    statuses = [Status.OK, Status.OK, Status.SUSPECTED, Status.SUSPECTED, Status.OK, Status.OK, Status.SUSPECTED]
    timeline = [_report(t, s, kind) for t, s in enumerate(statuses)]
    return SeriesResult("svc/heap", timeline[-1], timeline)


def _label(after: bool) -> dict[str, object]:
    return {
        "heap_leak": True,
        "leak_function": LEAK,
        "leak_start_tick": 0,
        "restart_tick": 4,
        "heap_leak_after_restart": after,
    }


def test_flag_after_a_fixing_restart_is_a_false_alarm() -> None:
    case = evaluate_series("deploy_fixes", _label(after=False), _result())
    assert case.detected
    assert case.flagged_after_restart
    assert case.false_alarm


def test_flag_after_a_restart_that_did_not_fix_is_right() -> None:
    case = evaluate_series("deploy_does_not_fix", _label(after=True), _result())
    assert case.detected
    assert case.flagged_tick == 2
    assert not case.flagged_after_restart
    assert not case.false_alarm
    assert case.top1_ok


def test_heap_leak_after_restart_says_nothing_of_goroutine_series() -> None:
    label = _label(after=True) | {"goroutine_leak": False}
    case = evaluate_series("deploy_does_not_fix", label, _result(ProfileKind.GOROUTINE))
    assert not case.positive
    assert case.false_alarm
