"""Tests for the command line, run as users run it: `python -m otel_leakproc ...` in a subprocess.

Inputs are real Go profiles from tests/testdata (see tests/testdata/corpus/SOURCE.md and
tests/testdata/pprof/README.md); every profile carries its own time_nanos, one minute apart.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from otel_leakproc import __version__, cli

TESTDATA = Path(__file__).resolve().parents[1] / "testdata"
CORPUS = TESTDATA / "corpus"
STEADY_LEAK = CORPUS / "steady_leak" / "heap"
GO_TEXT = TESTDATA / "go-text"
# gperftools' heap profile text: the same header shape as Go's, sampled differently ("@ heapprofile").
GPERFTOOLS_HEAP = """heap profile:    2:   262144 [     4:   524288] @ heapprofile
     1:   131072 [     2:   262144] @ 0x00000000004005f4 0x00000000004006b2
     1:   131072 [     2:   262144] @ 0x00000000004005f4 0x00000000004006c0

MAPPED_LIBRARIES:
00400000-00401000 r-xp 00000000 08:01 1234 /usr/bin/app
"""
LEAK_FUNCTION = "main.(*orderHistoryArchive).appendOrderSnapshot"
RESTART_PAIR = (
    TESTDATA / "pprof" / "go_heap_restart_before_0035.pb.gz",
    TESTDATA / "pprof" / "go_heap_restart_after_0036.pb.gz",
)


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otel_leakproc", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def run_json(*args: str | Path, expect_rc: int = 0) -> tuple[list[dict[str, Any]], str]:
    result = run("analyze", "--json", *args)
    assert result.returncode == expect_rc, result.stderr
    doc = json.loads(result.stdout)
    assert list(doc) == ["series", "inputs"]
    assert doc["inputs"]["read"] + doc["inputs"]["skipped"] == doc["inputs"]["files"]
    return doc["series"], result.stderr


@pytest.fixture(scope="module")
def steady_leak_json() -> dict[str, Any]:
    series, stderr = run_json(STEADY_LEAK)
    assert stderr == ""
    assert len(series) == 1
    return series[0]


def test_analyze_json_on_a_leaking_heap_series(steady_leak_json: dict[str, Any]) -> None:
    s = steady_leak_json
    assert s["kind"] == "heap"
    assert s["status"] == "confirmed"
    assert s["profiles"] == 60
    assert s["service"] == "steady_leak"
    assert s["restarts"] == 0
    assert s["top_growers"][0]["function"] == LEAK_FUNCTION
    assert s["top_growers"][0]["share"] > 0.5
    first = datetime.fromisoformat(s["first_time"])
    last = datetime.fromisoformat(s["last_time"])
    assert first < last
    assert (last - first).total_seconds() == 59 * 60  # profiles 0000..0059, one minute apart
    flagged = datetime.fromisoformat(s["first_flagged_at"])
    assert first < flagged <= last
    # The leak is ~240 KiB/min (labels.json): about 14 MiB/h; allow the churn and map growth around it.
    assert 10 * 2**20 < s["growth_per_hour"] < 20 * 2**20
    assert s["time_to_limit_seconds"] is None  # no limit given


def test_analyze_default_output_is_a_table_naming_the_leak() -> None:
    result = run("analyze", STEADY_LEAK)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["SERIES", "KIND", "PROFILES", "STATUS"]
    assert lines[1].split()[:4] == ["steady_leak", "heap", "60", "confirmed"]
    assert LEAK_FUNCTION in lines[2]
    assert "corpusgen/main.go:" in lines[2]
    assert not result.stdout.lstrip().startswith("{")


def test_analyze_a_pair_of_files() -> None:
    pair = (STEADY_LEAK / "0000.pb.gz", STEADY_LEAK / "0059.pb.gz")
    table = run("analyze", *pair)
    assert table.returncode == 0, table.stderr
    assert "steady_leak" in table.stdout
    assert "insufficient_data" in table.stdout
    series, _ = run_json(*pair)
    assert len(series) == 1
    assert series[0]["profiles"] == 2
    assert series[0]["kind"] == "heap"
    assert series[0]["status"] in {"insufficient_data", "ok", "suspected", "confirmed"}
    assert datetime.fromisoformat(series[0]["first_time"]) < datetime.fromisoformat(series[0]["last_time"])


def test_analyze_a_pair_across_a_restart_counts_it() -> None:
    series, _ = run_json(*RESTART_PAIR)
    (s,) = series
    assert s["profiles"] == 2
    assert s["restarts"] == 1  # alloc_objects (cumulative) goes down between the two processes
    assert s["status"] == "insufficient_data"


def test_fail_on_leak_exit_codes() -> None:
    leak = run("analyze", "--fail-on-leak", STEADY_LEAK)
    assert leak.returncode == 1
    assert "confirmed" in leak.stdout
    clean = run("analyze", "--fail-on-leak", *RESTART_PAIR)
    assert clean.returncode == 0, clean.stderr


def test_memory_limit_gives_time_to_limit() -> None:
    limit = 256 * 2**20
    (s,), _ = run_json("--memory-limit", str(limit), STEADY_LEAK)
    ttl = s["time_to_limit_seconds"]
    assert isinstance(ttl, float)
    assert ttl == pytest.approx((limit - s["current"]) / s["growth_per_hour"] * 3600, rel=1e-3)
    assert 10 * 3600 < ttl < 30 * 3600  # ~225 MiB of headroom at ~14 MiB/h
    (over,), _ = run_json("--memory-limit", str(8 * 2**20), STEADY_LEAK)
    assert over["time_to_limit_seconds"] == 0.0  # already above the limit


def test_garbage_file_is_skipped_with_its_reason_and_fails_the_run(tmp_path: Path) -> None:
    folder = tmp_path / "checkout" / "heap"
    folder.mkdir(parents=True)
    for n in range(12):
        shutil.copy(STEADY_LEAK / f"{n:04d}.pb.gz", folder)
    (folder / "0005b.pb.gz").write_bytes(b"\x1f\x8b\x08\x00not really gzip")
    (folder / "notes.txt").write_text("not a profile at all\n")

    result = run("analyze", "--json", tmp_path / "checkout")
    assert result.returncode == 1, result.stderr  # fail closed: part of the input was not analysed
    doc = json.loads(result.stdout)
    (s,) = doc["series"]
    assert s["profiles"] == 12
    assert s["service"] == "checkout"
    assert s["kind"] == "heap"
    inputs = doc["inputs"]
    assert (inputs["files"], inputs["read"], inputs["skipped"]) == (14, 12, 2)
    assert inputs["skipped_by_reason"] == {"bad_gzip": 1, "bad_protobuf": 1}
    assert sorted(Path(f["path"]).name for f in inputs["skipped_files"]) == ["0005b.pb.gz", "notes.txt"]
    skipped = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert len(skipped) == 2, result.stderr
    truncated = next(line for line in skipped if "0005b.pb.gz" in line)
    assert "gzip" in truncated
    text = next(line for line in skipped if "notes.txt" in line)
    assert "not a valid pprof" in text

    table = run("analyze", tmp_path / "checkout")
    assert table.returncode == 1
    assert table.stdout.splitlines()[1].split()[:3] == ["checkout", "heap", "12"]
    assert table.stdout.splitlines()[-1] == (
        "skipped 2 of 14 files (1 bad_gzip, 1 bad_protobuf); the reasons are on stderr"
    )


def test_a_run_that_reads_nothing_fails_with_the_reasons_and_no_series(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a profile at all\n")
    (tmp_path / "heap.prof").write_text(GPERFTOOLS_HEAP)
    shutil.copy(GO_TEXT / "snapshot_cpu.pb.gz", tmp_path)

    table = run("analyze", "--fail-on-leak", tmp_path)
    assert table.returncode == 1
    assert table.stdout == ""  # no phantom series with 0 profiles
    lines = table.stderr.splitlines()
    assert lines[-1] == (
        "otel-leakproc: no profile could be read from 3 files (1 bad_protobuf, 1 bad_text, 1 unsupported)"
    )
    assert any("heap.prof" in line and "gperftools heap profile" in line for line in lines), lines
    assert any("snapshot_cpu.pb.gz" in line and "CPU profile" in line for line in lines), lines

    result = run("analyze", "--json", tmp_path)
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert doc["series"] == []
    assert doc["inputs"]["read"] == 0
    assert doc["inputs"]["skipped_by_reason"] == {"bad_protobuf": 1, "bad_text": 1, "unsupported": 1}


def test_go_text_profiles_are_analysed_like_their_protobuf(tmp_path: Path) -> None:
    for name in ("heap", "goroutine"):
        folder = tmp_path / "snapshot" / name
        folder.mkdir(parents=True)
        shutil.copy(GO_TEXT / f"snapshot_{name}.txt", folder)
    text, stderr = run_json(tmp_path / "snapshot")
    assert stderr == ""
    by_kind = {s["kind"]: s for s in text}
    assert by_kind["heap"]["profiles"] == 1
    assert by_kind["heap"]["current"] == 3765224  # in-use bytes, scaled as Go's tooling scales them
    assert by_kind["goroutine"]["current"] == 15


def test_missing_path_fails_with_a_clear_message(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    result = run("analyze", STEADY_LEAK, missing)
    assert result.returncode != 0
    assert str(missing) in result.stderr
    assert "no such file or directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_config_reports_every_error_with_its_key_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "processor:\n"
        "  windw_seconds: 3600\n"
        "  heap:\n"
        "    z_suspect: high\n"
        "    z_resolve: 3\n"
        "  goroutine:\n"
        "    min_points: 2\n"
        "  contention:\n"
        "    high_delay_rate: -1\n"
        "decode:\n"
        "  max_samples: true\n"
    )
    result = run("validate-config", bad)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    expected = [
        "processor.windw_seconds: unknown key (did you mean 'window_seconds'?)",
        "processor.heap.z_suspect: expected a number, got 'high'",
        "processor.heap.z_resolve: must be <= z_suspect",
        "processor.goroutine.min_points: must be >= 4, got 2",
        "processor.contention.high_delay_rate:",
        "decode.max_samples: expected an integer, got True",
    ]
    for message in expected:
        assert message in result.stderr, f"{message!r} missing from:\n{result.stderr}"
    listed = [line.strip() for line in result.stderr.splitlines() if line.startswith("  ")]
    assert len(listed) == len(expected), f"one line per problem expected:\n{result.stderr}"
    assert ": ok" not in result.stdout


def test_validate_config_accepts_a_good_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "processor:\n"
        "  window_seconds: 3600\n"
        "  heap:\n"
        "    warmup_seconds: 600\n"
        "    memory_limit_bytes: 1073741824\n"
        "    z_suspect: 2.5\n"
    )
    result = run("validate-config", good)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{good}: ok"
    assert result.stderr == ""


def test_validate_config_on_a_missing_file(tmp_path: Path) -> None:
    result = run("validate-config", tmp_path / "absent.yaml")
    assert result.returncode == 2
    assert "absent.yaml: cannot read config file" in result.stderr


def test_analyze_uses_the_config_file(tmp_path: Path) -> None:
    # A warm-up longer than the whole series keeps the leak undecided once the late-onset rule is off...
    config = tmp_path / "long-warmup.yaml"
    config.write_text("processor:\n  heap:\n    warmup_seconds: 7200\n    late_onset_bytes: 0\n")
    (s,), _ = run_json("--config", config, STEADY_LEAK)
    assert s["status"] == "insufficient_data"
    assert "warm-up" in s["evidence"]["reason"]
    # ...and with it on, a site that appeared after start-up is suspected inside the warm-up, not confirmed.
    config.write_text("processor:\n  heap:\n    warmup_seconds: 7200\n")
    (s,), _ = run_json("--config", config, STEADY_LEAK)
    assert s["status"] == "suspected"
    assert s["evidence"]["reason"].startswith("new retention during warm-up")
    bad = tmp_path / "bad.yaml"
    bad.write_text("processor:\n  max_points: 3\n")
    result = run("analyze", "--config", bad, STEADY_LEAK)
    assert result.returncode == 2
    assert "processor.max_points: must be >= 8, got 3" in result.stderr


def test_lock_contention_folder_gives_a_mutex_and_a_block_series() -> None:
    series, _ = run_json(CORPUS / "lock_contention")
    by_kind = {s["kind"]: s for s in series}
    assert set(by_kind) == {"mutex", "block"}
    labels = json.loads((CORPUS / "labels.json").read_text())["lock_contention"]
    # The mutex profile charges the lock holder, the block profile the waiting readers.
    assert by_kind["mutex"]["top_growers"][0]["function"] == labels["contention_function"]
    assert by_kind["block"]["top_growers"][0]["function"] == labels["contention_waiter_function"]
    for s in series:
        assert s["status"] in {"suspected", "confirmed"}
        assert s["profiles"] == 60
        assert s["current"] > 0


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"otel-leakproc {__version__}"


def test_usage_error_exits_2() -> None:
    result = run("analyze")
    assert result.returncode == 2
    assert "PATH" in result.stderr


def test_analyze_does_not_load_the_network_stack() -> None:
    """`analyze` starts as a short-lived process next to `go tool pprof`: the servers, the HTTP client,
    gRPC and the OpenTelemetry SDK cost hundreds of milliseconds to import and it needs none of them."""
    probe = (
        "import sys\n"
        "from otel_leakproc.cli import main\n"
        f"code = main(['analyze', '--json', {str(STEADY_LEAK)!r}])\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'aiohttp', 'grpc', 'kubernetes', 'opentelemetry'})\n"
        "unused = sorted(m for m in sys.modules if m.startswith(('otel_leakproc.config', 'otel_leakproc.exporter', "
        "'otel_leakproc.receiver.scrape', 'otel_leakproc.receiver.config')))\n"
        "print(code, heavy, unused, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    # Nor, without --config, the modules of the config sections it does not read (server, scrape, export).
    assert result.stderr.strip().splitlines()[-1] == "0 [] []", result.stderr


# What `analyze` on a pair must not import: the service's stack (servers, clients, exporters, state, cluster,
# config file parsing) and the stdlib modules only they use. A pair of pprof files needs the pprof decoder, the
# detectors and the report; each of these costs milliseconds of a process that is mostly start-up.
ANALYZE_UNUSED_PACKAGES = frozenset(
    {
        "aiohttp",
        "grpc",
        "opentelemetry",
        "kubernetes",
        "prometheus_client",
        "redis",
        "yaml",
        "scipy",
        "asyncio",
        "concurrent",
        "http",
        "email",
        "ssl",
        "socket",
        "subprocess",
        "logging",
        "tempfile",
        "shutil",  # argparse sizes its help with it; the CLI finds the same width without it
        "pathlib",  # and the urllib.parse and ipaddress it imports: analyze spells paths as strings
        "urllib",
        "ipaddress",
    }
)
ANALYZE_UNUSED_MODULES = (
    "otel_leakproc.app",
    "otel_leakproc.client",
    "otel_leakproc.cluster",
    "otel_leakproc.config",  # config and config_yaml: only with --config
    "otel_leakproc.exporter",
    "otel_leakproc.log_format",
    "otel_leakproc.push",
    "otel_leakproc.query",
    "otel_leakproc.state",
    "otel_leakproc.telemetry",
    "otel_leakproc.receiver.config",
    "otel_leakproc.receiver.grpc_server",
    "otel_leakproc.receiver.http_server",
    "otel_leakproc.receiver.scrape",
    "otel_leakproc.receiver.uploads",
    "otel_leakproc.receiver.decode.go_text",  # the text and OTLP decoders: not for pprof files
    "otel_leakproc.receiver.decode.goroutine_text",
    "otel_leakproc.receiver.decode.otlp_profiles",
    # profile.proto's classes come from upb's pool (`profile_messages`): not the generated module, whose
    # descriptor_pool imports protobuf's pure-Python message, encoder, decoder and text format.
    "otel_leakproc.receiver.proto.profile_pb2",
    "google.protobuf.descriptor_pool",
    "google.protobuf.internal.python_message",
    "google.protobuf.text_format",
)


def imported_modules(*args: str | Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `python -X importtime -m otel_leakproc ARGS`; its result and every module the process imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "otel_leakproc", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    modules = {line.rsplit("|", 1)[1].strip() for line in lines[1:]}  # the first line is the header
    return result, modules


@pytest.mark.parametrize("output", ["table", "json"])
def test_analyze_of_a_pair_imports_only_what_it_uses(output: str) -> None:
    """The whole process as users start it, not one function: every import of start-up counts."""
    flags = ["--json"] if output == "json" else []
    result, modules = imported_modules("analyze", *flags, *RESTART_PAIR)
    assert result.returncode == 0, result.stderr
    assert "otel_leakproc.analyze" in modules  # it did run
    assert "otel_leakproc.receiver.decode.pprof" in modules
    assert sorted({m.split(".")[0] for m in modules} & ANALYZE_UNUSED_PACKAGES) == []
    assert sorted(m for m in modules if m.startswith(ANALYZE_UNUSED_MODULES)) == []
    assert ("json" in modules) == (output == "json")  # the table needs no JSON encoder


@pytest.mark.parametrize("columns", ["50", "100", "200", "", "abc"])
def test_help_has_the_width_argparse_gives_it(columns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's help formatter finds the width without shutil: every help text is the one argparse's own
    formatter prints (COLUMNS, else the terminal, else 80 columns)."""
    monkeypatch.setenv("COLUMNS", columns)
    parser = cli._parser()
    commands = next(a.choices for a in parser._actions if isinstance(a.choices, dict))
    for each in [parser, *commands.values()]:
        ours = each.format_help()
        each.formatter_class = argparse.HelpFormatter
        assert ours == each.format_help()
    usage = commands["analyze"].format_usage().splitlines()
    assert len(usage) == {"50": 8, "200": 2}.get(columns, len(usage))  # COLUMNS is read


