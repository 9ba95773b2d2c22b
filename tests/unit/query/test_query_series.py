"""The read side's one interface over the local table: what a selection admits, the API's order, and
timelines left out on request."""

from __future__ import annotations

import asyncio
from pathlib import Path

from otel_leakproc.model import ProfileKind, SeriesKey
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.state import SeriesTable
from otel_leakproc.query.series import Selection, SeriesReader, TableReader
from otel_leakproc.receiver.decode import DecodeLimits, decode_profile

HEAP = Path(__file__).resolve().parents[2] / "testdata" / "pprof" / "go_heap_steady_leak_0059.pb.gz"
SUMMARY = decode_profile(HEAP.read_bytes(), DecodeLimits())


def reader() -> SeriesReader:
    table = SeriesTable(ProcessorConfig(), max_series=10)
    for tenant, service in (("b", "z"), ("a", "y"), ("a", "x"), ("c", "w")):
        table.update(SeriesKey(tenant, service, "pod", ProfileKind.HEAP), {"service.name": service}, SUMMARY)
    return TableReader(table)


def ids(selection: Selection) -> list[str]:
    return [o["id"] for o in asyncio.run(reader().series(selection))]


def test_every_series_in_the_api_order_with_its_timeline() -> None:
    out = asyncio.run(reader().series(Selection.from_query(None, {})))
    assert [o["id"] for o in out] == ["a/x/pod/heap", "a/y/pod/heap", "b/z/pod/heap", "c/w/pod/heap"]
    assert all(o["status"] == "insufficient_data" and len(o["timeline"]) == 1 for o in out)


def test_visible_tenants_and_filters_narrow_the_list() -> None:
    assert ids(Selection.from_query(frozenset({"a", "c"}), {})) == ["a/x/pod/heap", "a/y/pod/heap", "c/w/pod/heap"]
    assert ids(Selection.from_query(frozenset({"a", "c"}), {"tenant": "b"})) == []
    assert ids(Selection.from_query(None, {"service": "y", "kind": "heap"})) == ["a/y/pod/heap"]
    assert ids(Selection.from_query(None, {"status": "confirmed"})) == []
    assert ids(Selection.from_query(None, {"page": "2"})) == ids(Selection.from_query(None, {}))  # not a filter


def test_timeline_0_leaves_timelines_out() -> None:
    out = asyncio.run(reader().series(Selection.from_query(None, {"timeline": "0"})))
    assert len(out) == 4
    assert all("timeline" not in o for o in out)
