"""`make soak` (benchmarks/soak.py) is not run in CI at its length; a 40-second run keeps the script
itself working: real serve, real collector stopped and restarted mid-run, every event delivered once."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_short_soak_delivers_every_event_once_across_a_collector_outage() -> None:
    args = ["--minutes", "0.7", "--outage-minutes", "0.25", "--every", "10"]
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    expected = re.search(r"events expected (\d+)", out)
    delivered = re.search(r"events delivered (\d+) distinct", out)
    assert expected, out
    assert delivered, out
    assert int(expected.group(1)) >= 1, out  # the load made services leak, so there were events to lose
    assert delivered.group(1) == expected.group(1), out
    assert "duplicate event.id: 0" in out, out
    assert "serve exit code 0" in out, out
    # Invalid uploads were refused with their reasons, and nothing was answered 5xx.
    assert re.search(r"^  400 ", out, re.MULTILINE), out
    assert not re.search(r"^  5\d\d ", out, re.MULTILINE), out
