"""Bounds applied while decoding one profile (see `receiver.config` for where they come from)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Hard bounds for one upload. Every limit is checked before the work it bounds is done.

    Attributes:
        max_decompressed_bytes: stop inflating gzip beyond this (gzip bombs stop here).
        max_samples: samples (pprof/OTLP) or goroutines (text dumps) per profile.
        max_locations: locations per profile.
        max_functions: functions per profile.
        max_strings: string table entries per profile.
        top_sites: attributed sites kept per summary (the rest is folded into "other").
        top_groups: goroutine groups kept per summary.
    """

    max_decompressed_bytes: int = 64 * 1024 * 1024
    max_samples: int = 1_000_000
    max_locations: int = 1_000_000
    max_functions: int = 1_000_000
    max_strings: int = 2_000_000
    top_sites: int = 64
    top_groups: int = 64
