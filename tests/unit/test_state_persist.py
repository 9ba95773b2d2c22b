"""`StatePersistence` over the real file store: checkpoint + journal restore gives every series back as it
was, a crash between a checkpoint's rename and the journal's deletion applies nothing twice, evicted series
are not carried over, and a store that cannot write refuses points without changing the table."""

from __future__ import annotations

import asyncio
from functools import cache
from pathlib import Path

import pytest

from otel_leakproc.analyze import load_series
from otel_leakproc.model import ProfileKind, ProfileSummary, SeriesKey
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.state import SeriesTable
from otel_leakproc.receiver.decode import DecodeLimits
from otel_leakproc.state.health import StoreUnavailableError
from otel_leakproc.state.journal import CHECKPOINT_FILE, FileStore
from otel_leakproc.state.persist import StatePersistence
from otel_leakproc.state.store import MemoryStore

CORPUS = Path(__file__).parents[1] / "testdata" / "corpus"
CONFIG = ProcessorConfig()
KEYS = [SeriesKey("t", "checkout", f"pod-{i}", ProfileKind.HEAP) for i in range(3)]


@cache
def profiles() -> tuple[ProfileSummary, ...]:
    by_kind, errors = load_series(sorted((CORPUS / "steady_leak" / "heap").glob("*.pb.gz")), DecodeLimits(), None)
    assert not errors
    return tuple(by_kind[ProfileKind.HEAP])


def feed(persistence: StatePersistence, start: int, stop: int) -> None:
    for summary in profiles()[start:stop]:
        for key in KEYS:
            persistence.append([(key, {"k8s.pod.name": key.instance}, summary)])
            persistence.table.update(key, {"k8s.pod.name": key.instance}, summary)


def restored(folder: Path, max_series: int = 100) -> SeriesTable:
    table = SeriesTable(CONFIG, max_series)
    persistence = StatePersistence(table, FileStore(folder, "never"), CONFIG)
    persistence.restore()
    # Series with journal points after their checkpoint are the ones whose saved report is stale.
    assert persistence.stale == {t.key for t in table if persistence.dirty and t.key in persistence.dirty}
    return table


def assert_same(original: SeriesTable, copy: SeriesTable) -> None:
    assert [t.key for t in copy] == [t.key for t in original]
    for t in original:
        other = copy.get(t.key)
        assert other is not None
        other.materialize()  # until then a series with journal points after its checkpoint shows the saved report
        assert other.report == t.report
        assert other.detector.report() == t.detector.report()
        assert other.detector.timeline() == t.detector.timeline()
        assert other.resource == t.resource


def test_checkpoint_plus_journal_restores_every_series_as_it_was(tmp_path: Path) -> None:
    table = SeriesTable(CONFIG, 100)
    persistence = StatePersistence(table, FileStore(tmp_path, "interval"), CONFIG)
    persistence.restore()
    feed(persistence, 0, 25)
    assert asyncio.run(persistence.compact())
    assert (tmp_path / CHECKPOINT_FILE).exists()
    assert len(list(tmp_path.glob("journal.*.log"))) == 1  # the covered segment is gone
    feed(persistence, 25, 40)  # only in the journal
    assert_same(table, restored(tmp_path))
    # A second checkpoint carries unchanged series over and rewrites the changed one.
    persistence.append([(KEYS[0], {}, profiles()[40])])
    table.update(KEYS[0], {}, profiles()[40])
    assert asyncio.run(persistence.compact())
    assert_same(table, restored(tmp_path))


def test_a_crash_after_the_checkpoint_rename_applies_no_point_twice(tmp_path: Path) -> None:
    table = SeriesTable(CONFIG, 100)
    persistence = StatePersistence(table, FileStore(tmp_path, "never"), CONFIG)
    persistence.restore()
    feed(persistence, 0, 30)
    (segment,) = tmp_path.glob("journal.*.log")
    kept = segment.read_bytes()
    assert asyncio.run(persistence.compact())
    segment.write_bytes(kept)  # as if the process died before deleting the covered segment
    copy = restored(tmp_path)
    assert copy.get(KEYS[0]).report.profiles == 30  # type: ignore[union-attr]
    assert_same(table, copy)


def test_evicted_series_are_not_carried_over(tmp_path: Path) -> None:
    table = SeriesTable(CONFIG, 2)
    persistence = StatePersistence(table, FileStore(tmp_path, "never"), CONFIG)
    persistence.restore()
    for summary in profiles()[:5]:
        for key in KEYS:  # three series, room for two: each new one evicts the stalest
            persistence.append([(key, {}, summary)])
            for evicted in table.update(key, {}, summary).evicted:
                persistence.forget(evicted)
    assert asyncio.run(persistence.compact())
    assert [t.key for t in restored(tmp_path, 2)] == [t.key for t in table]


def test_a_store_that_cannot_write_refuses_points_and_recovers(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    table = SeriesTable(CONFIG, 100)
    store = FileStore(folder, "always")
    persistence = StatePersistence(table, store, CONFIG)
    persistence.restore()
    feed(persistence, 0, 1)
    store.health.fail("cannot write the journal: test")
    with pytest.raises(StoreUnavailableError, match="cannot write the journal: test"):
        persistence.append([(KEYS[0], {}, profiles()[1])])
    store.probe()  # the folder is fine: the probe record works and health recovers
    assert store.health.ok
    persistence.append([(KEYS[0], {}, profiles()[1])])
    assert persistence.next_seq == 5  # 3 series x 1 point, then the refused point took no number
    store.close()
    copy = restored(folder)
    assert copy.get(KEYS[0]).detector.report().profiles == 2  # type: ignore[union-attr]


def test_a_memory_store_is_handed_no_journal_frames_but_the_points_are_numbered_and_marked_dirty() -> None:
    store = MemoryStore()
    handed: list[int] = []
    store.append_many = lambda frames: handed.append(len(frames))  # type: ignore[method-assign]
    persistence = StatePersistence(SeriesTable(CONFIG, 100), store, CONFIG)
    feed(persistence, 0, 4)
    assert handed == []  # `state.dir: ""` keeps nothing: no point is encoded for it
    assert persistence.journal_bytes_since_compaction == 0
    assert persistence.next_seq == 1 + 4 * len(KEYS)
    assert persistence.dirty == set(KEYS)
    assert sorted(persistence.last_seq.values()) == list(range(1 + 3 * len(KEYS), 1 + 4 * len(KEYS)))
