"""Keeps the series table and a `SeriesStore` in step: journal every accepted point, checkpoint series in
the background, restore lazily.

- `append` (on the event loop, before the table is updated): one point record per profile, numbered with a
  global sequence number. If the store cannot write it, nothing is applied and the upload is refused.
- `compact` (background): rotate the journal, take `to_state()` of every series changed since the last
  checkpoint (in slices of at most `SLICE_SECONDS` of loop time), encode and write them in a worker thread
  (unchanged series are copied from the previous checkpoint), then commit, which drops the old journal.
- `restore` (in a thread, at start-up): read the checkpoint heads and route the journal points to their
  series by their first fields only. Each series gets its saved report at once and its detector when first
  needed (`TrackedSeries.loader`: decode the checkpoint, `from_state`, then apply its journal points);
  `materialize_some` builds the rest in the background.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from otel_leakproc.model import ProfileSummary, SeriesKey
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.detector import SeriesDetector, _report_from_state
from otel_leakproc.processor.state import SeriesTable, TrackedSeries, version_of
from otel_leakproc.state.codec import CodecError
from otel_leakproc.state.health import StoreHealth
from otel_leakproc.state.records import (
    NameBook,
    NameTable,
    checkpoint_frame,
    checkpoint_head,
    checkpoint_state,
    point_frame,
    point_from_payload,
    point_route,
    renumbered_point_frame,
    series_id,
)
from otel_leakproc.state.store import CheckpointWriter, Loaded, MemoryStore, SeriesStore

log = logging.getLogger(__name__)

SLICE_SECONDS = 0.02  # longest stretch of event-loop time spent on `to_state` or building detectors at once


@dataclass(slots=True)
class RestoreResult:
    """What a restore read, kept and dropped (its problems are logged as warnings)."""

    series: int = 0
    checkpoints: int = 0
    points: int = 0
    dropped_records: int = 0
    dropped_bytes: int = 0
    unreadable: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(slots=True)
class _Pending:
    """One series' newest checkpoint and the points after it, while a restore reads the store."""

    checkpoint: memoryview | None = None
    seq: int = 0  # seq covered by the checkpoint
    points: list[tuple[bytes | memoryview, NameBook | None]] = field(default_factory=list)


