"""The series generator (tests/testdata/go/seriesgen, `make series`) run for real on one deploy scenario,
compressed hard: real runtime/pprof profiles, one minute apart, each carrying its process's version."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import pytest
from test_scrape_support import build_go

from otel_leakproc.evaluation import BASE_SECONDS, TICK_SECONDS
from otel_leakproc.model import ProfileKind
from otel_leakproc.receiver.decode import DecodeLimits, decode_profile
from otel_leakproc.receiver.proto import profile_pb2

pytestmark = pytest.mark.gotool


def test_deploy_scenario_written_as_two_processes_one_series(tmp_path: Path) -> None:
    binary = build_go("seriesgen", tmp_path)
    out = tmp_path / "series"
    subprocess.run(
        [str(binary), "-out", str(out), "-only", "deploy_fixes_leak", "-jobs", "1", "-tick-wall", "40ms"],
        check=True,
        timeout=120,
    )
    heap = sorted((out / "deploy_fixes_leak" / "heap").glob("*.pb.gz"))
    goroutine = sorted((out / "deploy_fixes_leak" / "goroutine").glob("*.pb.gz"))
    assert [f.name for f in heap] == [f"{n:04d}.pb.gz" for n in range(60)]
    assert len(goroutine) == 60
    for number, file in enumerate(heap):
        profile = profile_pb2.Profile()
        profile.ParseFromString(gzip.decompress(file.read_bytes()))
        assert profile.time_nanos == (BASE_SECONDS + number * TICK_SECONDS) * 10**9
        version = "v1.4.1" if number < 32 else "v1.4.2"
        assert [profile.string_table[i] for i in profile.comment] == [f"service.version={version}"]
        assert profile.period == 512 * 1024
    summary = decode_profile(heap[-1].read_bytes(), DecodeLimits())
    assert summary.kind is ProfileKind.HEAP
    assert summary.time_nanos == (BASE_SECONDS + 59 * TICK_SECONDS) * 10**9

    label = json.loads((out / "labels.json").read_text())["deploy_fixes_leak"]
    assert label["set"] == "tuning"
    assert label["restart_tick"] == 32
    assert label["versions"] == [
        {"version": "v1.4.1", "first_tick": 0, "last_tick": 31},
        {"version": "v1.4.2", "first_tick": 32, "last_tick": 59},
    ]
    truth = label["observed"]["ground_truth"]["truth_per_tick"]
    assert len(truth) == 60
    assert truth[31] == (31 + 4) * 400 * 1024  # 400 KiB a minute from 3 minutes before profile 0
    assert truth[32:] == [256 * 2048] * 28  # the fixed version keeps at most 256 rules of 2 KiB
