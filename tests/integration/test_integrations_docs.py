"""docs/integrations.md: the configurations that can run here are run exactly as documented.

Every fenced code block whose first line is `# doc-test: NAME` is extracted from the document and
executed by the matching real client (pyroscope-io 1.4.0 and 0.8.16 in their venvs, `make client-venvs`;
otel-leakproc's own client with `python -S`, i.e. no site-packages) in front of a leaking workload,
against the real service. The snippets take the service address from `OTEL_LEAKPROC_URL`, as documented.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serve_support import FAST_PROCESSOR, REPO, TESTDATA, http, make_settings, metric, running_service, series

DOC = REPO / "docs" / "integrations.md"
RUNNER = TESTDATA / "python_client" / "run_doc_snippet.py"
VENVS = Path(os.environ.get("OTEL_LEAKPROC_CLIENT_VENVS", REPO / ".venv-clients"))
MARKER = "# doc-test: "
BLOCK = re.compile(r"^```[a-z]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def snippets() -> dict[str, str]:
    found: dict[str, str] = {}
    for match in BLOCK.finditer(DOC.read_text()):
        body = match.group(1)
        first = body.split("\n", 1)[0]
        if first.startswith(MARKER):
            name = first[len(MARKER) :].strip()
            assert name not in found, f"two blocks marked {name!r}"
            found[name] = body
    return found


def run_snippet(name: str, url: str, seconds: float, tmp_path: Path, env: dict[str, str]) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(snippets()[name])
    if name == "otel-leakproc-client":
        command = [sys.executable, "-S", str(RUNNER)]
        env = {**env, "PYTHONPATH": str(REPO / "src")}
    else:
        python = VENVS / name / "bin" / "python"
        assert python.exists(), f"{python} is missing: run `make client-venvs` (CI does)"
        command = [str(python), str(RUNNER)]
    done = subprocess.run(
        [*command, str(path), str(seconds)],
        env={**os.environ, "OTEL_LEAKPROC_URL": url, "HOSTNAME": "orders-0", **env},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.stdout


def test_the_tested_blocks_are_the_ones_the_document_promises() -> None:
    assert sorted(snippets()) == ["otel-leakproc-client", "pyroscope-io-0.8.16", "pyroscope-io-1.4.0"]


def assert_heap_leak_named(url: str) -> dict[str, dict[str, object]]:
    found = {s["kind"]: s for s in series(url, service="orders")}
    heap = found["heap"]
    assert heap["instance"] == "orders-0"
    assert heap["profiles"] >= 8
    assert heap["status"] in ("suspected", "confirmed"), heap["evidence"]
    top = heap["top_growers"][0]
    assert top["function"] == "remember_order"
    assert top["file"].endswith("run_doc_snippet.py")
    return found


def test_documented_otel_leakproc_client_snippet(tmp_path: Path) -> None:
    env = {
        "OTEL_RESOURCE_ATTRIBUTES": "service.instance.id=orders-0,service.namespace=shop",
        "OTEL_LEAKPROC_INTERVAL": "1",
        "OTEL_LEAKPROC_MAX_CPU_FRACTION": "0.5",  # 1 s captures on a loaded test machine
    }
    with running_service(make_settings("", processor=FAST_PROCESSOR)) as svc:
        # 20 s of 1 s captures: enough points that a capture delayed by a loaded machine reads as noise.
        run_snippet("otel-leakproc-client", svc.url, 20, tmp_path, env)
        found = assert_heap_leak_named(svc.url)
        assert found["heap"]["resource"]["service.namespace"] == "shop"
        assert found["goroutine"]["current"] >= 1


def test_documented_pyroscope_io_140_snippet(tmp_path: Path) -> None:
    with running_service(make_settings("", processor=FAST_PROCESSOR)) as svc:
        run_snippet("pyroscope-io-1.4.0", svc.url, 16, tmp_path, {"PYROSCOPE_UPLOAD_INTERVAL": "1"})
        found = assert_heap_leak_named(svc.url)
        assert list(found) == ["heap"]
        assert found["heap"]["resource"]["service.namespace"] == "shop"
        # The agent's CPU profiles are accepted and counted as ignored (no leak signal), never rejected. How
        # many it sends depends on the CPU the workload got (an idle interval sends none), so only their
        # presence is asserted.
        assert metric(svc.url, "otel_leakproc_profiles_ignored_total", dialect="push") >= 1


def test_documented_pyroscope_io_0816_snippet(tmp_path: Path) -> None:
    with running_service(make_settings("")) as svc:
        run_snippet("pyroscope-io-0.8.16", svc.url, 12, tmp_path, {})
        deadline = time.monotonic() + 15
        while (
            time.monotonic() < deadline
            and metric(svc.url, "otel_leakproc_profiles_ignored_total", dialect="ingest") < 1
        ):
            time.sleep(0.5)
        assert metric(svc.url, "otel_leakproc_profiles_ignored_total", dialect="ingest") >= 1
        for reason in ("bad_protobuf", "bad_gzip", "unsupported", "bad_values"):
            assert metric(svc.url, "otel_leakproc_profiles_rejected_total", reason=reason) == 0
        assert series(svc.url) == []
        assert http("GET", f"{svc.url}/readyz").status == 200


@pytest.fixture(autouse=True)
def _doc_exists() -> None:
    assert DOC.exists()
