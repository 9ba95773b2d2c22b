"""Exporter settings (the `export` section of the config file)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ExportConfig:
    """Where derived signals go.

    Attributes:
        console: print events (status transitions, naming the top grower) and new series to stdout in a
            readable form; the default for local runs.
    """

    console: bool = True

    def validate(self) -> list[str]:
        return []
