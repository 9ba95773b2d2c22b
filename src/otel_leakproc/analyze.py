"""Offline analysis: the same decoders and detectors as the service, on files and folders.

Profiles are grouped into series (one per folder and kind), ordered by the profile's own timestamp
(file modification time for text dumps, which carry none) and fed to the detectors one by one. A folder
named like a version (`v1.4.2`, `v2`, `v1.0.0-rc1`: `v` then a semver-like number) names the
`service.version` of the profiles under it and is not part of the series name: `checkout/v1.4.1/heap`
and `checkout/v1.4.2/heap` are one series, fed in time order, that restarted with a new version.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from otel_leakproc.errors import InvalidProfileError
from otel_leakproc.model import ProfileKind, ProfileSummary, SeriesKey, SeriesReport
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.processor.detector import SeriesDetector
from otel_leakproc.receiver.decode import DecodeLimits, decode_profile

# Folder names that say which profile kind a folder holds (as laid out by `curl` scripts and the corpus).
KIND_DIRS: dict[str, ProfileKind] = {
    "heap": ProfileKind.HEAP,
    "allocs": ProfileKind.HEAP,
    "goroutine": ProfileKind.GOROUTINE,
    "goroutines": ProfileKind.GOROUTINE,
    "goroutine-text": ProfileKind.GOROUTINE,
    "goroutineleak": ProfileKind.GOROUTINELEAK,
    "goroutineleak-text": ProfileKind.GOROUTINELEAK,
    "mutex": ProfileKind.MUTEX,
    "block": ProfileKind.BLOCK,
}
SKIP_SUFFIXES = (".json", ".md", ".yaml", ".yml")
VERSION_DIR = re.compile(r"v\d+(\.\d+)*([-+][0-9A-Za-z.+-]*)?")


@dataclass(slots=True)
class SeriesResult:
    """One analysed series: its final report, where it came from, and per-profile statuses."""

    source: str
    report: SeriesReport
    timeline: list[SeriesReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AnalyzeOptions:
    service: str | None = None
    instance: str | None = None
    kind: ProfileKind | None = None
    memory_limit_bytes: int | None = None
    keep_timeline: bool = False
    time_of: Callable[[Path], int] | None = None
    select: Callable[[Path], bool] | None = None  # keep only the files it accepts (e.g. thinning a corpus)


def collect_files(paths: Sequence[str]) -> dict[tuple[Path, str], list[Path]]:
    """Files grouped by (folder, series label); a folder holds one series (version folders aside)."""
    groups: dict[tuple[Path, str], list[Path]] = {}
    for raw in paths:
        root = Path(raw)
        if not root.exists():
            raise FileNotFoundError(f"{raw}: no such file or directory")
        base = root.parent if root.is_dir() else root.parent.parent
        for file in _walk(root):
            folder = file.parent
            groups.setdefault((folder, _label(folder, base)), []).append(file)
    return groups


def _walk(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.startswith(".") and not name.endswith(SKIP_SUFFIXES):
                yield Path(dirpath) / name


def _label(folder: Path, base: Path) -> str:
    parts = list(folder.relative_to(base).parts) if folder.is_relative_to(base) else [folder.name]
    if parts and parts[-1] in KIND_DIRS:
        parts = parts[:-1]
    return "/".join(parts) or (folder.parent.name if folder.name in KIND_DIRS else folder.name) or "profiles"


def split_version(label: str) -> tuple[str, str | None]:
    """A series label without its version folder, and that version (None when no part is one)."""
    parts = label.split("/")
    versions = [p for p in parts if VERSION_DIR.fullmatch(p)]
    if not versions:
        return label, None
    rest = [p for p in parts if not VERSION_DIR.fullmatch(p)]
    return "/".join(rest) or "profiles", versions[-1]


def load_series(
    files: Iterable[Path],
    limits: DecodeLimits,
    kind_hint: ProfileKind | None,
    time_of: Callable[[Path], int] | None = None,
) -> tuple[dict[ProfileKind, list[ProfileSummary]], list[str]]:
    """Decode files; return summaries per kind in time order, and one error line per bad file.

    `time_of` gives the collection time of profiles that carry none (default: modification time).
    """
    by_kind: dict[ProfileKind, list[ProfileSummary]] = {}
    errors: list[str] = []
    for file in files:
        hint = kind_hint or KIND_DIRS.get(file.parent.name)
        try:
            data = file.read_bytes()
            fallback = time_of(file) if time_of else file.stat().st_mtime_ns
            summary = decode_profile(data, limits, kind_hint=hint, time_fallback_nanos=fallback)
        except (InvalidProfileError, OSError) as exc:
            errors.append(f"{file}: {exc}")
            continue
        by_kind.setdefault(summary.kind, []).append(summary)
    for summaries in by_kind.values():
        summaries.sort(key=lambda s: s.time_nanos)
    return by_kind, errors


def _merge_versions(
    groups: dict[tuple[Path, str], list[Path]],
) -> list[tuple[Path, str, list[tuple[str | None, list[Path]]]]]:
    """Series in folder order: (folder shown as source, label, files per version). Folders that differ only
    in a version folder are one series, shown as the folder above the first version folder."""
    merged: dict[str, tuple[Path, str, list[tuple[str | None, list[Path]]]]] = {}
    out: list[tuple[Path, str, list[tuple[str | None, list[Path]]]]] = []
    for (folder, label), found in sorted(groups.items(), key=lambda kv: str(kv[0][0])):
        plain, version = split_version(label)
        if version is None:
            out.append((folder, label, [(None, found)]))
            continue
        entry = merged.get(plain)
        if entry is None:
            source = folder
            while source.name != version and source.parent != source:
                source = source.parent
            entry = merged[plain] = (source.parent, plain, [])
            out.append(entry)
        entry[2].append((version, found))
    return out


def analyze_paths(
    paths: Sequence[str], config: ProcessorConfig, limits: DecodeLimits, options: AnalyzeOptions
) -> list[SeriesResult]:
    """Run the detectors over every series found under `paths`."""
    results: list[SeriesResult] = []
    for folder, label, versions in _merge_versions(collect_files(paths)):
        by_kind: dict[ProfileKind, list[tuple[ProfileSummary, str | None]]] = {}
        errors: list[str] = []
        for version, found in versions:
            files = found if options.select is None else [f for f in found if options.select(f)]
            loaded, failed = load_series(files, limits, options.kind, options.time_of)
            errors += failed
            for kind, summaries in loaded.items():
                by_kind.setdefault(kind, []).extend((s, version) for s in summaries)
        for entries in by_kind.values():
            entries.sort(key=lambda e: e[0].time_nanos)  # stable: one version's order kept on equal times
        service, _, instance = label.partition("/")
        for kind, versioned in sorted(by_kind.items(), key=lambda kv: kv[0]):
            key = SeriesKey(
                tenant="",
                service=options.service or service,
                instance=options.instance if options.instance is not None else instance,
                kind=kind,
            )
            detector = SeriesDetector(key, config, memory_limit_bytes=options.memory_limit_bytes)
            timeline = []
            for summary, version in versioned:
                report = detector.update(summary, version)
                if options.keep_timeline:
                    timeline.append(report)
            results.append(SeriesResult(str(folder), detector.report(), timeline, errors))
        if not by_kind and errors:
            key = SeriesKey(
                "", options.service or service, options.instance or instance, options.kind or ProfileKind.HEAP
            )
            results.append(SeriesResult(str(folder), SeriesDetector(key, config).report(), [], errors))
    return results