TEARDOWN_PROBE = """
import atexit, gc, sys
class Finalised:
    def __del__(self):
        print("teardown ran", file=sys.stderr)
kept = Finalised()
if sys.argv.pop(1) == "atexit":
    atexit.register(lambda: print("atexit ran", gc.isenabled(), gc.get_freeze_count() > 0, file=sys.stderr))
sys.argv[0] = "otel-leakproc"
from otel_leakproc.cli import main
sys.exit(main())
"""


@pytest.mark.parametrize("registered", ["none", "atexit"])
def test_analyze_ends_without_the_interpreter_teardown_unless_something_waits_for_exit(registered: str) -> None:
    """Run as the process's entry point, `analyze` flushes its output and ends without freeing every module;
    with an atexit callback registered (coverage registers one) it ends the usual way and the callback runs."""
    argv = [sys.executable, "-c", TEARDOWN_PROBE, registered, "analyze", "--json", *map(str, RESTART_PAIR)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert [s["profiles"] for s in json.loads(done.stdout)["series"]] == [2]  # the whole output was written
    ran = [line for line in done.stderr.splitlines() if " ran" in line]
    # The collector is on again after the imports, whose objects it no longer scans (frozen; so the usual
    # exit need not finalise what was alive then, and this probe's finaliser is not asserted there).
    assert ran[:1] == ([] if registered == "none" else ["atexit ran True True"])
    assert registered != "none" or ran == []
    missing = subprocess.run(
        [sys.executable, "-c", TEARDOWN_PROBE, registered, "analyze", "/nonexistent"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert missing.returncode == 1  # the exit code survives the short way out
    assert "otel-leakproc: /nonexistent: no such file or directory" in missing.stderr


def test_analyze_with_a_config_file_reads_it_and_still_loads_no_server(tmp_path: Path) -> None:
    config = tmp_path / "leakproc.yaml"
    config.write_text("processor:\n  max_points: 60\n")
    result, modules = imported_modules("analyze", "--config", config, *RESTART_PAIR)
    assert result.returncode == 0, result.stderr
    assert "yaml" in modules
    assert "otel_leakproc.config" in modules
    assert sorted({m.split(".")[0] for m in modules} & {"aiohttp", "grpc", "opentelemetry", "kubernetes"}) == []


def test_analyze_runs_numpy_without_a_blas_thread_pool() -> None:
    """OpenBLAS starts a thread per core when numpy loads; `analyze` asks for none (the threads cost tens of
    milliseconds of start-up), and a value the user set is kept."""
    probe = (
        "import io, os, sys, contextlib\n"
        "from otel_leakproc.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = main(['analyze', {str(RESTART_PAIR[0])!r}, {str(RESTART_PAIR[1])!r}])\n"
        "import gc, numpy\n"
        "print(code, os.environ.get('OPENBLAS_NUM_THREADS'), len(os.listdir('/proc/self/task')))\n"
        "print(gc.isenabled(), gc.get_freeze_count())\n"  # called in-process: nothing frozen
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}

    def probe_with(env: dict[str, str]) -> list[str]:
        argv = [sys.executable, "-c", probe]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert probe_with(env) == ["0", "1", "1", "True", "0"]  # exit code, the variable, threads; the collector
    assert probe_with({**env, "OPENBLAS_NUM_THREADS": "2"})[:2] == ["0", "2"]


def test_analyze_reads_version_folders_as_one_series_with_a_fix_verdict() -> None:
    versions = TESTDATA / "versions"
    (fixed,), _ = run_json(versions / "checkout_fixed")
    assert (fixed["service"], fixed["instance"], fixed["profiles"], fixed["restarts"]) == ("checkout_fixed", "", 80, 1)
    assert fixed["source"] == str(versions / "checkout_fixed")
    assert fixed["status"] == "ok"
    assert fixed["fix"]["verdict"] == "fixed"
    assert fixed["fix"]["before"]["version"] == "v1.4.1"
    assert fixed["fix"]["after"]["version"] == "v1.4.2"
    assert fixed["fix"]["before"]["growth_per_hour"] > 20 * max(fixed["fix"]["after"]["growth_per_hour"], 2**18)
    (unfixed,), _ = run_json(versions / "checkout_unfixed")
    assert unfixed["status"] in ("suspected", "confirmed")
    assert unfixed["fix"]["verdict"] == "not_fixed"
    table = run("analyze", versions / "checkout_fixed", versions / "checkout_unfixed").stdout
    assert "(fixed: growth 19.9 MiB/h before v1.4.2, 0 B/h after (both from start-up to 20m))" in table
    assert "(NOT fixed: growth 13.4 MiB/h before v1.4.2, 11.1 MiB/h after" in table


@pytest.mark.parametrize(
    "argv",
    [
        ["analyze", "--json", "--kind", "heap", "--memory-limit", "1024", "a", "b"],
        ["serve", "--state-dir", "", "--log-level", "debug"],
        ["push", "--service", "svc", "--interval", "0.5", "f.pb.gz"],
        ["validate-config", "c.yaml"],
    ],
)
def test_the_parser_built_for_one_command_parses_and_helps_as_the_whole_parser_does(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    command = argv[0]
    assert cli._command(["--version", *argv]) == command
    assert vars(cli._parser(command).parse_args(argv)) == vars(cli._parser().parse_args(argv))
    helps = []
    for parser in (cli._parser(command), cli._parser()):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        helps.append(capsys.readouterr().out)
    assert helps[0] == helps[1]
    assert command in helps[0]
    other = next(c for c in cli.COMMANDS if c != command)
    with pytest.raises(SystemExit):  # a parser built for another command does not know this one
        cli._parser(other).parse_args(argv)
    assert cli._command(["analyse", "x"]) is None  # a typo gets the whole parser, whose error lists them all
