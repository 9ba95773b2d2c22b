"""The journal with the real process: SIGKILL at random points never loses an answered upload, a torn or
bit-flipped journal tail is dropped with a counted warning, a full disk makes the service say so (503,
/readyz false with the reason) and recover when space returns, and an old-format snapshot restores once.

Profiles are the 60 real Go heap profiles of the steady_leak corpus series.
"""

from __future__ import annotations

import random
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from serve_support import (
    STEADY_LEAK,
    TESTDATA,
    ServeProcess,
    fill_disk,
    http,
    make_settings,
    metric,
    running_service,
    series,
    small_disk,
)

from otel_leakproc.analyze import load_series
from otel_leakproc.model import ProfileKind, SeriesKey
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.detector import SeriesDetector
from otel_leakproc.processor.state import SNAPSHOT_FILE
from otel_leakproc.receiver.decode import DecodeLimits
from otel_leakproc.receiver.proto import push_pb2
from otel_leakproc.state.journal import CHECKPOINT_FILE, FileStore
from otel_leakproc.state.records import checkpoint_frame, series_id

PROFILES = sorted(STEADY_LEAK.glob("*.pb.gz"))
LEGACY_SNAPSHOT = TESTDATA / "state" / "snapshot-format2.json.gz"


def upload(url: str, path: Path, instance: str = "pod-1") -> int:
    return http("POST", f"{url}/ingest?name=checkout{{instance={instance}}}&format=pprof", path.read_bytes()).status


def profiles_of(url: str) -> int:
    found = series(url)
    return found[0]["profiles"] if found else 0


def test_sigkill_at_random_points_never_loses_an_answered_upload(tmp_path: Path) -> None:
    # A checkpoint every second, so kills also land during compactions.
    state = tmp_path / "state"
    proc = ServeProcess({"state": {"dir": str(state), "snapshot_interval_seconds": 1, "fsync": "never"}}, tmp_path)
    rng = random.Random(12)
    answered = 0  # uploads of the stream answered 200, in order
    attempted = 0
    trials = 0
    while trials < 20:
        proc.start()
        restored = profiles_of(proc.url)
        # Every answered upload is there; at most the one in flight at the kill is there unanswered.
        assert answered <= restored <= attempted, (trials, answered, restored, attempted)
        answered = attempted = restored
        if answered >= len(PROFILES):
            break
        done = threading.Event()
        # Kill after a random 0-3 more answers, at a random moment inside or just after the next upload.
        target = answered + rng.randint(0, 3)

        def stream(done: threading.Event = done, target: int = target) -> None:
            nonlocal answered, attempted
            for path in PROFILES[answered : target + 1]:
                attempted += 1
                try:
                    status = upload(proc.url, path)
                except OSError:
                    return
                if status != 200:
                    return
                answered += 1
            done.set()

        writer = threading.Thread(target=stream)
        writer.start()
        while answered < target and not done.is_set() and writer.is_alive():
            time.sleep(0.001)
        time.sleep(rng.uniform(0, 0.03))
        proc.kill()
        writer.join(10)
        trials += 1
    assert trials == 20
    assert answered > 20, answered  # the stream made progress through the kills


def _stopped_with(tmp_path: Path, count: int) -> tuple[ServeProcess, Path]:
    state = tmp_path / "state"
    proc = ServeProcess({"state": {"dir": str(state), "snapshot_interval_seconds": 3600}}, tmp_path)
    proc.start()
    assert [upload(proc.url, p) for p in PROFILES[:count]] == [200] * count
    proc.kill()
    return proc, state


def _journal(state: Path) -> Path:
    (journal,) = [p for p in state.glob("journal.*.log") if p.stat().st_size > 0]
    return journal


