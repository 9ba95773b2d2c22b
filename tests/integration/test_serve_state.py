"""State survives restarts: neither SIGTERM nor SIGKILL mid-stream loses an answered upload.

`otel-leakproc serve` runs as a real subprocess; profiles are real Go heap profiles of a leaking service.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from serve_support import STEADY_LEAK, ServeProcess, http, series

from otel_leakproc.processor.state import SNAPSHOT_FILE
from otel_leakproc.state.journal import CHECKPOINT_FILE

PROFILES = sorted(STEADY_LEAK.glob("*.pb.gz"))
LEAKER = "main.(*orderHistoryArchive).appendOrderSnapshot"


def upload(url: str, paths: list[Path], instance: str = "pod-1") -> list[int]:
    return [
        http("POST", f"{url}/ingest?name=checkout{{instance={instance}}}&format=pprof", p.read_bytes()).status
        for p in paths
    ]


def test_sigterm_mid_stream_loses_nothing_and_a_restart_resumes_every_series(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = ServeProcess({"state": {"dir": str(state), "snapshot_interval_seconds": 3600}}, tmp_path)
    proc.start()
    try:
        # Uploads keep coming while SIGTERM arrives; every one answered 200 must survive.
        statuses: list[int] = []
        stop = threading.Event()

        def stream() -> None:
            for path in PROFILES[:40]:
                if stop.is_set():
                    break
                try:
                    statuses.append(upload(proc.url, [path])[0])
                except OSError:
                    break

        writer = threading.Thread(target=stream)
        writer.start()
        while len(statuses) < 20:
            writer.join(0.01)
        assert proc.signal(signal.SIGTERM) == 0
        stop.set()
        writer.join(30)
        accepted = statuses.count(200)
        assert accepted >= 20
        assert "stopped: " in proc.stderr.read_text()
        assert [p.name for p in state.glob("journal.*.log") if p.stat().st_size > 0]  # the journal holds them

        proc.start()
        restored = series(proc.url)
        assert len(restored) == 1
        assert restored[0]["profiles"] == accepted
        # Resume: the rest of the series arrives after the restart and the leak is found as if uninterrupted.
        assert set(upload(proc.url, PROFILES[accepted:])) == {200}
        final = series(proc.url)[0]
        assert final["profiles"] == len(PROFILES)
        assert final["restarts"] == 0
        assert final["status"] in ("suspected", "confirmed")
        assert final["top_growers"][0]["function"] == LEAKER
    finally:
        proc.kill()


def test_sigkill_after_a_checkpoint_loses_nothing_answered(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = ServeProcess({"state": {"dir": str(state), "snapshot_interval_seconds": 1}}, tmp_path)
    proc.start()
    try:
        assert set(upload(proc.url, PROFILES[:10])) == {200}
        for _ in range(100):  # wait for the periodic checkpoint that covers the ten
            if (state / CHECKPOINT_FILE).exists():
                break
            threading.Event().wait(0.1)
        else:
            raise AssertionError("no periodic checkpoint was written")
        assert set(upload(proc.url, PROFILES[10:12])) == {200}
        proc.kill()  # SIGKILL: the last two are only in the journal
        proc.start()
        restored = series(proc.url)[0]
        assert restored["profiles"] == 12
    finally:
        proc.kill()


def test_an_unreadable_snapshot_is_set_aside_and_the_service_starts_empty(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / SNAPSHOT_FILE).write_bytes(b"not gzip at all")
    proc = ServeProcess({"state": {"dir": str(state)}}, tmp_path)
    proc.start()
    try:
        assert series(proc.url) == []
        assert "starting with no history" in proc.stderr.read_text()
        assert [p.name for p in state.iterdir() if "unreadable" in p.name]
        assert upload(proc.url, PROFILES[:1]) == [200]
    finally:
        proc.kill()
