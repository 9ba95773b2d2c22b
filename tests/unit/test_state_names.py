"""Journal points with names by id (state/records.py `NameTable`, `NameBook`): a site's naming fields and a
resource are written once per journal segment and referred to by a stable 31-bit content id.

Checks: the record of a 64-site profile with long names holds little more than its numbers once its
names were defined; every point reads back equal to what was written (through the real file store, across a
compaction that starts a new segment, and after a restart); ids are the same whoever computes them; a
hash collision writes that point inline; a failed write defines nothing; a point whose names are missing
is refused with a clear error."""

from __future__ import annotations

import asyncio
import random
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from otel_leakproc.model import GoroutineGroup, ProfileKind, SeriesKey
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.state import SeriesTable
from otel_leakproc.state import records
from otel_leakproc.state.codec import CodecError, read_frames
from otel_leakproc.state.health import StoreUnavailableError
from otel_leakproc.state.journal import FileStore
from otel_leakproc.state.persist import StatePersistence
from otel_leakproc.state.records import NameBook, NameTable, RecordType, name_id, point_frame, point_from_payload

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
from bench_series_memory import NANOS, T0, goroutine_summary, heap_summary

KEY = SeriesKey("default", "checkout", "pod-1", ProfileKind.HEAP)
RESOURCE = {"service.name": "checkout", "service.instance.id": "pod-1", "k8s.namespace.name": "shop"}


def _read(frames: list[bytes], book: NameBook) -> list[records.PointRecord]:
    out = []
    for data in frames:
        (f,), tail = read_frames(data)
        assert tail is None
        if f.type == RecordType.NAMES:
            book.add(f.payload)
        else:
            out.append(point_from_payload(f.payload, book))
    return out


def test_a_64_site_point_holds_its_numbers_and_ids_once_its_names_are_defined() -> None:
    rng = random.Random(3)
    table, book = NameTable(), NameBook()
    sizes, inline = [], []
    for j in range(20):
        summary = heap_summary(j, (T0 + 30 * j) * NANOS, 64, rng)
        frames = table.encode([(j + 1, KEY, RESOURCE, summary)])
        table.commit()
        assert len(frames) == (2 if j == 0 else 1)  # the names once, before the first point using them
        (point,) = _read(frames, book)
        assert point.summary == summary
        assert point.resource == RESOURCE
        assert point.key == KEY
        sizes.append(len(frames[-1]))
        inline.append(len(point_frame(j + 1, KEY, RESOURCE, summary)))
    # What is left is the numbers: per site its value and object count (int32 each) and its id (int32).
    assert max(sizes[1:]) < 64 * 12 + 200, sizes
    assert max(sizes[1:]) < 0.75 * min(inline), (sizes, inline)


def test_goroutine_groups_and_a_new_site_read_back_equal() -> None:
    rng = random.Random(4)
    table, book = NameTable(), NameBook()
    key = SeriesKey("default", "checkout", "pod-1", ProfileKind.GOROUTINE)
    first = goroutine_summary(0, T0 * NANOS, 16, rng)
    extra = GoroutineGroup("select", "main.wait", "main.new", "new.go", 3, "main.spawn", 5, leaked=2)
    second = replace(goroutine_summary(1, (T0 + 30) * NANOS, 16, rng), groups=(*first.groups, extra))
    frames = table.encode([(1, key, RESOURCE, first), (2, key, {**RESOURCE, "v": "2"}, second)])
    table.commit()
    assert [read_frames(f)[0][0].type for f in frames] == [RecordType.NAMES, RecordType.POINT, RecordType.POINT]
    assert [p.summary for p in _read(frames, book)] == [first, second]


def test_ids_are_stable_content_hashes() -> None:
    site = ("main.handle", "main.go", 12, "runtime.malg")
    assert name_id("sites", site) == name_id("sites", tuple(site))
    assert name_id("sites", site) != name_id("sites", ("main.handle", "main.go", 13, "runtime.malg"))
    assert name_id("sites", site) != name_id("groups", site)
    assert 0 <= name_id("r", (("service.name", "x"),)) < 1 << 31


def test_a_collision_writes_the_point_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "name_id", lambda what, fields: 7)  # every name the same id
    table, book = NameTable(), NameBook()
    summary = heap_summary(0, T0 * NANOS, 3, random.Random(1))
    frames = table.encode([(1, KEY, RESOURCE, summary)])
    table.commit()
    # The resource took id 7; the first site collides with it: the point goes inline, defining nothing new.
    assert len(frames) == 1
    (point,) = _read(frames, book)
    assert point.summary == summary
    assert table.ids == {}


def test_a_point_without_its_names_is_refused() -> None:
    table = NameTable()
    frames = table.encode([(1, KEY, RESOURCE, heap_summary(0, T0 * NANOS, 3, random.Random(1)))])
    payload = read_frames(frames[-1])[0][0].payload
    with pytest.raises(CodecError, match="read without its journal's names"):
        point_from_payload(payload)
    with pytest.raises(CodecError, match="is not defined in its journal segment"):
        point_from_payload(payload, NameBook())


def test_names_survive_compaction_restart_and_a_failed_write(tmp_path: Path) -> None:
    config = ProcessorConfig()
    rng = random.Random(5)
    summaries = [heap_summary(j, (T0 + 30 * j) * NANOS, 64, rng) for j in range(12)]

    def persistence() -> StatePersistence:
        p = StatePersistence(SeriesTable(config, 10), FileStore(tmp_path, "never"), config)
        p.restore()
        return p

    first = persistence()
    for j, summary in enumerate(summaries[:6]):
        first.append([(KEY, RESOURCE, summary)])
        first.table.update(KEY, RESOURCE, summary)
        if j == 2:
            assert asyncio.run(first.compact())  # a new segment: its points define their names again
    defined = dict(first.names.ids)
    assert defined
    # A write that fails defines nothing: the next point defines the names again.
    store = first.store
    assert isinstance(store, FileStore)
    fd, store._fd = store._fd, None
    with pytest.raises(StoreUnavailableError):
        first.append([(KEY, RESOURCE, summaries[6])])
    store._fd = fd
    assert first.names.ids == defined
    store.close()

    second = persistence()  # a restart: a new segment
    assert not second.names.ids
    for summary in summaries[7:]:  # the refused upload is not retried
        second.append([(KEY, RESOURCE, summary)])
        second.table.update(KEY, RESOURCE, summary)
    second.store.close()
    third = persistence()
    tracked = third.table.get(KEY)
    assert tracked is not None
    assert tracked.detector.profiles == 11  # the failed write was never applied
    reference = SeriesTable(config, 10)
    for summary in summaries[:6] + summaries[7:]:
        reference.update(KEY, RESOURCE, summary)
    expected = reference.get(KEY)
    assert expected is not None
    assert tracked.detector.report() == expected.detector.report()
    third.store.close()
