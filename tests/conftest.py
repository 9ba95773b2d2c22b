"""Session-wide checks: every external tool the suite drives is resolved before any test runs.

The pytest header lists each tool with the path it was found at and its version; a missing one stops the
session at once with the command that installs it, instead of surfacing as failures deep in the run.
"""

from __future__ import annotations

import pytest
import toolchain

_found: list[toolchain.Found] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    _found[:] = toolchain.check_all()
    problems = [f.problem for f in _found if f.problem]
    if problems:
        pytest.exit(
            "the test suite drives these tools for real and cannot find them where the project installs them:\n  "
            + "\n  ".join(problems),
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


def pytest_report_header(config: pytest.Config) -> list[str]:
    if not _found:
        return []
    width = max(len(f.name) for f in _found)
    return ["tools:"] + [f"  {f.name:<{width}}  {f.path}  {f.version}" for f in _found]
