"""Tenant isolation in the series table: quotas per tenant, and a full table never evicts a smaller tenant."""

from __future__ import annotations

from pathlib import Path

from old_snapshot import snapshot

from otel_leakproc.model import ProfileKind, ProfileSummary, SeriesKey
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.state import SeriesTable
from otel_leakproc.receiver.decode import DecodeLimits, decode_profile

HEAP = Path(__file__).resolve().parents[2] / "testdata" / "pprof" / "go_heap_steady_leak_0059.pb.gz"
SUMMARY: ProfileSummary = decode_profile(HEAP.read_bytes(), DecodeLimits())


def key(tenant: str, service: str) -> SeriesKey:
    return SeriesKey(tenant, service, "", ProfileKind.HEAP)


def test_a_tenant_at_its_quota_evicts_its_own_oldest_series_only() -> None:
    table = SeriesTable(ProcessorConfig(), max_series=100, max_per_tenant=3)
    table.update(key("quiet", "a"), {}, SUMMARY)
    evicted = []
    for i in range(10):
        evicted.extend(table.update(key("flood", f"s{i}"), {}, SUMMARY).evicted)
    assert evicted == [key("flood", f"s{i}") for i in range(7)]
    assert sum(t.key.tenant == "flood" for t in table) == 3
    assert table.get(key("quiet", "a")) is not None


def test_a_full_table_evicts_from_the_tenant_holding_the_most() -> None:
    table = SeriesTable(ProcessorConfig(), max_series=6, max_per_tenant=6)
    table.update(key("quiet", "a"), {}, SUMMARY)  # the least recently updated series of all
    table.update(key("quiet", "b"), {}, SUMMARY)
    for i in range(4):
        table.update(key("flood", f"s{i}"), {}, SUMMARY)
    update = table.update(key("flood", "s4"), {}, SUMMARY)
    assert update.evicted == (key("flood", "s0"),)
    # A third tenant's first series is paid for by the largest tenant, not by quiet's older series.
    assert table.update(key("new", "x"), {}, SUMMARY).evicted == (key("flood", "s1"),)
    assert {t.key for t in table if t.key.tenant == "quiet"} == {key("quiet", "a"), key("quiet", "b")}
    assert len(table) == 6


def test_restore_applies_a_lowered_quota_keeping_the_most_recent() -> None:
    table = SeriesTable(ProcessorConfig(), max_series=10, max_per_tenant=10)
    for i in range(5):
        table.update(key("t", f"s{i}"), {}, SUMMARY)
    smaller = SeriesTable(ProcessorConfig(), max_series=10, max_per_tenant=2)
    assert smaller.restore(snapshot(table)) == 2
    assert [t.key.service for t in smaller] == ["s3", "s4"]
    assert smaller.update(key("t", "s5"), {}, SUMMARY).evicted == (key("t", "s3"),)
