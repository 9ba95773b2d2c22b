"""Receiver settings (the `decode` section of the config file).

The HTTP and gRPC server settings (addresses, TLS, auth, body limits) arrive with the servers in a later
issue and will live here too, next to the component they configure.
"""

from __future__ import annotations

from dataclasses import dataclass

from otel_leakproc.receiver.decode.limits import DecodeLimits

# The decoder's own defaults are the single source of truth; the config only mirrors them.
_LIMITS = DecodeLimits()

MUST_BE_POSITIVE = "{key}: must be > 0, got {value}"
MUST_BE_BETWEEN = "{key}: must be between {low} and {high}, got {value}"

# Summaries carry top-K lists into processor state for every series; 4096 keeps that state bounded.
MAX_TOP_K = 4096


@dataclass(frozen=True, slots=True)
class DecodeConfig:
    """Bounds for decoding one upload; see `DecodeLimits` for what each bound stops.

    Attributes:
        max_decompressed_bytes: stop inflating gzip beyond this many bytes.
        max_samples: samples (pprof/OTLP) or goroutines (text dumps) per profile.
        max_locations: locations per profile.
        max_functions: functions per profile.
        max_strings: string table entries per profile.
        top_sites: attributed sites kept per summary (the rest is folded into "other").
        top_groups: goroutine groups kept per summary.
    """

    max_decompressed_bytes: int = _LIMITS.max_decompressed_bytes
    max_samples: int = _LIMITS.max_samples
    max_locations: int = _LIMITS.max_locations
    max_functions: int = _LIMITS.max_functions
    max_strings: int = _LIMITS.max_strings
    top_sites: int = _LIMITS.top_sites
    top_groups: int = _LIMITS.top_groups

    def validate(self) -> list[str]:
        """Check every bound.

        Returns:
            One message per problem, each starting with the field name (the loader adds the section path).
        """
        errors: list[str] = []
        for key in ("max_decompressed_bytes", "max_samples", "max_locations", "max_functions", "max_strings"):
            value = getattr(self, key)
            if value <= 0:
                errors.append(MUST_BE_POSITIVE.format(key=key, value=value))
        for key in ("top_sites", "top_groups"):
            value = getattr(self, key)
            if not 1 <= value <= MAX_TOP_K:
                errors.append(MUST_BE_BETWEEN.format(key=key, low=1, high=MAX_TOP_K, value=value))
        return errors

    def to_limits(self) -> DecodeLimits:
        """Return the decoder's view of these settings.

        Returns:
            A `DecodeLimits` with the same values.
        """
        return DecodeLimits(
            max_decompressed_bytes=self.max_decompressed_bytes,
            max_samples=self.max_samples,
            max_locations=self.max_locations,
            max_functions=self.max_functions,
            max_strings=self.max_strings,
            top_sites=self.top_sites,
            top_groups=self.top_groups,
        )
