"""The file backend of the series store: journal segments and one checkpoint file in `state.dir`.

Files:
- `journal.<segment>.log`: point records appended as uploads are accepted (`os.write` on a descriptor
  opened with O_APPEND: once it returns, the record survives a SIGKILL of the process; surviving a machine
  crash is the fsync policy's business, below).
- `checkpoint.bin`: a CHECKPOINT_HEAD record (the journal segment that follows it and the next sequence
  number), then one CHECKPOINT record per series. Replaced atomically (temporary file, fsync, rename,
  folder fsync); the journal segments it covers are deleted after the rename.

fsync policy (`state.fsync`), as Redis' appendfsync:
- `always`: fdatasync after every record, before the upload is answered. A machine crash loses nothing
  answered; each upload waits for the disk.
- `interval` (default, `state.fsync_interval_ms`, 1000): a background fdatasync at that period when
  something was written. A machine crash (power loss, kernel panic) loses at most about that much.
- `never`: the kernel writes back when it wants (typically within 30 s). A process crash still loses nothing.

A record that fails its checksum or is cut short ends the readable journal: it and anything after it are
dropped, counted and logged, and the file is truncated to the last good record so new records never follow
garbage. A write that fails (disk full, I/O error) truncates the partial record away, marks the store
unavailable and raises; a probe record is tried periodically until writes work again.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from otel_leakproc.state.codec import CodecError, decode_value, read_frames
from otel_leakproc.state.health import StateUnusableError, StoreHealth, StoreUnavailableError
from otel_leakproc.state.records import (
    NameBook,
    RecordType,
    checkpoint_file_head,
    checkpoint_route,
    probe_frame,
    series_id,
)
from otel_leakproc.state.store import Loaded

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.bin"
_SEGMENT = re.compile(r"^journal\.(\d{8})\.log$")
FsyncPolicy = Literal["always", "interval", "never"]


def segment_name(segment: int) -> str:
    return f"journal.{segment:08d}.log"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileStore:
    """See the module docstring. Not thread-safe except where noted: `append`/`rotate` run on the event
    loop; `sync`, the checkpoint writer and `load` may run in a worker thread."""

    def __init__(self, directory: str | os.PathLike[str], fsync: FsyncPolicy = "interval") -> None:
        self.directory = Path(directory)
        self.fsync = fsync
        self.health = StoreHealth()
        self.segment = 0
        self._fd: int | None = None
        self._size = 0  # bytes of whole records in the current segment
        self._unsynced = False
        self._fd_lock = threading.Lock()  # the periodic fsync (a thread) never uses a descriptor being closed
        self._index: dict[str, tuple[int, int]] = {}  # series id -> (offset, length) in checkpoint.bin
        self.appended_bytes = 0
        self.appended_records = 0

    def describe(self) -> str:
        return f"{self.directory} (journal + checkpoint, fsync {self.fsync})"

    # -- reading ----------------------------------------------------------------------------------

    def load(self) -> Loaded:
        """Read the checkpoint and the journal after it; open a new segment for appending.

        Raises:
            OSError: the folder cannot be created or read.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        loaded = Loaded()
        first_segment = 0
        path = self.directory / CHECKPOINT_FILE
        if path.exists():
            first_segment, loaded.next_seq = self._load_checkpoint(path.read_bytes(), loaded)
        segments = sorted(
            (int(m.group(1)), p) for p in self.directory.iterdir() if (m := _SEGMENT.match(p.name)) is not None
        )
        for segment, seg_path in segments:
            if segment < first_segment:
                seg_path.unlink()  # left over by a crash between a checkpoint's rename and the cleanup
                continue
            self._load_segment(seg_path, loaded)
        self.segment = max([first_segment, *(s for s, _ in segments)]) + 1
        self._open_segment()
        return loaded

    def _load_checkpoint(self, data: bytes, loaded: Loaded) -> tuple[int, int]:
        frames, tail = read_frames(data)
        if not frames or frames[0].type != RecordType.CHECKPOINT_HEAD:
            raise CodecError(f"{CHECKPOINT_FILE}: does not start with a checkpoint head")
        head = decode_value(frames[0].payload)
        segment, next_seq = int(head["journal_epoch"]), int(head["next_seq"])
        start = frames[0].end
        for f in frames[1:]:
            if f.type == RecordType.CHECKPOINT:
                payload_view = memoryview(f.payload)
                try:
                    sid = series_id(checkpoint_route(payload_view)[1])
                except (CodecError, ValueError) as exc:
                    loaded.dropped_records += 1
                    loaded.problems.append(f"{CHECKPOINT_FILE}: a series checkpoint is unreadable: {exc}")
                    start = f.end
                    continue
                loaded.checkpoints.append((sid, payload_view))
                self._index[sid] = (start, f.end - start)
            start = f.end
        if tail is not None:
            loaded.dropped_bytes += len(data) - tail.offset
            loaded.dropped_records += 1
            loaded.problems.append(f"{CHECKPOINT_FILE}: {tail.reason} at byte {tail.offset}; the rest is dropped")
        return segment, next_seq

    def _load_segment(self, path: Path, loaded: Loaded) -> None:
        data = path.read_bytes()
        frames, tail = read_frames(data)
        names = NameBook()  # the names this segment defines, for its points written by id
        for i, f in enumerate(frames):
            if f.type == RecordType.POINT:
                loaded.points.append((f.payload, names))
            elif f.type == RecordType.NAMES:
                try:
                    names.add(f.payload)
                except CodecError as exc:  # intact but unreadable (a newer release?): its points fail later
                    loaded.dropped_records += 1
                    loaded.problems.append(f"{path.name}: names record {i} is unreadable: {exc}")
        if tail is not None:
            dropped = len(data) - tail.offset
            loaded.dropped_bytes += dropped
            loaded.dropped_records += 1
            loaded.problems.append(
                f"{path.name}: {tail.reason} at byte {tail.offset}; dropped the last {dropped} bytes (the record"
                " was never acknowledged if it was the last one written)"
            )
            with open(path, "r+b") as fh:  # so that nothing is ever appended after garbage
                fh.truncate(tail.offset)
                os.fsync(fh.fileno())

    # -- the journal -------------------------------------------------------------------------------

    def _open_segment(self) -> None:
        path = self.directory / segment_name(self.segment)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size
        _fsync_dir(self.directory)

    def append(self, frame: bytes) -> None:
        self.append_many((frame,))

    def append_many(self, frames: Sequence[bytes]) -> None:
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        self._write(data)
        self.appended_records += len(frames)
        self.appended_bytes += len(data)

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            raise StoreUnavailableError("state store unavailable: the journal is not open")
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)")
            if self.fsync == "always":
                os.fdatasync(self._fd)
            else:
                self._unsynced = True
        except OSError as exc:
            self._cut_back()
            self.health.fail(f"cannot write the journal {self.directory / segment_name(self.segment)}: {_why(exc)}")
            self.health.check()
        self._size += len(data)
        if not self.health.ok:
            self.health.recover()

    def _cut_back(self) -> None:
        # A partial record must not stay in front of the next one.
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)

    def probe(self) -> None:
        if self.health.ok:
            return
        with contextlib.suppress(StoreUnavailableError):
            self._write(probe_frame())

    def sync(self) -> None:
        with self._fd_lock:
            if self._unsynced and self._fd is not None:
                self._unsynced = False
                try:
                    os.fdatasync(self._fd)
                except OSError as exc:
                    self.health.fail(f"cannot fsync the journal: {_why(exc)}")

    def rotate(self) -> int:
        with self._fd_lock:
            old = self._fd
            self.segment += 1
            self._open_segment()
            self._unsynced = False
        if old is not None:
            with contextlib.suppress(OSError):
                os.fdatasync(old)
            os.close(old)
        return self.segment

    def close(self) -> None:
        """Sync and close the journal. A failed final sync marks the store unhealthy (the service then
        exits non-zero and says so): what the fsync policy had not yet written may be lost to a machine crash."""
        with self._fd_lock:
            if self._fd is not None:
                try:
                    os.fdatasync(self._fd)
                except OSError as exc:
                    self.health.fail(f"cannot sync the journal in {self.directory}: {exc.strerror or exc}")
                os.close(self._fd)
                self._fd = None

    # -- checkpoints -------------------------------------------------------------------------------

    def begin_checkpoint(self, segment: int, next_seq: int) -> FileCheckpointWriter:
        return FileCheckpointWriter(self, segment, next_seq)


