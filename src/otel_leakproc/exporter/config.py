"""Exporter settings (the `export` section of the config file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

PROTOCOLS = ("grpc", "http/protobuf")


@dataclass(frozen=True, slots=True)
class OtlpConfig:
    """OTLP metrics and log events to a collector.

    Every field left at its empty default falls back to the standard `OTEL_EXPORTER_OTLP_*` environment
    variables (the signal-specific `OTEL_EXPORTER_OTLP_METRICS_*` / `OTEL_EXPORTER_OTLP_LOGS_*` first), then to
    the SDK's own default. A value written here always wins over the environment.

    Attributes:
        endpoint: collector address. gRPC: `http://host:4317` (plain) or `https://host:4317` (TLS); HTTP: the
            base URL `http://host:4318`, to which `/v1/metrics` and `/v1/logs` are appended. "" = take it
            from the environment; with no endpoint anywhere, OTLP export is off.
        protocol: "grpc" or "http/protobuf"; "" = `OTEL_EXPORTER_OTLP_PROTOCOL`, else "grpc".
        headers: sent with every export request (e.g. an API key); merged over `OTEL_EXPORTER_OTLP_HEADERS`.
        insecure: gRPC only: true = plain text even for a non-`http://` endpoint; null = decide by the scheme.
        ca_file: PEM CA bundle to verify the collector's certificate; "" = system roots.
        compression: "gzip" or "none"; "" = `OTEL_EXPORTER_OTLP_COMPRESSION`, else none.
        timeout_seconds: deadline of one export request, retries included.
        export_interval_seconds: how often the latest value of every series is sent as metrics.
    """

    endpoint: str = ""
    protocol: Literal["", "grpc", "http/protobuf"] = ""
    headers: dict[str, str] = field(default_factory=dict)
    insecure: bool | None = None
    ca_file: str = ""
    compression: Literal["", "gzip", "none"] = ""
    timeout_seconds: float = 10.0
    export_interval_seconds: float = 30.0

    def validate(self) -> list[str]:
        errors = []
        if self.timeout_seconds <= 0:
            errors.append(f"timeout_seconds: must be > 0, got {self.timeout_seconds}")
        if self.export_interval_seconds < 1:
            errors.append(f"export_interval_seconds: must be >= 1, got {self.export_interval_seconds}")
        if self.endpoint and "://" not in self.endpoint:
            errors.append(f"endpoint: must start with http:// or https://, got {self.endpoint!r}")
        return errors


@dataclass(frozen=True, slots=True)
class EventDeliveryConfig:
    """How log events survive a collector outage: retried with backoff, then kept on disk.

    Attributes:
        spool_dir: folder for events not yet delivered; "" = `<state.dir>/spool` (memory only when state.dir
            is "" too).
        max_spooled_events: events kept while the collector is unreachable; beyond it the oldest are dropped
            and counted in `otel_leakproc_events_dropped_total`.
        max_backoff_seconds: longest pause between delivery attempts (the pause doubles from 1 s up to it).
    """

    spool_dir: str = ""
    max_spooled_events: int = 10000
    max_backoff_seconds: float = 60.0

    def validate(self) -> list[str]:
        errors = []
        if self.max_spooled_events < 1:
            errors.append(f"max_spooled_events: must be >= 1, got {self.max_spooled_events}")
        if self.max_backoff_seconds < 1:
            errors.append(f"max_backoff_seconds: must be >= 1, got {self.max_backoff_seconds}")
        return errors


@dataclass(frozen=True, slots=True)
class PrometheusConfig:
    """A Prometheus `/metrics` exposition of the derived metrics, for teams that scrape.

    Attributes:
        enabled: serve it (off by default; the collector path is the main one).
        address: HOST:PORT of its own listener (port 0 = any free port).
    """

    enabled: bool = False
    address: str = "127.0.0.1:9464"

    def validate(self) -> list[str]:
        host, sep, port = self.address.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            return [f"address: expected HOST:PORT, got {self.address!r}"]
        return []


@dataclass(frozen=True, slots=True)
class ExportConfig:
    """Where derived signals go.

    Attributes:
        console: print events and new series to stdout readably. Used when true, and always when no OTLP
            endpoint is configured anywhere (the default for local runs).
        otlp: OTLP metrics and log events (on when an endpoint is set here or in the environment).
        events: retry and on-disk spool for log events.
        prometheus: optional `/metrics` exposition of the derived metrics.
    """

    console: bool = False
    otlp: OtlpConfig = field(default_factory=OtlpConfig)
    events: EventDeliveryConfig = field(default_factory=EventDeliveryConfig)
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)

    def validate(self) -> list[str]:
        return []
