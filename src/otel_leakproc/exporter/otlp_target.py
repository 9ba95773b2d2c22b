"""Where OTLP goes: the `export.otlp` settings combined with the standard `OTEL_EXPORTER_OTLP_*` variables.

Shared by the derived-signal exporter (`exporter/otlp.py`) and otel-leakproc's own telemetry
(`exporter/self_telemetry.py`), so both resolve endpoints, TLS and compression the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression

from otel_leakproc.exporter.config import OtlpConfig

ENDPOINT_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
)


@dataclass(frozen=True, slots=True)
class OtlpTarget:
    """Where and how one signal is sent, after YAML and environment are combined."""

    protocol: str
    endpoint: str | None  # None = let the SDK read OTEL_EXPORTER_OTLP_[SIGNAL_]ENDPOINT
    headers: dict[str, str] | None
    insecure: bool | None
    ca_file: str | None
    compression: str | None  # "gzip", "none", or None = OTEL_EXPORTER_OTLP_COMPRESSION
    timeout_seconds: float


def otlp_enabled(config: OtlpConfig, environ: Mapping[str, str]) -> bool:
    """True when an endpoint is configured in the YAML or any standard OTLP endpoint variable."""
    return bool(config.endpoint) or any(environ.get(name) for name in ENDPOINT_VARIABLES)


def resolve_target(config: OtlpConfig, signal: str, environ: Mapping[str, str]) -> OtlpTarget:
    """Combine the YAML settings with the environment for `signal` ("metrics" or "logs").

    A value in the YAML wins; an empty one defers to `OTEL_EXPORTER_OTLP_<SIGNAL>_*`, then
    `OTEL_EXPORTER_OTLP_*` (the SDK applies those itself for endpoint, headers, certificate, compression).
    """
    upper = signal.upper()
    protocol = (
        config.protocol
        or environ.get(f"OTEL_EXPORTER_OTLP_{upper}_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    )
    endpoint: str | None = None
    if config.endpoint:
        endpoint = config.endpoint
        if protocol != "grpc":
            endpoint = endpoint.rstrip("/") + f"/v1/{signal}"
    return OtlpTarget(
        protocol=protocol,
        endpoint=endpoint,
        headers=dict(config.headers) or None,
        insecure=config.insecure,
        ca_file=config.ca_file or None,
        compression=config.compression or None,
        timeout_seconds=config.timeout_seconds,
    )


def grpc_exporter_kwargs(target: OtlpTarget) -> dict[str, Any]:
    """Keyword arguments for the SDK's gRPC OTLP exporters (metrics or logs) sending to `target`."""
    kwargs: dict[str, Any] = {
        "endpoint": target.endpoint,
        "headers": target.headers,
        "timeout": target.timeout_seconds,
        "insecure": target.insecure,
    }
    if target.ca_file:
        kwargs["credentials"] = grpc.ssl_channel_credentials(root_certificates=Path(target.ca_file).read_bytes())
    if target.compression:
        gzip = target.compression == "gzip"
        kwargs["compression"] = grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression
    return kwargs


def http_exporter_kwargs(target: OtlpTarget) -> dict[str, Any]:
    """Keyword arguments for the SDK's HTTP/protobuf OTLP exporters sending to `target`."""
    kwargs: dict[str, Any] = {
        "endpoint": target.endpoint,
        "headers": target.headers,
        "timeout": target.timeout_seconds,
        "certificate_file": target.ca_file,
    }
    if target.compression:
        kwargs["compression"] = HttpCompression.Gzip if target.compression == "gzip" else HttpCompression.NoCompression
    return kwargs
