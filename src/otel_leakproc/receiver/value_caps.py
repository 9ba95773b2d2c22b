"""Length caps on every string a decoded upload brings into the service's state.

Decoders bound how many functions, samples and strings a profile may have, but not how long one string
is: a 58 KB gzipped profile can name 64 functions with 900,000 characters each. Whatever the decoder
produced, `cap_upload` cuts each name, label and identity string to its cap before the result leaves the
decoder worker, so a series' memory is bounded by the configured caps whatever the input.

A cut string keeps its first `cap - 3` characters and ends with `TRUNCATION_MARK` ("..."), so a human sees it was
cut. Two sites (or goroutine groups) whose names become equal once cut are merged (values summed), never
silently overwritten. Every cut is counted by field (`otel_leakproc_values_truncated_total{field}`).

This runs at the boundary, on the decoder's output (`UploadResult`), and knows nothing of the decoders'
internals. It is pure and picklable, so it runs in the worker process next to the decoder.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from otel_leakproc.model import GoroutineGroup, ProfileSummary, SiteValue

if TYPE_CHECKING:  # only types: the config imports this module, and must not pull in the decoders
    from otel_leakproc.receiver.uploads import DecodedProfile, UploadResult

# ASCII on purpose: one non-Latin-1 character would make CPython store the whole name at 2 bytes per
# character, doubling what a cut name costs.
TRUNCATION_MARK = "..."

# The closed set of `field` label values of otel_leakproc_values_truncated_total.
FIELDS = ("function", "file", "goroutine_state", "service", "instance", "label_key", "label_value")


@dataclass(frozen=True, slots=True)
class ValueCaps:
    """Most characters kept per string (see `decode.max_name_chars` and `decode.max_label_chars`).

    Attributes:
        max_name_chars: function and file names (sites, leaf frames, goroutine frames and creators).
        max_label_chars: service, instance, label and resource keys and values, goroutine wait states.
    """

    max_name_chars: int = 512
    max_label_chars: int = 256


class _Cutter:
    """Cuts strings to their caps and counts the cuts by field."""

    def __init__(self, caps: ValueCaps) -> None:
        self.caps = caps
        self.counts: Counter[str] = Counter()

    def cut(self, value: str, field: str, limit: int) -> str:
        if len(value) <= limit:
            return value
        self.counts[field] += 1
        return value[: limit - len(TRUNCATION_MARK)] + TRUNCATION_MARK

    def name(self, value: str, field: str = "function") -> str:
        return self.cut(value, field, self.caps.max_name_chars)

    def label(self, value: str, field: str) -> str:
        return self.cut(value, field, self.caps.max_label_chars)

    def labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in labels.items():
            out.setdefault(self.label(key, "label_key"), self.label(value, "label_value"))
        return out


def cap_label(value: str, caps: ValueCaps) -> str:
    """`value` as `cap_upload` leaves a service, instance or label (what the series identity becomes)."""
    return _Cutter(caps).label(value, "service")


def cap_upload(result: UploadResult, caps: ValueCaps) -> tuple[UploadResult, dict[str, int]]:
    """Cap every string of a decoded upload.

    Returns:
        The capped result (the same object when nothing was over a cap) and the number of strings cut,
        by field (only fields with cuts).
    """
    if all(_fits(p, caps) for p in result.profiles):
        return result, {}  # nothing to cut (nearly every upload): no copy
    cutter = _Cutter(caps)
    profiles = tuple(_cap_profile(p, cutter) for p in result.profiles)
    if not cutter.counts:
        return result, {}
    return dataclasses.replace(result, profiles=profiles), dict(cutter.counts)


def _fits(profile: DecodedProfile, caps: ValueCaps) -> bool:
    """Whether every string of `profile` is within its cap (then capping would change nothing)."""
    name, label = caps.max_name_chars, caps.max_label_chars
    summary = profile.summary
    return (
        len(profile.service) <= label
        and len(profile.instance) <= label
        and all(len(k) <= label and len(v) <= label for k, v in profile.resource.items())
        and all(len(k) <= label and len(v) <= label for k, v in summary.labels.items())
        and all(len(s.function) <= name and len(s.file) <= name and len(s.leaf) <= name for s in summary.sites)
        and all(
            len(g.state) <= label and max(len(g.blocking), len(g.function), len(g.file), len(g.creator)) <= name
            for g in summary.groups
        )
    )


def _cap_profile(profile: DecodedProfile, cutter: _Cutter) -> DecodedProfile:
    before = sum(cutter.counts.values())
    service = cutter.label(profile.service, "service")
    instance = cutter.label(profile.instance, "instance")
    resource: dict[str, str] = {}
    for key, value in profile.resource.items():
        if key == "service.name":
            resource[key] = service
        elif key == "service.instance.id":
            resource[key] = instance
        else:
            resource.setdefault(cutter.label(key, "label_key"), cutter.label(value, "label_value"))
    summary = cap_summary(profile.summary, cutter)
    if sum(cutter.counts.values()) == before:
        return profile
    return dataclasses.replace(profile, service=service, instance=instance, resource=resource, summary=summary)


def cap_summary(summary: ProfileSummary, cutter: _Cutter) -> ProfileSummary:
    """The summary with every name cut to its cap; colliding sites and groups merged."""
    before = sum(cutter.counts.values())
    sites = _cap_sites(summary.sites, cutter)
    groups = _cap_groups(summary.groups, cutter)
    labels = cutter.labels(summary.labels)
    if sum(cutter.counts.values()) == before:
        return summary
    return dataclasses.replace(summary, sites=sites, groups=groups, labels=labels)


def _cap_sites(sites: tuple[SiteValue, ...], cutter: _Cutter) -> tuple[SiteValue, ...]:
    merged: dict[str, SiteValue] = {}
    for site in sites:
        function = cutter.name(site.function)
        capped = SiteValue(
            function=function,
            file=cutter.name(site.file, "file"),
            line=site.line,
            value=site.value,
            count=site.count,
            leaf=cutter.name(site.leaf),
        )
        seen = merged.get(function)
        if seen is None:
            merged[function] = capped
        else:  # two names equal once cut: one site, values summed (the larger keeps its description)
            merged[function] = dataclasses.replace(seen, value=seen.value + site.value, count=seen.count + site.count)
    if len(merged) == len(sites):
        return tuple(merged.values())
    return tuple(sorted(merged.values(), key=lambda s: -s.value))


def _cap_groups(groups: tuple[GoroutineGroup, ...], cutter: _Cutter) -> tuple[GoroutineGroup, ...]:
    merged: dict[str, GoroutineGroup] = {}
    for group in groups:
        capped = GoroutineGroup(
            state=cutter.label(group.state, "goroutine_state"),
            blocking=cutter.name(group.blocking),
            function=cutter.name(group.function),
            file=cutter.name(group.file, "file"),
            line=group.line,
            creator=cutter.name(group.creator),
            count=group.count,
            max_wait_minutes=group.max_wait_minutes,
            leaked=group.leaked,
        )
        seen = merged.get(capped.key)
        if seen is None:
            merged[capped.key] = capped
        else:
            merged[capped.key] = dataclasses.replace(
                seen,
                count=seen.count + group.count,
                max_wait_minutes=max(seen.max_wait_minutes, group.max_wait_minutes),
                leaked=seen.leaked + group.leaked,
            )
    if len(merged) == len(groups):
        return tuple(merged.values())
    return tuple(sorted(merged.values(), key=lambda g: -g.count))
