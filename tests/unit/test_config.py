"""Tests for the configuration loader (`otel_leakproc.config`), `receiver.config.DecodeConfig` and the
detector settings in `processor.config`.

Fixture files live in tests/testdata/config/; `config/leakproc.yaml` is the shipped default config.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_type_hints

import pytest
import yaml

from otel_leakproc.config import (
    ENV_UNSET,
    UNKNOWN_KEY_SUGGESTION,
    Settings,
    build_config,
    config_to_mapping,
    load_settings,
    settings_from_mapping,
    settings_to_mapping,
    substitute_env,
)
from otel_leakproc.errors import ConfigError
from otel_leakproc.exporter.config import EventDeliveryConfig, ExportConfig, OtlpConfig, PrometheusConfig
from otel_leakproc.processor.config import (
    ContentionConfig,
    FixConfig,
    GoroutineConfig,
    HeapConfig,
    ProcessorConfig,
    RedisConfig,
    StateConfig,
)
from otel_leakproc.receiver.config import (
    AuthConfig,
    Credential,
    DecodeConfig,
    GrpcServerConfig,
    HttpServerConfig,
    IngestConfig,
    RateLimitConfig,
    ServerConfig,
    TlsConfig,
)
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.scrape.config import (
    DumpOnSuspectConfig,
    KubernetesDiscoveryConfig,
    ScrapeConfig,
    StaticTarget,
)
from otel_leakproc.receiver.value_caps import ValueCaps

TESTDATA = Path(__file__).resolve().parents[1] / "testdata" / "config"
SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "config" / "leakproc.yaml"


def _errors(excinfo: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return excinfo.value.errors


# --- fixture files ------------------------------------------------------------------------------


def test_no_path_gives_defaults() -> None:
    assert load_settings(None) == Settings()


def test_default_yaml_equals_defaults() -> None:
    assert load_settings(TESTDATA / "default.yaml") == Settings()


EXPECTED_FULL = Settings(
    server=ServerConfig(
        http=HttpServerConfig(
            address="0.0.0.0:14040",
            tls=TlsConfig(cert_file="/tls/http.crt", key_file="/tls/http.key", client_ca_file="/tls/ca.crt"),
        ),
        grpc=GrpcServerConfig(
            enabled=False,
            address="0.0.0.0:14317",
            tls=TlsConfig(cert_file="/tls/grpc.crt", key_file="/tls/grpc.key", client_ca_file="/tls/grpc-ca.crt"),
            max_connections=8,
            max_concurrent_streams=3,
            max_message_bytes=2 * 1024 * 1024,
        ),
        max_body_bytes=1048576,
        max_profiles_per_request=8,
        shutdown_timeout_seconds=5.0,
        auth=AuthConfig(
            credentials=(
                Credential(tenant="acme", token="secret-token", allowed_tenants=("acme-dev",)),
                Credential(tenant="globex", username="globex", password="hunter2"),
            ),
            default_tenant="anonymous",
            trust_scope_header=False,
        ),
        rate_limit=RateLimitConfig(uploads_per_second=10.0, burst=20),
        processes=2,
    ),
    ingest=IngestConfig(
        workers=3,
        queue_size=16,
        retry_after_seconds=5.0,
        max_queue_share_per_tenant=0.5,
        max_bytes_in_flight=33554432,
        inline_max_bytes=4096,
    ),
    state=StateConfig(
        dir="/var/lib/otel-leakproc",
        snapshot_interval_seconds=10.0,
        max_series=500,
        max_series_per_tenant=100,
        fsync="always",
        fsync_interval_ms=250,
        journal_max_bytes=1048576,
        backend="redis",
        redis=RedisConfig(
            url="rediss://redis.example:6380/2",
            password_env="REDIS_PASSWORD",
            password_file="/run/secrets/redis-password",
            cluster=True,
            key_prefix="lp",
            partitions=128,
            lease_ttl_seconds=15.0,
            replica_id="pod-a",
            connect_timeout_seconds=1.0,
            timeout_seconds=3.0,
            poll_interval_ms=20,
            max_stream_entries=1000,
        ),
    ),
    export=ExportConfig(
        console=True,
        otlp=OtlpConfig(
            endpoint="https://collector.example:4317",
            protocol="http/protobuf",
            headers={"api-key": "secret"},
            insecure=True,
            ca_file="/etc/ssl/collector-ca.pem",
            compression="gzip",
            timeout_seconds=5.0,
            export_interval_seconds=15.0,
        ),
        events=EventDeliveryConfig(
            spool_dir="/var/lib/otel-leakproc/spool", max_spooled_events=500, max_backoff_seconds=30.0
        ),
        prometheus=PrometheusConfig(enabled=True, address="0.0.0.0:9464"),
    ),
    decode=DecodeConfig(
        max_decompressed_bytes=1048576,
        max_samples=5000,
        max_locations=6000,
        max_functions=7000,
        max_strings=8000,
        top_sites=16,
        top_groups=4096,
        max_name_chars=300,
        max_label_chars=128,
    ),
    processor=ProcessorConfig(
        window_seconds=3600.0,
        max_points=120,
        fine_points=60,
        bucket_seconds=30.0,
        max_gap_seconds=900.0,
        resolve_seconds=600.0,
        auto_bucket_below_seconds=30.0,
        auto_bucket_seconds=120.0,
        screened_sites=32,
        top_growers=3,
        evaluate_every_seconds=7.0,
        heap=HeapConfig(
            warmup_seconds=600.0,
            min_points=8,
            min_window_seconds=300.0,
            z_suspect=2.0,
            z_confirm=3.5,
            z_resolve=1.0,
            confirm_seconds=1200.0,
            min_growth_bytes_per_hour=2097152.0,
            min_growth_ratio_per_hour=0.02,
            plateau_fraction=0.4,
            plateau_ratio=0.5,
            stopped_p=0.01,
            min_new_samples=3.0,
            late_onset_bytes=1048576.0,
            memory_limit_bytes=536870912,
            candidate_sites=6,
            late_onset_absent_profiles=4,
        ),
        goroutine=GoroutineConfig(
            warmup_seconds=120.0,
            min_points=5,
            z_suspect=2.5,
            z_confirm=3.2,
            z_resolve=1.5,
            confirm_seconds=300.0,
            min_growth_per_hour=6.5,
            min_increase=3,
            confirm_wait_minutes=20,
            candidate_groups=5,
            recent_fraction=0.4,
            ongoing_ratio=0.3,
        ),
        contention=ContentionConfig(
            warmup_seconds=60.0,
            min_points=8,
            z_suspect=2.1,
            z_resolve=0.9,
            confirm_seconds=450.0,
            min_delay_rate=0.005,
            high_delay_rate=0.25,
            recent_fraction=0.25,
            rise_ratio=2.5,
            keep_ratio=1.2,
        ),
        fix=FixConfig(compare_seconds=1500.0, min_compare_seconds=300.0, fixed_ratio=0.3, max_sites=2),
    ),
    scrape=ScrapeConfig(
        enabled=True,
        interval_seconds=15.0,
        jitter=0.25,
        timeout_seconds=4.0,
        max_response_bytes=4194304,
        profiles=("heap", "goroutine"),
        format="text",
        tenant="cluster-a",
        max_targets=50,
        static_targets=(
            StaticTarget(service="checkout", address="127.0.0.1:6060", instance="pod-1", labels={"region": "eu-1"}),
        ),
        kubernetes=KubernetesDiscoveryConfig(
            enabled=True,
            kubeconfig="/etc/kube/config",
            context="prod",
            namespaces=("shop", "jobs"),
            label_selector="team=shop",
            annotation_prefix="prometheus.io/",
            port=6060,
            path="/internal/pprof",
            scheme="https",
            profiles=("heap",),
            service_label="app",
            watch_timeout_seconds=120,
        ),
        dump_on_suspect=DumpOnSuspectConfig(
            enabled=False, min_interval_seconds=300.0, max_bytes=1048576, max_groups=5, max_frames=12
        ),
    ),
)


def test_full_yaml_equals_expected_settings() -> None:
    settings = load_settings(TESTDATA / "full.yaml")
    assert settings == EXPECTED_FULL
    # Float fields written as YAML integers are converted, so the types match the annotations.
    assert type(settings.processor.window_seconds) is float
    assert type(settings.processor.heap.min_growth_bytes_per_hour) is float
    assert type(settings.processor.heap.memory_limit_bytes) is int


def _leaves(data: object, path: str = "") -> dict[str, object]:
    if isinstance(data, dict):
        leaves: dict[str, object] = {}
        for key, value in data.items():
            leaves.update(_leaves(value, f"{path}.{key}" if path else str(key)))
        return leaves
    return {path: data}


def test_full_yaml_sets_every_field_to_a_non_default() -> None:
    # Fails when a field is added without a non-default value in full.yaml (and in EXPECTED_FULL).
    defaults = _leaves(settings_to_mapping(Settings()))
    full = _leaves(settings_to_mapping(load_settings(TESTDATA / "full.yaml")))
    unchanged = sorted(path for path, value in defaults.items() if full.get(path) == value)
    assert unchanged == [], f"full.yaml leaves these keys at their defaults: {unchanged}"


def test_typo_in_key_names_the_close_match() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(TESTDATA / "unknown_key.yaml")
    assert _errors(excinfo) == [
        UNKNOWN_KEY_SUGGESTION.format(path="processor.windw_seconds", suggestion="window_seconds")
    ]
    assert _errors(excinfo) == ["processor.windw_seconds: unknown key (did you mean 'window_seconds'?)"]


def test_empty_or_comment_only_file_gives_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    comments = tmp_path / "comments.yaml"
    comments.write_text("# nothing set\n")
    assert load_settings(empty) == Settings()
    assert load_settings(str(comments)) == Settings()


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as excinfo:
        load_settings(missing)
    assert _errors(excinfo) == [f"{missing}: cannot read config file: No such file or directory"]


def test_unreadable_text_is_a_config_error(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"processor:\n  max_points: 30 # caf\xe9\n")
    with pytest.raises(ConfigError) as excinfo:
        load_settings(latin1)
    [error] = _errors(excinfo)
    assert error.startswith(f"{latin1}: cannot read config file: 'utf-8' codec can't decode byte 0xe9")
    control = tmp_path / "control.yaml"
    control.write_text("processor:\n  max_points: 30\x07\n")
    with pytest.raises(ConfigError) as excinfo:
        load_settings(control)
    [error] = _errors(excinfo)
    assert error == "line 2, column 17: invalid YAML: unacceptable character #x0007: special characters are not allowed"


# --- the shipped default config -----------------------------------------------------------------


def test_shipped_config_equals_dataclass_defaults() -> None:
    assert load_settings(SHIPPED_CONFIG) == Settings()
    assert yaml.safe_load(SHIPPED_CONFIG.read_text()) == settings_to_mapping(Settings())


def test_packaged_default_config_is_identical_to_shipped_one() -> None:
    packaged = resources.files("otel_leakproc").joinpath("defaults/leakproc.yaml")
    assert packaged.read_bytes() == SHIPPED_CONFIG.read_bytes()


def _field_paths(cls: type, prefix: str = "") -> list[str]:
    paths: list[str] = []
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}.{f.name}" if prefix else f.name
        paths.append(path)
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            paths.extend(_field_paths(tp, path))
    return paths


def test_shipped_config_lists_every_field() -> None:
    # Whoever adds a config field must document it in config/leakproc.yaml (and copy it to defaults/).
    data = yaml.safe_load(SHIPPED_CONFIG.read_text())
    missing = []
    for path in _field_paths(Settings):
        node: Any = data
        for key in path.split("."):
            if not isinstance(node, dict) or key not in node:
                missing.append(path)
                break
            node = node[key]
    assert missing == [], f"config/leakproc.yaml does not list: {missing}"


def test_shipped_config_comments_every_key() -> None:
    uncommented = []
    previous = ""
    for number, line in enumerate(SHIPPED_CONFIG.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        is_key = not stripped.startswith("#") and ":" in stripped
        if is_key and not previous.startswith("#") and " #" not in stripped:
            uncommented.append(f"line {number}: {stripped}")
        previous = stripped
    assert uncommented == []


# --- invalid configurations ---------------------------------------------------------------------

# Case name in invalid_configs.yaml -> one substring per expected error (no other errors allowed).
INVALID_CASES: dict[str, list[str]] = {
    "unknown_key_with_suggestion": ["processor.windw_seconds: unknown key (did you mean 'window_seconds'?)"],
    "unknown_nested_key_with_suggestion": ["processor.heap.z_suspct: unknown key (did you mean 'z_suspect'?)"],
    "unknown_section_with_suggestion": ["decoder: unknown key (did you mean 'decode'?)"],
    "unknown_detector_section_with_suggestion": ["processor.goroutines: unknown key (did you mean 'goroutine'?)"],
    "unknown_key_without_suggestion": ["decode.zzz: unknown key (expected one of: max_decompressed_bytes, "],
    "unknown_nested_key_without_suggestion": [
        "processor.contention.zzz: unknown key (expected one of: warmup_seconds, min_points, z_suspect, z_resolve, "
        "confirm_seconds, min_delay_rate, high_delay_rate, recent_fraction, rise_ratio, keep_ratio)"
    ],
    "string_for_integer": ["processor.max_points: expected an integer, got 'abc'"],
    "string_for_number": ["processor.heap.z_suspect: expected a number, got 'high'"],
    "string_for_optional_integer": ["processor.heap.memory_limit_bytes: expected an integer, got '2GiB'"],
    "bool_is_not_an_integer": ["decode.max_samples: expected an integer, got True"],
    "bool_is_not_a_number": ["processor.goroutine.z_confirm: expected a number, got True"],
    "float_for_integer": ["decode.top_sites: expected an integer, got 1.5"],
    "float_for_nested_integer": ["processor.goroutine.min_increase: expected an integer, got 2.5"],
    "null_for_integer": ["decode.max_strings: expected an integer, got None"],
    "null_for_number": ["processor.window_seconds: expected a number, got None"],
    "negative_limit": ["decode.max_samples: must be > 0, got -1"],
    "zero_limit": ["decode.max_decompressed_bytes: must be > 0, got 0"],
    "top_sites_above_maximum": ["decode.top_sites: must be between 1 and 4096, got 5000"],
    "top_groups_below_minimum": ["decode.top_groups: must be between 1 and 4096, got 0"],
    "processor_max_points_too_small": ["processor.max_points: must be >= 8, got 7"],
    # Only the window: relations with a field that is already wrong (min_window_seconds) are not reported.
    "processor_window_too_small": ["processor.window_seconds: must be >= 60, got 30.0"],
    "min_points_above_max_points": [
        "processor.heap.min_points: must be <= max_points (20), got 30",
        "processor.contention.min_points: must be <= max_points (20), got 21",
    ],
    "min_window_above_window": ["processor.heap.min_window_seconds: must be <= window_seconds (3600.0), got 3601.0"],
    "top_growers_zero": ["processor.top_growers: must be >= 1, got 0"],
    "zero_max_gap": ["processor.max_gap_seconds: must be > 0, got 0.0"],
    "detector_min_points_too_small": [
        "processor.heap.min_points: must be >= 4, got 3",
        "processor.goroutine.min_points: must be >= 4, got 0",
        "processor.contention.min_points: must be >= 4, got 1",
    ],
    "negative_values": [
        "processor.bucket_seconds: must be >= 0, got -1.0",
        "processor.heap.warmup_seconds: must be >= 0, got -5.0",
        "processor.heap.min_points: must be >= 4, got -2",
        "processor.heap.min_growth_bytes_per_hour: must be >= 0, got -1.0",
        "processor.heap.memory_limit_bytes: must be > 0, got -1",
        "processor.goroutine.min_increase: must be >= 0, got -1",
        "processor.goroutine.confirm_wait_minutes: must be >= 0, got -3",
        "processor.contention.confirm_seconds: must be >= 0, got -10.0",
        "processor.contention.min_delay_rate: must be >= 0, got -0.5",
    ],
    "zero_memory_limit": ["processor.heap.memory_limit_bytes: must be > 0, got 0"],
    "plateau_fraction_above_one": ["processor.heap.plateau_fraction: must be between 0 and 1, got 1.5"],
    "plateau_fraction_one": ["processor.heap.plateau_fraction: must be between 0 and 1, got 1.0"],
    "plateau_fraction_zero": ["processor.heap.plateau_fraction: must be between 0 and 1, got 0.0"],
    "plateau_fraction_negative": ["processor.heap.plateau_fraction: must be between 0 and 1, got -0.2"],
    "heap_z_resolve_above_z_suspect": ["processor.heap.z_resolve: must be <= z_suspect (2.33), got 2.5"],
    "goroutine_z_resolve_above_z_suspect": ["processor.goroutine.z_resolve: must be <= z_suspect (2.0), got 2.1"],
    "contention_z_resolve_above_z_suspect": ["processor.contention.z_resolve: must be <= z_suspect (2.33), got 3.0"],
    "z_confirm_below_z_suspect": [
        "processor.heap.z_confirm: must be >= z_suspect (3.5), got 3.09",
        "processor.goroutine.z_confirm: must be >= z_suspect (2.33), got 2.0",
    ],
    "high_delay_rate_below_min_delay_rate": [
        "processor.contention.high_delay_rate: must be >= min_delay_rate (0.5), got 0.1"
    ],
    "section_not_a_mapping": ["decode: expected a mapping, got 5"],
    "section_is_a_list": ["processor: expected a mapping, got ['max_points', 30]"],
    "detector_section_not_a_mapping": ["processor.heap: expected a mapping, got 5"],
    "non_string_key": ["decode: keys must be strings, got 1"],
    "several_errors_reported_together": [
        "decoder: unknown key (did you mean 'decode'?)",
        "decode.top_sites: expected an integer, got 'many'",
        "processor.heap.z_suspct: unknown key (did you mean 'z_suspect'?)",
        "decode.max_samples: must be > 0, got -5",
        "decode.max_locations: must be > 0, got 0",
        "processor.max_points: must be >= 8, got 2",
        "processor.heap.plateau_fraction: must be between 0 and 1, got 2.0",
        "processor.goroutine.min_points: must be >= 4, got 2",
    ],
    "top_level_is_a_list": ["(top level): expected a mapping, got [1, 2]"],
    "grpc_limits_below_one": [
        "server.grpc.max_connections: must be at least 1, got 0",
        "server.grpc.max_message_bytes: must be at least 1, got -1",
    ],
}


@pytest.fixture(scope="module")
def invalid_configs() -> dict[str, Any]:
    cases: dict[str, Any] = yaml.safe_load((TESTDATA / "invalid_configs.yaml").read_text())
    return cases


def test_every_invalid_case_has_expectations(invalid_configs: dict[str, Any]) -> None:
    assert sorted(invalid_configs) == sorted(INVALID_CASES)


@pytest.mark.parametrize("case", sorted(INVALID_CASES))
def test_invalid_config(case: str, invalid_configs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as excinfo:
        settings_from_mapping(invalid_configs[case])
    errors = _errors(excinfo)
    for expected in INVALID_CASES[case]:
        assert any(expected in error for error in errors), f"{expected!r} not in {errors}"
    assert len(errors) == len(INVALID_CASES[case]), errors
    # The exception's message carries every error, for the CLI to print as is.
    for error in errors:
        assert error in str(excinfo.value)


# --- environment substitution -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        pytest.param("a: ${X}\n", {"X": "1"}, "a: 1\n", id="set"),
        pytest.param("a: ${X}", {"X": ""}, "a: ", id="set-empty"),
        pytest.param("a: ${X:-7}", {}, "a: 7", id="default-unset"),
        pytest.param("a: ${X:-7}", {"X": "3"}, "a: 3", id="default-set"),
        pytest.param("a: ${X:-7}", {"X": ""}, "a: 7", id="default-empty"),
        pytest.param("a: ${X:-}", {}, "a: ", id="empty-default"),
        pytest.param("a: ${X:-http://h:1/p}", {}, "a: http://h:1/p", id="default-with-colons"),
        pytest.param("a: ${X}${Y}", {"X": "1", "Y": "2"}, "a: 12", id="adjacent"),
        pytest.param("a: $$", {}, "a: $", id="escaped-dollar"),
        pytest.param("a: $${X}", {}, "a: ${X}", id="escaped-reference"),
        pytest.param("a: p$w0rd", {}, "a: p$w0rd", id="lone-dollar-kept"),
        pytest.param("  # see ${UNSET}\na: 1", {}, "  # see ${UNSET}\na: 1", id="comment-line-skipped"),
    ],
)
def test_substitute_env_forms(text: str, environ: dict[str, str], expected: str) -> None:
    assert substitute_env(text, environ) == expected


def test_unset_variable_names_variable_and_line() -> None:
    with pytest.raises(ConfigError) as excinfo:
        substitute_env("a: 1\nb: ${NOPE}\nc: ${ALSO_NOPE} ${SET}\n", {"SET": "x"})
    assert _errors(excinfo) == [
        ENV_UNSET.format(line=2, name="NOPE"),
        "line 3: environment variable 'ALSO_NOPE' is not set and has no default",
    ]


@pytest.mark.parametrize("reference", ["${1X}", "${X:=d}", "${X", "${}"])
def test_malformed_reference_is_an_error(reference: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        substitute_env(f"a: 1\nb: {reference}\n", {"X": "1"})
    assert _errors(excinfo) == [
        f"line 2: invalid environment reference {reference!r} (write ${{NAME}}, ${{NAME:-default}}, or $$ for a $)"
    ]


def test_load_settings_substitutes_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEAKPROC_TEST_MAX_POINTS", "30")
    monkeypatch.setenv("LEAKPROC_TEST_SITES", "12")
    monkeypatch.setenv("LEAKPROC_TEST_MEMORY_LIMIT", "1073741824")
    monkeypatch.delenv("LEAKPROC_TEST_UNSET", raising=False)
    monkeypatch.delenv("LEAKPROC_TEST_NEVER_SET", raising=False)
    settings = load_settings(TESTDATA / "env.yaml")
    # Substitution happens before parsing, so a substituted number is a number, not a string.
    assert settings == Settings(
        decode=DecodeConfig(max_samples=4242, top_sites=12),
        processor=ProcessorConfig(max_points=30, heap=HeapConfig(memory_limit_bytes=1073741824, z_suspect=2.5)),
    )


def test_load_settings_reports_every_unset_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEAKPROC_TEST_MISSING_SITES", raising=False)
    monkeypatch.delenv("LEAKPROC_TEST_MISSING_MAX_POINTS", raising=False)
    with pytest.raises(ConfigError) as excinfo:
        load_settings(TESTDATA / "env_missing.yaml")
    assert _errors(excinfo) == [
        "line 3: environment variable 'LEAKPROC_TEST_MISSING_SITES' is not set and has no default",
        "line 5: environment variable 'LEAKPROC_TEST_MISSING_MAX_POINTS' is not set and has no default",
    ]


# --- YAML parsing -------------------------------------------------------------------------------


def test_yaml_syntax_error_has_line_and_column() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(TESTDATA / "syntax_error.yaml")
    [error] = _errors(excinfo)
    assert error.startswith("line 4, column 2: invalid YAML: ")
    assert "expected <block end>" in error


def test_duplicate_key_is_an_error() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(TESTDATA / "duplicate_key.yaml")
    assert _errors(excinfo) == ["line 5, column 3: invalid YAML: duplicate key 'top_sites'"]


def test_merge_key_may_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text("processor:\n  <<: {max_points: 10, top_growers: 2}\n  max_points: 20\n")
    assert load_settings(path) == Settings(processor=ProcessorConfig(max_points=20, top_growers=2))


# --- effective config output --------------------------------------------------------------------


def test_settings_to_mapping_round_trips() -> None:
    data = settings_to_mapping(EXPECTED_FULL)
    processor = data["processor"]
    assert isinstance(processor, dict)
    assert processor["max_points"] == 120
    assert processor["heap"]["memory_limit_bytes"] == 536870912
    assert processor["contention"] == dataclasses.asdict(EXPECTED_FULL.processor.contention)
    assert settings_from_mapping(yaml.safe_load(yaml.safe_dump(data))) == EXPECTED_FULL


# --- DecodeConfig -------------------------------------------------------------------------------


def test_decode_config_mirrors_decode_limits_and_value_caps() -> None:
    mirrored = [f.name for f in (*dataclasses.fields(DecodeLimits), *dataclasses.fields(ValueCaps))]
    assert [f.name for f in dataclasses.fields(DecodeConfig)] == mirrored
    assert DecodeConfig().to_limits() == DecodeLimits()
    assert DecodeConfig().to_caps() == ValueCaps()
    decode = EXPECTED_FULL.decode
    both = {**dataclasses.asdict(decode.to_limits()), **dataclasses.asdict(decode.to_caps())}
    assert both == dataclasses.asdict(decode)


@pytest.mark.parametrize(("value", "ok"), [(15, False), (16, True), (65536, True), (65537, False)])
def test_decode_string_cap_bounds(value: int, ok: bool) -> None:
    errors = DecodeConfig(max_name_chars=value, max_label_chars=value).validate()
    expected = [f"{key}: must be between 16 and 65536, got {value}" for key in ("max_name_chars", "max_label_chars")]
    assert errors == ([] if ok else expected)


@pytest.mark.parametrize(("value", "ok"), [(0, False), (1, True), (4096, True), (4097, False)])
def test_decode_top_k_bounds(value: int, ok: bool) -> None:
    errors = DecodeConfig(top_sites=value, top_groups=value).validate()
    assert errors == (
        [] if ok else [f"{key}: must be between 1 and 4096, got {value}" for key in ("top_sites", "top_groups")]
    )


# --- ProcessorConfig (detector settings) -------------------------------------------------------


def test_detector_defaults_are_valid() -> None:
    assert ProcessorConfig().validate() == []
    assert HeapConfig().validate() == []
    assert GoroutineConfig().validate() == []
    assert ContentionConfig().validate() == []
    assert FixConfig().validate() == []
    assert FixConfig(fixed_ratio=1.0, min_compare_seconds=2000.0).validate() == [
        "fixed_ratio: must be >= 0 and < 1, got 1.0",
        "min_compare_seconds: must be <= compare_seconds (1200.0), got 2000.0",
    ]


def _numeric_processor_paths() -> list[str]:
    hints_by_path = {}
    for path in _field_paths(ProcessorConfig):
        node: Any = ProcessorConfig()
        for key in path.split("."):
            node = getattr(node, key)
        if not dataclasses.is_dataclass(node):
            hints_by_path[path] = node
    return sorted(path for path, value in hints_by_path.items() if value is None or isinstance(value, int | float))


def _nested(path: str, value: object) -> dict[str, object]:
    data: dict[str, object] = {}
    node = data
    keys = path.split(".")
    for key in keys[:-1]:
        child: dict[str, object] = {}
        node[key] = child
        node = child
    node[keys[-1]] = value
    return data


@pytest.mark.parametrize("path", _numeric_processor_paths())
def test_every_negative_detector_setting_is_rejected_once(path: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        settings_from_mapping({"processor": _nested(path, -1)})
    errors = _errors(excinfo)
    # Exactly one message, about the field itself, even where the field has its own stricter bound or takes
    # part in a relation with another field (z_resolve <= z_suspect, min_points <= max_points, ...).
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"processor.{path}: must be "), errors
    assert errors[0].endswith(("got -1", "got -1.0")), errors


def test_numeric_processor_paths_cover_every_section() -> None:
    paths = _numeric_processor_paths()
    assert len(paths) == 11 + 17 + 12 + 10 + 4
    assert "heap.memory_limit_bytes" in paths
    assert "contention.high_delay_rate" in paths


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(ProcessorConfig(max_points=8, heap=HeapConfig(min_points=8)), id="min-points-equal-max-points"),
        pytest.param(
            ProcessorConfig(window_seconds=600.0, heap=HeapConfig(min_window_seconds=600.0)), id="min-window-equal"
        ),
        pytest.param(ProcessorConfig(window_seconds=60.0, heap=HeapConfig(min_window_seconds=0.0)), id="min-window"),
        pytest.param(ProcessorConfig(heap=HeapConfig(z_suspect=2.0, z_resolve=2.0, z_confirm=2.0)), id="z-equal"),
        pytest.param(ProcessorConfig(goroutine=GoroutineConfig(z_suspect=0.0, z_resolve=0.0, z_confirm=0.0)), id="z0"),
        pytest.param(
            ProcessorConfig(contention=ContentionConfig(min_delay_rate=0.2, high_delay_rate=0.2)), id="rates-equal"
        ),
        pytest.param(ProcessorConfig(heap=HeapConfig(plateau_fraction=0.99, memory_limit_bytes=1)), id="edges"),
        pytest.param(ProcessorConfig(bucket_seconds=0.0, top_growers=1, max_gap_seconds=0.5), id="minimums"),
    ],
)
def test_detector_boundary_values_are_accepted(config: ProcessorConfig) -> None:
    assert config.validate() == []
    for section in (config.heap, config.goroutine, config.contention):
        assert section.validate() == []


def test_detector_section_messages_start_with_the_field_name() -> None:
    # The loader prefixes the section path only to messages that start with a field name.
    assert HeapConfig(z_resolve=3.0).validate() == ["z_resolve: must be <= z_suspect (2.33), got 3.0"]
    assert GoroutineConfig(z_confirm=1.0, z_resolve=0.5).validate() == [
        "z_confirm: must be >= z_suspect (2.33), got 1.0"
    ]
    assert ContentionConfig(min_points=2, high_delay_rate=0.0).validate() == [
        "min_points: must be >= 4, got 2",
        "high_delay_rate: must be >= min_delay_rate (0.001), got 0.0",
    ]
    assert ProcessorConfig(max_points=10, goroutine=GoroutineConfig(min_points=11)).validate() == [
        "goroutine.min_points: must be <= max_points (10), got 11"
    ]


# --- the generic builder, on dataclasses shaped like future config sections ---------------------


class Color(enum.StrEnum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass(frozen=True, slots=True)
class Leaf:
    name: str = "leaf"
    weight: float = 1.0

    def validate(self) -> list[str]:
        return [] if self.weight >= 0 else [f"weight: must be >= 0, got {self.weight}"]


@dataclass(frozen=True, slots=True)
class Sample:
    color: Color = Color.RED
    level: Level = Level.LOW
    mode: Literal["fast", "slow"] = "fast"
    enabled: bool = False
    limit: int | None = None
    size: int | str = 0
    leaf: Leaf = field(default_factory=Leaf)
    maybe_leaf: Leaf | None = None
    leaves: list[Leaf] = field(default_factory=list)
    tags: tuple[str, ...] = ()
    pair: tuple[int, str] = (0, "")
    weights: dict[str, float] = field(default_factory=dict)
    by_color: dict[Color, int] = field(default_factory=dict)
    extra: Any = None

    def validate(self) -> list[str]:
        # A whole-node message (no field name first): the loader puts `<path>: ` in front.
        return ["a leaf is required when limit is set"] if self.limit and self.maybe_leaf is None else []


@dataclass(frozen=True, slots=True)
class Outer:
    sample: Sample = field(default_factory=Sample)


@dataclass(frozen=True, slots=True)
class Named:
    name: str
    size: int = 1

    def __post_init__(self) -> None:
        if self.name == "forbidden":
            raise ValueError("name 'forbidden' is reserved")


@dataclass(frozen=True, slots=True)
class WithSet:
    items: set[int] = field(default_factory=set)


def test_builder_converts_every_supported_type() -> None:
    data = {
        "color": "green",
        "level": 2,
        "mode": "slow",
        "enabled": True,
        "limit": 5,
        "size": "big",
        "leaf": {"name": "x", "weight": 2},
        "maybe_leaf": {"weight": "1e3"},
        "leaves": [{"name": "a"}, {}],
        "tags": ["a", "b"],
        "pair": [1, "one"],
        "weights": {"a": 0.5, "b": 1},
        "by_color": {"red": 1},
        "extra": {"anything": [1]},
    }
    built = build_config(Sample, data)
    assert built == Sample(
        color=Color.GREEN,
        level=Level.HIGH,
        mode="slow",
        enabled=True,
        limit=5,
        size="big",
        leaf=Leaf(name="x", weight=2.0),
        maybe_leaf=Leaf(weight=1000.0),
        leaves=[Leaf(name="a"), Leaf()],
        tags=("a", "b"),
        pair=(1, "one"),
        weights={"a": 0.5, "b": 1.0},
        by_color={Color.RED: 1},
        extra={"anything": [1]},
    )
    assert type(built.color) is Color
    assert type(built.leaf.weight) is float
    assert type(built.tags) is tuple
    # Plain output turns enums back into their values and tuples into lists.
    plain = config_to_mapping(built)
    assert plain["color"] == "green"
    assert plain["by_color"] == {"red": 1}
    assert plain["tags"] == ["a", "b"]
    assert build_config(Sample, plain) == built


def test_builder_defaults_and_nulls() -> None:
    assert build_config(Sample, {}) == Sample()
    assert build_config(Sample, None) == Sample()
    # A null section means "all defaults"; a null optional section means None.
    assert build_config(Sample, {"leaf": None, "maybe_leaf": None, "limit": None}) == Sample()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({"color": "blue"}, ["color: expected one of 'red', 'green', got 'blue'"], id="enum"),
        pytest.param({"color": 1}, ["color: expected one of 'red', 'green', got 1"], id="enum-type"),
        pytest.param({"level": True}, ["level: expected one of 1, 2, got True"], id="int-enum-bool"),
        pytest.param({"mode": "medium"}, ["mode: expected one of 'fast', 'slow', got 'medium'"], id="literal"),
        pytest.param({"enabled": 1}, ["enabled: expected a boolean, got 1"], id="bool"),
        pytest.param({"limit": "x"}, ["limit: expected an integer, got 'x'"], id="optional"),
        pytest.param({"size": 1.5}, ["size: expected an integer or a string, got 1.5"], id="union"),
        pytest.param({"tags": "a"}, ["tags: expected a list, got 'a'"], id="tuple"),
        pytest.param(
            {"tags": ["a", 1, 2]},
            ["tags[1]: expected a string, got 1", "tags[2]: expected a string, got 2"],
            id="tuple-items",
        ),
        pytest.param({"pair": [1]}, ["pair: expected a list of 2 items, got [1]"], id="fixed-tuple"),
        pytest.param({"weights": [1]}, ["weights: expected a mapping, got [1]"], id="dict"),
        pytest.param({"weights": {"a": "heavy"}}, ["weights.a: expected a number, got 'heavy'"], id="dict-value"),
        pytest.param({"weights": {"a": float("nan")}}, ["weights.a: expected a number, got nan"], id="nan"),
        pytest.param(
            {"by_color": {"blue": 1}}, ["by_color.blue: expected one of 'red', 'green', got 'blue'"], id="dict-key"
        ),
        pytest.param({"leaf": {"nme": "x"}}, ["leaf.nme: unknown key (did you mean 'name'?)"], id="nested-unknown"),
        pytest.param({"leaf": {"weight": -1}}, ["leaf.weight: must be >= 0, got -1.0"], id="nested-validate"),
        pytest.param(
            {"maybe_leaf": {"weight": -2}}, ["maybe_leaf.weight: must be >= 0, got -2.0"], id="optional-nested-validate"
        ),
        pytest.param(
            {"leaves": [{"weight": -1}, {"name": 3}]},
            # Type errors come first (building), then validate() messages.
            ["leaves[1].name: expected a string, got 3", "leaves[0].weight: must be >= 0, got -1.0"],
            id="list-of-dataclasses",
        ),
        pytest.param({"limit": 3}, ["a leaf is required when limit is set"], id="root-node-message"),
    ],
)
def test_builder_errors(data: dict[str, object], expected: list[str]) -> None:
    with pytest.raises(ConfigError) as excinfo:
        build_config(Sample, data)
    assert _errors(excinfo) == expected


def test_builder_prefixes_node_paths() -> None:
    with pytest.raises(ConfigError) as excinfo:
        build_config(Outer, {"sample": {"limit": 3, "leaf": {"weight": -1}, "color": "blue"}})
    assert _errors(excinfo) == [
        "sample.color: expected one of 'red', 'green', got 'blue'",
        "sample: a leaf is required when limit is set",
        "sample.leaf.weight: must be >= 0, got -1.0",
    ]


def test_builder_required_fields_and_post_init() -> None:
    assert build_config(Named, {"name": "n"}) == Named(name="n")
    with pytest.raises(ConfigError) as excinfo:
        build_config(Named, {"size": 2})
    assert _errors(excinfo) == ["name: required key is missing"]
    with pytest.raises(ConfigError) as excinfo:
        build_config(Named, {"name": 1})
    assert _errors(excinfo) == ["name: expected a string, got 1"]
    with pytest.raises(ConfigError) as excinfo:
        build_config(Named, {"name": "forbidden"})
    assert _errors(excinfo) == ["(top level): name 'forbidden' is reserved"]


def test_config_to_mapping_needs_a_dataclass_instance() -> None:
    with pytest.raises(TypeError, match="needs a dataclass instance"):
        config_to_mapping(Settings)


def test_builder_rejects_unsupported_types() -> None:
    # A programming error in a config dataclass, not a config error.
    with pytest.raises(TypeError, match="not supported"):
        build_config(WithSet, {"items": [1]})
    with pytest.raises(TypeError, match="needs a dataclass"):
        build_config(dict, {})
