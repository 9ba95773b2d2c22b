"""Validation of the `scrape` section: every problem reported with its key path."""

from __future__ import annotations

import pytest

from otel_leakproc.config import settings_from_mapping
from otel_leakproc.errors import ConfigError


def errors(scrape: dict[str, object]) -> list[str]:
    try:
        settings_from_mapping({"scrape": scrape})
    except ConfigError as exc:
        return list(exc.errors)
    return []


def test_defaults_are_valid_and_off() -> None:
    settings = settings_from_mapping({})
    assert settings.scrape.enabled is False
    assert settings.scrape.interval_seconds == 60
    assert settings.scrape.profiles == ("heap", "goroutine", "goroutineleak", "mutex", "block")
    assert settings.scrape.kubernetes.annotation_prefix == "otel-leakproc.io/"
    assert settings.scrape.format == "pprof"


@pytest.mark.parametrize(
    ("scrape", "expected"),
    [
        ({"interval_seconds": 0}, ["scrape.interval_seconds: must be > 0, got 0.0"]),
        ({"jitter": 0.9}, ["scrape.jitter: must be between 0 and 0.5, got 0.9"]),
        (
            {"profiles": ["heap", "cpu"]},
            ["scrape.profiles[1]: 'cpu' is not one of heap, goroutine, goroutineleak, mutex, block"],
        ),
        ({"profiles": []}, ["scrape.profiles: must list at least one profile"]),
        ({"format": "json"}, ["scrape.format: 'json' is not one of pprof, text"]),
        ({"max_targets": 0}, ["scrape.max_targets: must be between 1 and 100000, got 0"]),
        ({"tenant": "a b"}, ["scrape.tenant: 'a b' is not 1-64 letters, digits, '.', '_' or '-'"]),
        (
            {"static_targets": [{"service": "x", "url": "http://a:1", "address": "a:1"}]},
            ["scrape.static_targets[0].url: give exactly one of url and address"],
        ),
        ({"static_targets": [{"service": "x"}]}, ["scrape.static_targets[0].url: give exactly one of url and address"]),
        (
            {"static_targets": [{"service": "x", "url": "ftp://a"}]},
            ["scrape.static_targets[0].url: 'ftp://a' is not an http:// or https:// URL"],
        ),
        (
            {"static_targets": [{"service": "x", "address": "nohost"}]},
            ["scrape.static_targets[0].address: 'nohost' is not HOST:PORT"],
        ),
        (
            {"static_targets": [{"service": "x y", "address": "a:1", "labels": {"k-1": "v", "k": "a,b"}}]},
            [
                "scrape.static_targets[0].service: 'x y' is not a service name (letters, digits, '_', '.', '-', '/')",
                "scrape.static_targets[0].labels: 'k-1' is not a label name (letters, digits, '_' and '.')",
                "scrape.static_targets[0].labels.k: 'a,b' may not contain any of '{}=,' or surrounding spaces",
            ],
        ),
        ({"static_targets": [{"address": "a:1"}]}, ["scrape.static_targets[0].service: required key is missing"]),
        ({"kubernetes": {"port": 70000}}, ["scrape.kubernetes.port: must be between 0 and 65535, got 70000"]),
        ({"kubernetes": {"path": "pprof"}}, ["scrape.kubernetes.path: must start with '/', got 'pprof'"]),
        ({"kubernetes": {"scheme": "ftp"}}, ["scrape.kubernetes.scheme: must be http or https, got 'ftp'"]),
        ({"kubernetes": {"namespaces": [""]}}, ["scrape.kubernetes.namespaces[0]: must not be empty"]),
        (
            {"dump_on_suspect": {"max_groups": 0}},
            ["scrape.dump_on_suspect.max_groups: must be between 1 and 100, got 0"],
        ),
        (
            {"dump_on_suspect": {"min_interval_seconds": -1}},
            ["scrape.dump_on_suspect.min_interval_seconds: must be > 0, got -1.0"],
        ),
    ],
)
def test_invalid(scrape: dict[str, object], expected: list[str]) -> None:
    assert errors(scrape) == expected
