"""Detector settings (the `processor` section of the config file). Filled in by the detectors work."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProcessorConfig:
    """Placeholder: the detector settings are added here; every field has a documented default."""

    window: int = 120

    def validate(self) -> list[str]:
        return [] if self.window >= 8 else [f"window: must be >= 8, got {self.window}"]
