"""otel-leakproc's Python client: one line makes a service's heap (and threads) visible to otel-leakproc.

    import otel_leakproc.client
    otel_leakproc.client.start(service="orders", url="http://otel-leakproc:4040")

A daemon thread takes a `tracemalloc` snapshot every `interval` seconds (30 by default), turns it into a
pprof heap profile (in-use objects and bytes per allocation traceback, frames named by their function)
plus a profile of the threads' stacks, and pushes both to otel-leakproc (Pyroscope push API). Every
setting can come from the environment instead (`OTEL_LEAKPROC_URL`, `OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, ...): see docs/python-client.md.

Standard library only: importing this package never imports the service's dependencies (numpy,
aiohttp, grpc, protobuf).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping

from otel_leakproc.client._client import Client, ClientStats
from otel_leakproc.client._config import ClientConfig, config_from, enabled_from_env

__all__ = ["Client", "ClientConfig", "ClientStats", "get_client", "start", "stop"]

LOG = logging.getLogger("otel_leakproc.client")
_lock = threading.Lock()
_client: Client | None = None


def start(
    service: str | None = None,
    url: str | None = None,
    *,
    instance: str | None = None,
    attributes: Mapping[str, str] | None = None,
    tenant: str | None = None,
    token: str | None = None,
    basic_auth: tuple[str, str] | None = None,
    interval: float | None = None,
    frames: int | None = None,
    max_tracebacks: int | None = None,
    threads: bool | None = None,
    **options: object,
) -> Client | None:
    """Start profiling this process and pushing to otel-leakproc. Returns the running client.

    Arguments left out come from the environment, then the defaults (see `ClientConfig`). A second call
    while a client runs returns that client unchanged. `OTEL_LEAKPROC_ENABLED=false` makes this a no-op
    (returns None).

    Args:
        service: `service.name` (else `OTEL_SERVICE_NAME`, `service.name` in `OTEL_RESOURCE_ATTRIBUTES`).
        url: otel-leakproc's HTTP address (else `OTEL_LEAKPROC_URL`, else http://127.0.0.1:4040).
        instance: `service.instance.id` (else `OTEL_LEAKPROC_INSTANCE`, the resource attribute, the host name).
        attributes: more resource attributes (merged over `OTEL_RESOURCE_ATTRIBUTES`).
        tenant: `X-Scope-OrgID` (else `OTEL_LEAKPROC_TENANT`).
        token: bearer token (else `OTEL_LEAKPROC_TOKEN`).
        basic_auth: (user, password) (else `OTEL_LEAKPROC_BASIC_AUTH_USER` / `_PASSWORD`).
        interval: seconds between captures (else `OTEL_LEAKPROC_INTERVAL`, else 30).
        frames: traceback depth if this client starts tracemalloc (else `OTEL_LEAKPROC_FRAMES`, else 16).
        max_tracebacks: tracebacks kept whole per profile (else `OTEL_LEAKPROC_MAX_TRACEBACKS`, else 2000).
        threads: also send thread stacks (else `OTEL_LEAKPROC_THREADS`, else true).
        **options: any other `ClientConfig` field (`timeout_seconds`, `max_buffered`, ...).

    Raises:
        ValueError: an explicit argument is invalid (environment mistakes are logged and defaulted).
    """
    global _client  # noqa: PLW0603 - one client per process, like logging.basicConfig
    env = os.environ
    with _lock:
        if _client is not None and _client.running:
            return _client
        if not enabled_from_env(env):
            LOG.info("otel-leakproc client disabled by OTEL_LEAKPROC_ENABLED")
            return None
        config = config_from(
            env,
            service=service,
            url=url,
            instance=instance,
            attributes=attributes,
            tenant=tenant,
            token=token,
            basic_auth=basic_auth,
            interval=interval,
            frames=frames,
            max_tracebacks=max_tracebacks,
            threads=threads,
            **options,
        )
        client = Client(config)
        client.start()
        _client = client
        return client


def stop(timeout: float = 5.0) -> None:
    """Stop the client started by `start()` (delivering what is buffered, within `timeout`). Idempotent."""
    global _client
    with _lock:
        client, _client = _client, None
    if client is not None:
        client.stop(timeout)


def get_client() -> Client | None:
    """The client started by `start()`, if any."""
    return _client


def _forget_after_fork() -> None:
    # The sampler thread does not survive fork(): a child starts its own client with start().
    global _client, _lock  # noqa: PLW0603
    _client = None
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