class StatePersistence:
    """See the module docstring."""

    def __init__(self, table: SeriesTable, store: SeriesStore, config: ProcessorConfig) -> None:
        self.table = table
        self.store = store
        self.config = config
        self.next_seq = 1
        self.last_seq: dict[SeriesKey, int] = {}
        self.dirty: set[SeriesKey] = set()  # changed since their last checkpoint
        self.checkpointed: set[SeriesKey] = set()  # have a checkpoint in the store
        self.stale: set[SeriesKey] = set()  # restored with journal points after their saved report
        self.unreadable = 0  # series whose saved state could not be read (started over)
        self.compactions = 0
        self.compaction_failures = 0
        self.last_compaction_unix = 0.0
        self.journal_bytes_since_compaction = 0
        self.names = NameTable()  # names the current journal segment defines (points refer to them by id)

    @property
    def health(self) -> StoreHealth:
        return self.store.health

    # -- writing ----------------------------------------------------------------------------------

    def append(
        self,
        points: Sequence[tuple[SeriesKey, dict[str, str], ProfileSummary]],
        records: Sequence[bytes | memoryview] | None = None,
    ) -> None:
        """Journal the points of one upload (all or none). `records`: the same points' payloads as another
        `serve` process encoded them (`cluster/peers.py`), journaled renumbered instead of encoded again.
        Raises StoreUnavailableError."""
        if not points:
            return
        self.store.health.check()
        seq = self.next_seq
        frames: Sequence[bytes]
        if isinstance(self.store, MemoryStore):
            frames = ()  # `state.dir: ""` keeps nothing: encoding the points would be thrown away
        elif records is not None:
            # Points handed over by another process: their records are journaled as received (inline names),
            # renumbered, which costs far less than encoding the points again.
            frames = [
                renumbered_point_frame(records[i], seq + i) or point_frame(seq + i, key, resource, summary)
                for i, (key, resource, summary) in enumerate(points)
            ]
            self.store.append_many(frames)
        else:
            frames = self.names.encode(
                [(seq + i, key, resource, summary) for i, (key, resource, summary) in enumerate(points)]
            )
            try:
                self.store.append_many(frames)
            except BaseException:
                self.names.abort()
                raise
            self.names.commit()
        self.next_seq = seq + len(points)
        for i, (key, _, _) in enumerate(points):
            self.last_seq[key] = seq + i
            self.dirty.add(key)
        self.journal_bytes_since_compaction += sum(len(f) for f in frames)

    def forget(self, key: SeriesKey) -> None:
        """A series left the table (evicted): its checkpoint is not carried over any more."""
        self.last_seq.pop(key, None)
        self.dirty.discard(key)
        self.checkpointed.discard(key)

    async def compact(self) -> bool:
        """Write a checkpoint of every series and drop the journal it covers. True on success."""
        started = time.monotonic()
        segment = self.store.rotate()
        self.names = NameTable()  # the new segment defines its names again
        writer: CheckpointWriter = await asyncio.to_thread(self.store.begin_checkpoint, segment, self.next_seq)
        self.journal_bytes_since_compaction = 0
        written: set[SeriesKey] = set()
        covered: set[SeriesKey] = set()
        try:
            batch: list[tuple[str, SeriesKey, dict[str, str], dict[str, object] | None, int]] = []
            deadline = time.perf_counter() + SLICE_SECONDS
            for tracked in self.table:
                key = tracked.key
                if self.table.get(key) is not tracked:
                    continue  # evicted while we yielded
                covered.add(key)
                if key in self.dirty or key not in self.checkpointed:
                    state = tracked.detector.to_state(arrays=True)  # encoded in the worker thread
                    self.dirty.discard(key)
                    written.add(key)
                    batch.append((series_id(key), key, dict(tracked.resource), state, self.last_seq.get(key, 0)))
                else:
                    batch.append((series_id(key), key, {}, None, 0))
                if time.perf_counter() > deadline:
                    await asyncio.to_thread(_write_batch, writer, batch)
                    batch = []
                    deadline = time.perf_counter() + SLICE_SECONDS
            await asyncio.to_thread(_write_batch, writer, batch)
            await asyncio.to_thread(writer.commit)
        except Exception as exc:
            self.dirty |= written  # their new state is not on disk: write it next time
            self.compaction_failures += 1
            await asyncio.to_thread(writer.abort)
            log.error("state: checkpoint failed (the journal is kept, nothing is lost): %s", exc)
            return False
        self.checkpointed = covered
        self.compactions += 1
        self.last_compaction_unix = time.time()
        log.info(
            "state: checkpoint of %d series (%d changed) in %.1f s",
            len(self.table),
            len(written),
            time.monotonic() - started,
        )
        return True

    # -- reading ----------------------------------------------------------------------------------

    def restore(self) -> RestoreResult:
        """Load the store into the table (lazily; see the module docstring). Runs in a worker thread
        before uploads are admitted. Raises OSError or CodecError when the store cannot be read at all."""
        started = time.monotonic()
        loaded = self.store.load()
        result = RestoreResult(
            dropped_records=loaded.dropped_records, dropped_bytes=loaded.dropped_bytes, problems=loaded.problems
        )
        for problem in loaded.problems:
            log.warning("state: %s", problem)
        pending: dict[SeriesKey, _Pending] = {}
        heads = {}
        for _, payload in loaded.checkpoints:
            head = checkpoint_head(payload)
            pending[head.key] = _Pending(payload, head.seq)
            heads[head.key] = head
            self.last_seq[head.key] = head.seq
            self.checkpointed.add(head.key)
            result.checkpoints += 1
        resources: dict[SeriesKey, dict[str, str]] = {k: dict(h.resource) for k, h in heads.items()}
        next_seq = loaded.next_seq
        for point_payload, names in loaded.points:
            try:
                seq, key = point_route(point_payload)
            except (CodecError, ValueError) as exc:
                result.dropped_records += 1
                log.warning("state: a journal record cannot be read and is skipped: %s", exc)
                continue
            next_seq = max(next_seq, seq + 1)
            p = pending.get(key)
            if p is None:
                p = pending[key] = _Pending()
                resources[key] = {}
            else:
                pending[key] = pending.pop(key)  # most recently updated last, as the table orders series
            if seq <= p.seq:
                continue  # already in the checkpoint
            p.points.append((point_payload, names))
            self.last_seq[key] = seq
            self.dirty.add(key)
            self.stale.add(key)
            result.points += 1
        self.next_seq = next_seq
        series = []
        for key, p in pending.items():
            saved = heads.get(key)
            report = None
            if saved is not None and saved.report is not None:
                try:
                    report = _report_from_state(key, saved.report)
                except (KeyError, TypeError, ValueError) as exc:
                    log.warning("state: the saved report of %s cannot be read (%s); it is rebuilt", key, exc)
            if report is None:
                report = SeriesDetector(key, self.config).report()
            tracked = TrackedSeries(key, None, resources[key], report, loader=self._loader(key, p, resources[key]))
            series.append(tracked)
        result.series = self.table.adopt(series)
        for key in [k for k in self.last_seq if self.table.get(k) is None]:
            self.forget(key)
        result.seconds = time.monotonic() - started
        return result

    def apply_loaded_points(self, loaded: Loaded) -> int:
        """Apply journal points to the table as it is (eagerly): for a table restored from an old snapshot,
        when a migration was interrupted and uploads were journaled since. Returns the points applied."""
        applied = 0
        self.next_seq = max(self.next_seq, loaded.next_seq)
        for payload, names in loaded.points:
            try:
                point = point_from_payload(payload, names)
            except (CodecError, ValueError) as exc:
                log.warning("state: a journal record cannot be read and is skipped: %s", exc)
                continue
            self.table.update(point.key, point.resource, point.summary)
            self.last_seq[point.key] = point.seq
            self.dirty.add(point.key)
            self.next_seq = max(self.next_seq, point.seq + 1)
            applied += 1
        return applied

    def _loader(self, key: SeriesKey, p: _Pending, resource: dict[str, str]) -> Callable[[], SeriesDetector]:
        def load() -> SeriesDetector:
            detector = None
            if p.checkpoint is not None:
                try:
                    detector = SeriesDetector.from_state(key, self.config, checkpoint_state(p.checkpoint))
                except (CodecError, ValueError) as exc:
                    self.unreadable += 1
                    log.error("state: the checkpoint of %s cannot be read (%s); the series starts over", key, exc)
            if detector is None:
                detector = SeriesDetector(key, self.config)
            for payload, names in p.points:
                try:
                    point = point_from_payload(payload, names)
                except (CodecError, ValueError) as exc:
                    log.warning("state: a journal point of %s cannot be read and is skipped: %s", key, exc)
                    continue
                resource.update(point.resource)
                detector.update(point.summary, version_of(point.resource))
            p.checkpoint = None
            p.points = []
            return detector

        return load

    def rebuilt_stale(self) -> list[TrackedSeries]:
        """Series restored with a stale report whose detector is built now (each returned once)."""
        done = []
        for key in list(self.stale):
            tracked = self.table.get(key)
            if tracked is None or tracked.loaded:
                self.stale.discard(key)
                if tracked is not None:
                    done.append(tracked)
        return done

    def materialize_some(self, deadline: float) -> bool:
        """Build detectors of restored series until `deadline` (perf_counter), those restored with a stale
        report first. True when none is left."""
        for key in list(self.stale):
            tracked = self.table.get(key)
            if tracked is not None and not tracked.loaded:
                tracked.materialize()
                if time.perf_counter() > deadline:
                    return False
        for tracked in self.table:
            if not tracked.loaded:
                tracked.materialize()
                if time.perf_counter() > deadline:
                    return all(t.loaded for t in self.table)
        return True


def _write_batch(
    writer: CheckpointWriter,
    batch: list[tuple[str, SeriesKey, dict[str, str], dict[str, object] | None, int]],
) -> None:
    for sid, key, resource, state, seq in batch:
        if state is None:
            if not writer.keep(sid):
                raise CodecError(f"series {sid!r} is unchanged but has no previous checkpoint")
        else:
            writer.put(sid, checkpoint_frame(seq, key, resource, state))
