"""Checks on what a decoder produced, before it enters state: values a real profile can never have.

Applied in the decoder worker to every decoded upload (next to `value_caps`), independent of the decoder
internals. Today: amounts that cannot be negative (in-use bytes and objects, goroutine counts, delays and
contentions) are rejected with the field named, so a forged profile cannot plant `current: -4.6e18` in
a series. A negative sample hidden by positive ones at the same site nets out here; the decoders check
individual samples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from otel_leakproc.errors import InvalidProfileError, RejectReason

if TYPE_CHECKING:
    from otel_leakproc.receiver.uploads import UploadResult


def check_upload(result: UploadResult) -> None:
    """Raise InvalidProfileError (`bad_values`) naming the first impossible value of any profile."""
    for index, profile in enumerate(result.profiles):
        summary = profile.summary
        where = f"profile[{index}] ({summary.kind.value}, service {profile.service[:64]!r})"
        for name, value in (("total", summary.total), ("total_count", summary.total_count)):
            if value < 0:
                raise InvalidProfileError(
                    f"{where}: sample.value: {name} of the samples is negative ({value:.6g}); "
                    "in-use amounts, counts and delays cannot be",
                    RejectReason.BAD_VALUES,
                )
        for site in summary.sites:
            if site.value < 0 or site.count < 0:
                raise InvalidProfileError(
                    f"{where}: sample.value: the samples of {site.function[:128]!r} sum to a negative amount "
                    f"({min(site.value, site.count):.6g}); in-use amounts, counts and delays cannot be",
                    RejectReason.BAD_VALUES,
                )
        for group in summary.groups:
            if group.count < 0:
                raise InvalidProfileError(
                    f"{where}: goroutine count of {group.function[:128]!r} is negative ({group.count})",
                    RejectReason.BAD_VALUES,
                )
