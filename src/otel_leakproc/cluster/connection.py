"""Connecting to Redis from `state.redis`: the password comes from an environment variable or a file,
and the URL is only ever logged with its password masked."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from otel_leakproc.errors import ConfigError
from otel_leakproc.processor.config import RedisConfig


def redacted(url: str) -> str:
    """The URL with any password replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def password(config: RedisConfig) -> str | None:
    """The password from `password_env` (when set and present), else from `password_file`; None when
    neither gives one."""
    if config.password_env and config.password_env in os.environ:
        return os.environ[config.password_env]
    if config.password_file:
        try:
            return Path(config.password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError([f"state.redis.password_file: cannot read {config.password_file}: {exc}"]) from exc
    if config.password_env:
        raise ConfigError([f"state.redis.password_env: the environment variable {config.password_env} is not set"])
    return None


def replica_id(config: RedisConfig) -> str:
    """`state.redis.replica_id`, or the pod name (HOSTNAME) plus a random suffix, unique per start."""
    if config.replica_id:
        return config.replica_id
    host = os.environ.get("HOSTNAME") or socket.gethostname() or "replica"
    return f"{host}-{secrets.token_hex(3)}"


def connect(config: RedisConfig) -> Any:
    """A redis-py client (a `RedisCluster` when `cluster` is set). Connects lazily: nothing is sent yet."""
    import redis  # noqa: PLC0415 (only `backend: redis` needs the package)
    import redis.cluster  # noqa: PLC0415

    options: dict[str, Any] = {
        "socket_connect_timeout": config.connect_timeout_seconds,
        "socket_timeout": config.timeout_seconds,
        "decode_responses": False,
    }
    secret = password(config)
    if secret is not None:
        options["password"] = secret
    if config.cluster:
        return redis.cluster.RedisCluster.from_url(config.url, **options)  # type: ignore[no-untyped-call]
    return redis.Redis.from_url(config.url, health_check_interval=30, **options)