class FileCheckpointWriter:
    """Writes `checkpoint.bin.tmp` series by series (in a worker thread), then renames it in place."""

    def __init__(self, store: FileStore, segment: int, next_seq: int) -> None:
        self._store = store
        self._segment = segment
        self._tmp = store.directory / f"{CHECKPOINT_FILE}.tmp"
        self._old = store.directory / CHECKPOINT_FILE
        self._old_file = open(self._old, "rb") if self._old.exists() else None  # noqa: SIM115
        self._file = open(self._tmp, "wb")  # noqa: SIM115
        self._index: dict[str, tuple[int, int]] = {}
        self._offset = 0
        self._emit(checkpoint_file_head(segment, next_seq, 0))

    def _emit(self, data: bytes) -> tuple[int, int]:
        self._file.write(data)
        at = self._offset
        self._offset += len(data)
        return at, len(data)

    def put(self, sid: str, frame: bytes) -> None:
        self._index[sid] = self._emit(frame)

    def keep(self, sid: str) -> bool:
        where = self._store._index.get(sid)
        if where is None or self._old_file is None:
            return False
        self._old_file.seek(where[0])
        data = self._old_file.read(where[1])
        if len(data) != where[1]:
            return False
        self._index[sid] = self._emit(data)
        return True

    def commit(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._close()
        os.replace(self._tmp, self._old)
        _fsync_dir(self._store.directory)
        self._store._index = self._index
        for p in self._store.directory.iterdir():
            m = _SEGMENT.match(p.name)
            if m is not None and int(m.group(1)) < self._segment:
                with contextlib.suppress(OSError):
                    p.unlink()

    def abort(self) -> None:
        self._close()
        with contextlib.suppress(OSError):
            self._tmp.unlink()

    def _close(self) -> None:
        self._file.close()
        if self._old_file is not None:
            self._old_file.close()


def _why(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    return exc.strerror or str(exc)


def check_usable(directory: str | os.PathLike[str]) -> None:
    """Refuse a state folder that can never keep anything: create it if needed, then write, sync and
    remove a probe file in it. A service on such a folder would answer uploads it cannot keep.

    Raises:
        StateUnusableError: naming the folder and what to fix.
    """
    path = Path(directory)
    where = f"state.dir {str(path)!r}"
    if path.exists() and not path.is_dir():
        raise StateUnusableError(f"{where} is not a folder (a file is in its place); move it or set state.dir")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=path)
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
        finally:
            os.close(fd)
            Path(probe).unlink(missing_ok=True)
    except OSError as exc:
        raise StateUnusableError(
            f"{where} cannot be written ({exc.strerror or exc}); fix its permissions or set state.dir "
            '(state.dir: "" keeps state in memory only)'
        ) from exc