def test_a_torn_journal_tail_is_dropped_with_a_counted_warning(tmp_path: Path) -> None:
    proc, state = _stopped_with(tmp_path, 5)
    journal = _journal(state)
    data = journal.read_bytes()
    journal.write_bytes(data + data[: len(data) // 10])  # a record cut short, as by a crash mid-write
    proc.start()
    try:
        assert profiles_of(proc.url) == 5
        assert "torn record" in proc.stderr.read_text()
        assert metric(proc.url, "otel_leakproc_state_dropped_records_total") == 1
        assert upload(proc.url, PROFILES[5]) == 200
        assert profiles_of(proc.url) == 6
    finally:
        proc.kill()


def test_a_bit_flipped_last_record_is_dropped_and_never_corrupts_the_series(tmp_path: Path) -> None:
    proc, state = _stopped_with(tmp_path, 5)
    journal = _journal(state)
    data = bytearray(journal.read_bytes())
    data[-20] ^= 0x10  # inside the payload of the last record
    journal.write_bytes(bytes(data))
    proc.start()
    try:
        assert profiles_of(proc.url) == 4
        assert "checksum mismatch" in proc.stderr.read_text()
        assert metric(proc.url, "otel_leakproc_state_dropped_records_total") == 1
    finally:
        proc.kill()


@pytest.fixture(name="small_disk")
def small_disk_fixture(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "disk") as mount:
        yield mount


def test_a_full_disk_turns_readyz_false_and_uploads_into_503_until_space_returns(
    tmp_path: Path, small_disk: Path
) -> None:
    proc = ServeProcess({"state": {"dir": str(small_disk / "state"), "fsync": "always"}}, tmp_path)
    proc.start()
    try:
        assert upload(proc.url, PROFILES[0]) == 200
        filler = fill_disk(small_disk)  # take every remaining byte
        # The journal's last page may still take a record or a few; then the disk is full for it too.
        url = f"{proc.url}/ingest?name=checkout{{instance=pod-1}}&format=pprof"
        accepted = 1
        for path in PROFILES[1:12]:
            reply = http("POST", url, path.read_bytes())
            if reply.status != 200:
                break
            accepted += 1
        assert reply.status == 503
        assert "no space left" in reply.json()["message"]
        assert reply.headers["retry-after"]
        ready = http("GET", f"{proc.url}/readyz")
        assert ready.status == 503
        assert "no space left" in ready.json()["reason"]
        assert profiles_of(proc.url) == accepted  # the refused profile was not applied either
        filler.unlink()
        deadline = time.monotonic() + 10
        while http("GET", f"{proc.url}/readyz").status != 200:
            assert time.monotonic() < deadline, "the store did not recover after space returned"
            time.sleep(0.2)
        assert upload(proc.url, PROFILES[accepted]) == 200
        assert proc.signal(signal.SIGTERM) == 0
        proc.start()
        assert profiles_of(proc.url) == accepted + 1
    finally:
        proc.kill()


def test_an_old_format_snapshot_restores_once_and_is_migrated(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    shutil.copy(LEGACY_SNAPSHOT, state / SNAPSHOT_FILE)
    proc = ServeProcess({"state": {"dir": str(state)}}, tmp_path)
    proc.start()
    try:
        before = series(proc.url)
        assert len(before) == 1
        assert before[0]["profiles"] == 30
        assert (state / CHECKPOINT_FILE).exists()
        assert not (state / SNAPSHOT_FILE).exists()
        assert (state / (SNAPSHOT_FILE + ".migrated")).exists()
        proc.kill()
        proc.start()  # from the checkpoint now, not the old file
        after = series(proc.url)
        assert after == before
        assert "old snapshot" not in proc.stderr.read_text().split("restored")[-1]
    finally:
        proc.kill()


def test_a_full_disk_makes_grpc_pushes_unavailable_with_the_reason(small_disk: Path) -> None:
    settings = make_settings(small_disk / "state", state={"fsync": "always"})
    with running_service(settings) as svc, grpc.insecure_channel(svc.grpc_target) as channel:
        push = channel.unary_unary(
            "/push.v1.PusherService/Push", request_serializer=push_pb2.PushRequest.SerializeToString
        )
        request = push_pb2.PushRequest()
        s = request.series.add()
        for name, value in {"__name__": "memory", "service_name": "grpc-disk", "instance": "pod-1"}.items():
            s.labels.add(name=name, value=value)
        sample = s.samples.add(raw_profile=PROFILES[0].read_bytes(), ID="1")
        push(request, timeout=30)
        filler = fill_disk(small_disk)
        error = None
        for path in PROFILES[1:12]:  # the journal's last page may take a few more first
            sample.raw_profile = path.read_bytes()
            try:
                push(request, timeout=30)
            except grpc.RpcError as exc:
                error = exc
                break
        assert error is not None
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "no space left" in (error.details() or "")
        filler.unlink()


def test_livez_answers_while_a_large_state_is_restored(tmp_path: Path) -> None:
    # 20,000 series (a few points each) in a checkpoint: restoring them takes a noticeable moment.
    state = tmp_path / "state"
    config = ProcessorConfig()
    by_kind, _ = load_series(PROFILES[:3], DecodeLimits(), ProfileKind.HEAP)
    detector = SeriesDetector(SeriesKey("default", "x", "pod", ProfileKind.HEAP), config)
    for summary in by_kind[ProfileKind.HEAP]:
        detector.update(summary)
    saved = detector.to_state()
    store = FileStore(state, "never")
    store.load()
    writer = store.begin_checkpoint(store.rotate(), 1)
    for n in range(20_000):
        key = SeriesKey("default", f"svc-{n}", "pod", ProfileKind.HEAP)
        writer.put(series_id(key), checkpoint_frame(0, key, {}, saved))
    writer.commit()
    store.close()
    proc = ServeProcess({"state": {"dir": str(state), "max_series": 20_000, "max_series_per_tenant": 20_000}}, tmp_path)
    starter = threading.Thread(target=proc.start, kwargs={"timeout": 120})
    starter.start()
    seen = []
    try:
        while starter.is_alive():
            try:
                live = http("GET", f"{proc.url}/livez", timeout=2).status
                ready = http("GET", f"{proc.url}/readyz", timeout=2).status
            except OSError:
                time.sleep(0.02)
                continue
            seen.append((live, ready))
        starter.join()
        assert (200, 503) in seen  # alive and answering while not ready yet
        assert all(live == 200 for live, _ in seen)
        assert len(series(proc.url, timeline="0")) == 20_000
    finally:
        proc.kill()
