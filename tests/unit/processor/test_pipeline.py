"""The processor stage's subscription: every listener hears what changed, in the order it subscribed, and
one that fails keeps neither ingestion nor the listeners after it from hearing."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from otel_leakproc.model import LeakEvent, ProfileKind, SeriesKey, SeriesReport
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.pipeline import Pipeline
from otel_leakproc.processor.state import SeriesTable
from otel_leakproc.receiver.decode import DecodeLimits, decode_profile
from otel_leakproc.receiver.uploads import DecodedProfile, UploadRequest, UploadResult
from otel_leakproc.telemetry import Telemetry

HEAP = Path(__file__).resolve().parents[2] / "testdata" / "pprof" / "go_heap_steady_leak_0059.pb.gz"
SUMMARY = decode_profile(HEAP.read_bytes(), DecodeLimits())
REQUEST = UploadRequest(dialect="ingest", body=b"", content_type="", content_encoding="", query=(), received_nanos=0)


class Recorder:
    def __init__(self, heard: list[str], name: str, *, fail: bool = False) -> None:
        self.heard = heard
        self.name = name
        self.fail = fail

    def on_report(self, report: SeriesReport, resource: Mapping[str, str]) -> None:
        self.heard.append(f"{self.name} report {report.key.service}")
        if self.fail:
            raise RuntimeError("this listener fails")

    def on_event(self, event: LeakEvent) -> None:
        self.heard.append(f"{self.name} event")

    def forget(self, key: SeriesKey) -> None:
        self.heard.append(f"{self.name} forget {key.service}")


def upload(service: str) -> UploadResult:
    return UploadResult((DecodedProfile(service, "", {"service.name": service}, SUMMARY),))


def test_listeners_hear_reports_and_evictions_in_subscription_order_and_a_failing_one_stops_nobody() -> None:
    heard: list[str] = []
    table = SeriesTable(ProcessorConfig(), max_series=1)
    pipeline = Pipeline(table, Telemetry())
    pipeline.subscribe(Recorder(heard, "first", fail=True))
    pipeline.subscribe(Recorder(heard, "second"))
    pipeline.accept("t", REQUEST, upload("a"))
    assert heard == ["first report a", "second report a"]
    heard.clear()
    pipeline.accept("t", REQUEST, upload("b"))  # the table holds one series: a is evicted
    assert heard == ["first forget a", "second forget a", "first report b", "second report b"]
    assert [t.key for t in table] == [SeriesKey("t", "b", "", ProfileKind.HEAP)]


def test_a_listener_subscribed_later_hears_only_what_follows() -> None:
    heard: list[str] = []
    pipeline = Pipeline(SeriesTable(ProcessorConfig(), max_series=10), Telemetry())
    pipeline.accept("t", REQUEST, upload("a"))
    pipeline.subscribe(Recorder(heard, "late"))
    assert heard == []
    pipeline.restored()  # after a restore every series is reported again
    assert heard == ["late report a"]
