"""Offline analysis: the same decoders and detectors as the service, on files and folders.

Profiles are grouped into series (one per folder and kind), ordered by the profile's own timestamp
(file modification time for text profiles, which carry none) and fed to the detectors one by one. A folder
named like a version (`v1.4.2`, `v2`, `v1.0.0-rc1`: `v` then a semver-like number) names the
`service.version` of the profiles under it and is not part of the series name: `checkout/v1.4.1/heap`
and `checkout/v1.4.2/heap` are one series, fed in time order, that restarted with a new version.

A file that cannot be decoded is skipped with its reason (the `RejectReason` of the decoder's error, or
`unreadable` when the file itself could not be read); `AnalyzeRun` counts them, so the CLI can say how
many inputs were skipped and why, and never reports a series that no profile was read into.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

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
# Reason of a file that could not be read at all (permissions, a folder vanishing mid-walk, ...).
UNREADABLE = "unreadable"


@dataclass(slots=True)
class SeriesResult:
    """One analysed series: its final report, where it came from, and per-profile statuses."""

    source: str
    report: SeriesReport
    timeline: list[SeriesReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """An input file that gave no profile: where, why (a `RejectReason` value or `unreadable`), and the
    decoder's one-line message."""

    path: str
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(slots=True)
class AnalyzeRun:
    """Everything one `analyze` run found: the series, and how many input files were read or skipped."""

    results: list[SeriesResult]
    files: int
    skipped: list[SkippedFile]

    @property
    def read(self) -> int:
        return self.files - len(self.skipped)

    def skipped_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self.skipped:
            counts[item.reason] = counts.get(item.reason, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass(frozen=True, slots=True)
class AnalyzeOptions:
    """How `analyze_inputs` names and feeds its series (the CLI's options, and the hooks of corpus studies)."""

    service: str | None = None
    instance: str | None = None
    kind: ProfileKind | None = None
    memory_limit_bytes: int | None = None
    keep_timeline: bool = False
    time_of: Callable[[str], int] | None = None  # given a file's path as `collect_files` spells it
    select: Callable[[str], bool] | None = None  # keep only the files it accepts (e.g. thinning a corpus)


# Paths are plain strings, split and joined the way `pathlib.PurePosixPath` spells them ("a/./b/" is
# "a/b", "" and "./" are "."; ".." is kept): importing pathlib (and the urllib.parse and ipaddress it
# pulls in) was about 15M instructions, 3% of an `analyze` run on a pair.


def _parts(path: str) -> list[str]:
    """`PurePosixPath(path).parts`."""
    names = [name for name in path.split("/") if name and name != "."]
    return ["/", *names] if path.startswith("/") else names


def _joined(parts: list[str]) -> str:
    if parts and parts[0] == "/":
        return "/" + "/".join(parts[1:])
    return "/".join(parts) or "."


def _clean(path: str) -> str:
    """`str(PurePosixPath(path))`."""
    return _joined(_parts(path))


def _parent(path: str) -> str:
    parts = _parts(path)
    return _joined(parts[:-1]) if parts and parts != ["/"] else _joined(parts)


def _name(path: str) -> str:
    parts = _parts(path)
    return parts[-1] if parts and parts != ["/"] else ""


def collect_files(paths: Sequence[str]) -> dict[tuple[str, str], list[str]]:
    """Files grouped by (folder, series label); a folder holds one series (version folders aside)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for raw in paths:
        if not os.path.exists(raw):
            raise FileNotFoundError(f"{raw}: no such file or directory")
        root = _clean(raw)
        base = _parent(root) if os.path.isdir(root) else _parent(_parent(root))
        for file in _walk(root):
            folder = _parent(file)
            groups.setdefault((folder, _label(folder, base)), []).append(file)
    return groups


def _walk(root: str) -> Iterator[str]:
    if os.path.isfile(root):
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        folder = _clean(dirpath)
        for name in sorted(filenames):
            if not name.startswith(".") and not name.endswith(SKIP_SUFFIXES):
                yield _joined([*_parts(folder), name])


def _label(folder: str, base: str) -> str:
    inside, above = _parts(folder), _parts(base)
    within = inside[: len(above)] == above and folder.startswith("/") == base.startswith("/")
    parts = inside[len(above) :] if within else [_name(folder)]
    if parts and parts[-1] in KIND_DIRS:
        parts = parts[:-1]
    return "/".join(parts) or (_name(_parent(folder)) if _name(folder) in KIND_DIRS else _name(folder)) or "profiles"


def split_version(label: str) -> tuple[str, str | None]:
    """A series label without its version folder, and that version (None when no part is one)."""
    parts = label.split("/")
    versions = [p for p in parts if VERSION_DIR.fullmatch(p)]
    if not versions:
        return label, None
    rest = [p for p in parts if not VERSION_DIR.fullmatch(p)]
    return "/".join(rest) or label, versions[-1]  # a version folder analysed alone keeps its name


def load_series(
    files: Iterable[str | os.PathLike[str]],
    limits: DecodeLimits,
    kind_hint: ProfileKind | None,
    time_of: Callable[[str], int] | None = None,
) -> tuple[dict[ProfileKind, list[ProfileSummary]], list[SkippedFile]]:
    """Decode files; return summaries per kind in time order, and the files that gave none.

    `time_of` gives the collection time of profiles that carry none (default: modification time).
    """
    by_kind: dict[ProfileKind, list[ProfileSummary]] = {}
    skipped: list[SkippedFile] = []
    for path in files:
        file = os.fspath(path)
        hint = kind_hint or KIND_DIRS.get(_name(_parent(file)))
        try:
            with open(file, "rb") as handle:
                data = handle.read()
            fallback = time_of(file) if time_of else os.stat(file).st_mtime_ns
            summary = decode_profile(data, limits, kind_hint=hint, time_fallback_nanos=fallback)
        except InvalidProfileError as exc:
            skipped.append(SkippedFile(file, exc.reason.value, str(exc)))
            continue
        except OSError as exc:
            skipped.append(SkippedFile(file, UNREADABLE, exc.strerror or str(exc)))
            continue
        by_kind.setdefault(summary.kind, []).append(summary)
    for summaries in by_kind.values():
        summaries.sort(key=lambda s: s.time_nanos)
    return by_kind, skipped


def _merge_versions(
    groups: dict[tuple[str, str], list[str]],
) -> list[tuple[str, str, list[tuple[str | None, list[str]]]]]:
    """Series in folder order: (folder shown as source, label, files per version). Folders that differ only
    in a version folder are one series, shown as the folder above the version folders."""
    merged: dict[str, tuple[str, str, list[tuple[str | None, list[str]]]]] = {}
    out: list[tuple[str, str, list[tuple[str | None, list[str]]]]] = []
    for (folder, label), found in sorted(groups.items(), key=lambda kv: kv[0][0]):
        plain, version = split_version(label)
        if version is None:
            out.append((folder, label, [(None, found)]))
            continue
        entry = merged.get(plain)
        if entry is None:
            entry = merged[plain] = (folder, plain, [])
            out.append(entry)
        entry[2].append((version, found))
    return [(_above_version(folder, v) if len(v) > 1 else folder, label, v) for folder, label, v in out]


def _above_version(folder: str, versions: list[tuple[str | None, list[str]]]) -> str:
    """The folder that holds a series' version folders (what the series is shown as coming from)."""
    source = folder
    while _name(source) != versions[0][0] and _parent(source) != source:
        source = _parent(source)
    return _parent(source)


def analyze_inputs(
    paths: Sequence[str], config: ProcessorConfig, limits: DecodeLimits, options: AnalyzeOptions
) -> AnalyzeRun:
    """Run the detectors over every series found under `paths`; count the files read and skipped.

    A folder whose files were all skipped gives no series (its files are in `AnalyzeRun.skipped`).
    """
    run = AnalyzeRun([], 0, [])
    for folder, label, versions in _merge_versions(collect_files(paths)):
        by_kind: dict[ProfileKind, list[tuple[ProfileSummary, str | None]]] = {}
        errors: list[str] = []
        for version, found in versions:
            files = found if options.select is None else [f for f in found if options.select(f)]
            loaded, skipped = load_series(files, limits, options.kind, options.time_of)
            run.files += len(files)
            run.skipped.extend(skipped)
            errors += [str(item) for item in skipped]
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
            run.results.append(SeriesResult(folder, detector.report(), timeline, errors))
    return run


def analyze_paths(
    paths: Sequence[str], config: ProcessorConfig, limits: DecodeLimits, options: AnalyzeOptions
) -> list[SeriesResult]:
    """Run the detectors over every series found under `paths` (see `analyze_inputs`)."""
    return analyze_inputs(paths, config, limits, options).results
