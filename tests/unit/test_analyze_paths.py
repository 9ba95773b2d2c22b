"""`analyze` spells paths as strings (importing pathlib cost 3% of a run on a pair); its helpers must give
what `pathlib.PurePosixPath` gives, which it used before, so series names and sources do not change."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from otel_leakproc import analyze

SPELLINGS = [
    "a", "a/b", "a/b/", "./a", "a/./b", "a//b", "/", "/a", "/a/b/", "..", "../x", "a/../b", ".", "./",
    "heap", "/heap", "a/heap", "x/y/mutex", "/tmp/c/v1/heap", "shop/v1.4.2/heap", "a/b/.",
]  # fmt: skip


@pytest.mark.parametrize("path", SPELLINGS)
def test_path_helpers_spell_paths_as_pure_posix_path_does(path: str) -> None:
    pure = PurePosixPath(path)
    assert analyze._parts(path) == list(pure.parts)
    assert analyze._clean(path) == str(pure)
    assert analyze._parent(path) == str(pure.parent)
    assert analyze._name(path) == pure.name


def _label_by_pathlib(folder: str, base: str) -> str:
    """The series label as `analyze` computed it with pathlib (the code before the string helpers)."""
    f, b = PurePosixPath(folder), PurePosixPath(base)
    parts = list(f.relative_to(b).parts) if f.is_relative_to(b) else [f.name]
    if parts and parts[-1] in analyze.KIND_DIRS:
        parts = parts[:-1]
    return "/".join(parts) or (f.parent.name if f.name in analyze.KIND_DIRS else f.name) or "profiles"


def test_series_labels_are_those_pathlib_gave_for_every_pair_of_spellings() -> None:
    for folder in SPELLINGS:
        for base in SPELLINGS:
            got = analyze._label(analyze._clean(folder), analyze._clean(base))
            assert got == _label_by_pathlib(folder, base), (folder, base)


def test_collect_files_groups_a_tree_by_folder_and_label(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for rel in ("shop/v1/heap/1.pb.gz", "shop/v2/heap/2.pb.gz", "shop/mutex/1.pb.gz", "shop/notes.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    for spelling in ("shop", "./shop/", "shop/."):
        groups = analyze.collect_files([spelling])
        assert groups == {
            ("shop/mutex", "shop"): ["shop/mutex/1.pb.gz"],
            ("shop/v1/heap", "shop/v1"): ["shop/v1/heap/1.pb.gz"],
            ("shop/v2/heap", "shop/v2"): ["shop/v2/heap/2.pb.gz"],
        }, spelling
    absolute = analyze.collect_files([str(tmp_path / "shop" / "mutex" / "1.pb.gz")])
    assert absolute == {(str(tmp_path / "shop" / "mutex"), "shop"): [str(tmp_path / "shop/mutex/1.pb.gz")]}
    assert analyze.collect_files(["."]) == {
        ("shop/mutex", "shop"): ["shop/mutex/1.pb.gz"],
        ("shop/v1/heap", "shop/v1"): ["shop/v1/heap/1.pb.gz"],
        ("shop/v2/heap", "shop/v2"): ["shop/v2/heap/2.pb.gz"],
    }
