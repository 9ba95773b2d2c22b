"""`otel-leakproc push`: upload profile files to a running service with the Pyroscope `/ingest` call.

Stdlib only (urllib), so it stays usable in scripts and small images. Each file is sent as
`POST /ingest?name=<service>{instance=<id>}&format=pprof&until=<file mtime, s>`; the service uses the
profile's own timestamp when it has one (pprof) and `until` otherwise (goroutine text dumps).
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

_NAME_FORBIDDEN = set("{}=,")


class PushError(Exception):
    """A file could not be read or the service refused it."""


def ingest_url(base: str, service: str, instance: str | None, kind: str | None, until_seconds: int) -> str:
    """The /ingest URL for one file (label values cannot contain `{`, `}`, `=` or `,`)."""
    for what, value in (("service", service), ("instance", instance or "")):
        if _NAME_FORBIDDEN & set(value):
            raise PushError(f"{what}: {value!r} must not contain any of {{ }} = ,")
    labels = f"{{instance={instance}}}" if instance else ""
    params = {"name": f"{service}{labels}", "format": "pprof", "until": str(until_seconds)}
    if kind:
        params["kind"] = kind
    return f"{base.rstrip('/')}/ingest?{urllib.parse.urlencode(params)}"


def _expand(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")))
        else:
            files.append(path)
    return files


def push_files(
    paths: Sequence[str],
    *,
    url: str,
    service: str,
    instance: str | None = None,
    kind: str | None = None,
    tenant: str | None = None,
    token: str | None = None,
    interval: float = 0.0,
    timeout: float = 30.0,
) -> int:
    """Upload every file (folders: their files in name order). Returns how many were accepted.

    Raises:
        PushError: a file cannot be read, or the service answered with an error (its message included).
    """
    token = token or os.environ.get("OTEL_LEAKPROC_TOKEN")
    sent = 0
    for index, path in enumerate(_expand(paths)):
        if index and interval > 0:
            time.sleep(interval)
        try:
            body = path.read_bytes()
            until = int(path.stat().st_mtime)
        except OSError as exc:
            raise PushError(f"{path}: {exc.strerror or exc}") from exc
        request = urllib.request.Request(ingest_url(url, service, instance, kind, until), data=body, method="POST")
        request.add_header("Content-Type", "application/octet-stream")
        if tenant:
            request.add_header("X-Scope-OrgID", tenant)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:500]
            raise PushError(f"{path}: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise PushError(f"{path}: cannot reach {url}: {getattr(exc, 'reason', exc)}") from exc
        sent += 1
    return sent
