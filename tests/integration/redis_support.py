"""Real Redis for the cluster tests: Debian's `redis-server` (found through `toolchain`), started by the
test on a loopback port with its data in the test's folder (no system service), and a Redis Cluster of
three such servers joined with `redis-cli --cluster create`."""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
import toolchain
from serve_support import free_port


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    """The first port the kernel hands out to outgoing connections (32768 unless configured)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too, both below the ephemeral range: a port in
    it can be taken by any outgoing connection between this check and redis-server's bind (a CI run lost
    a Redis Cluster test so, on 45960)."""
    rng = random.Random()
    high = max(_ephemeral_low() - 10001, 10001)
    for _ in range(200):
        port = rng.randint(10000, high)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise AssertionError("no free port pair for a Redis Cluster node")


class RedisServer:
    """One redis-server on 127.0.0.1:`port`, append-only file on (`appendfsync always`), so a restart
    keeps every write it acknowledged."""

    def __init__(
        self, workdir: Path, *, cluster: bool = False, port: int | None = None, extra: tuple[str, ...] = ()
    ) -> None:
        self.port = port or (cluster_port() if cluster else free_port())
        self.dir = workdir / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cluster = cluster
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        args = [
            toolchain.tool("redis-server"),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ]
        args += self.extra
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", str(self.dir / "nodes.conf")]
        with (self.dir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        with redis.Redis(port=self.port, socket_timeout=1) as client:
            while time.monotonic() < deadline:
                try:
                    if client.ping():
                        return
                except redis.AuthenticationError:
                    return  # up, and asking for the password it was given
                except redis.RedisError:
                    time.sleep(0.05)
        raise AssertionError(f"redis-server did not start: {(self.dir / 'redis.log').read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def client(self) -> Any:
        return redis.Redis(port=self.port, socket_timeout=5)


@contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def redis_cluster(workdir: Path, nodes: int = 3) -> Iterator[list[RedisServer]]:
    """`nodes` masters on loopback joined into one Redis Cluster (every slot covered)."""
    servers = [RedisServer(workdir, cluster=True) for _ in range(nodes)]
    try:
        for server in servers:
            server.start()
        subprocess.run(
            [
                toolchain.tool("redis-cli"),
                "--cluster",
                "create",
                *(f"127.0.0.1:{s.port}" for s in servers),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        client = servers[0].client()
        deadline = time.monotonic() + 30
        while client.cluster("info").get("cluster_state") != "ok":
            assert time.monotonic() < deadline, "the cluster did not reach state ok"
            time.sleep(0.2)
        yield servers
    finally:
        for server in servers:
            server.stop()
