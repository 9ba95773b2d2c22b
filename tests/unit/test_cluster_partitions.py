"""The partition map and the Redis connection settings of `state.backend: redis` (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_leakproc.cluster.connection import password, redacted, replica_id
from otel_leakproc.cluster.node import _rendezvous
from otel_leakproc.cluster.partitions import PartitionKeys, partition_of
from otel_leakproc.config import settings_from_mapping
from otel_leakproc.errors import ConfigError
from otel_leakproc.processor.config import RedisConfig


def test_the_partition_is_a_stable_hash_of_tenant_service_and_instance() -> None:
    # Fixed values: a change of hash would move every series of a running cluster.
    assert partition_of("", "checkout", "pod-1", 64) == partition_of("", "checkout", "pod-1", 64)
    assert [partition_of("", "checkout", f"pod-{i}", 64) for i in range(4)] == [0, 22, 44, 58]
    assert partition_of("acme", "checkout", "pod-1", 64) != partition_of("", "checkout", "pod-1", 64)


def test_every_key_of_a_partition_shares_one_hash_tag() -> None:
    keys = PartitionKeys("leakproc", 7)
    names = [keys.stream, keys.checkpoints, keys.lease, keys.epoch, keys.reports, keys.sent]
    assert all(name.startswith("leakproc:{p7}:") for name in names)
    assert len(set(names)) == len(names)


def test_rendezvous_gives_each_replica_about_p_over_n_and_moves_about_1_over_n() -> None:
    def owners(members: list[str]) -> list[str]:
        return [max(members, key=lambda m: _rendezvous(n, m)) for n in range(240)]

    three = owners(["a", "b", "c"])
    assert all(60 <= three.count(m) <= 100 for m in "abc"), [three.count(m) for m in "abc"]
    four = owners(["a", "b", "c", "d"])
    moved = sum(x != y for x, y in zip(three, four, strict=True))
    assert moved == four.count("d")  # only the partitions the new replica wins move
    assert 40 <= moved <= 80


def test_the_password_is_masked_in_the_logged_url() -> None:
    assert redacted("redis://:s3cret@redis:6379/0") == "redis://:***@redis:6379/0"
    assert redacted("rediss://user:s3cret@redis/1") == "rediss://user:***@redis/1"
    assert redacted("redis://redis:6379/0") == "redis://redis:6379/0"


def test_the_password_comes_from_the_environment_then_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    monkeypatch.setenv("LP_REDIS_PASSWORD", "from-env")
    assert password(RedisConfig(password_env="LP_REDIS_PASSWORD", password_file=str(secret))) == "from-env"
    monkeypatch.delenv("LP_REDIS_PASSWORD")
    assert password(RedisConfig(password_env="LP_REDIS_PASSWORD", password_file=str(secret))) == "from-file"
    with pytest.raises(ConfigError, match="LP_REDIS_PASSWORD is not set"):
        password(RedisConfig(password_env="LP_REDIS_PASSWORD"))
    with pytest.raises(ConfigError, match="password_file: cannot read"):
        password(RedisConfig(password_file=str(tmp_path / "missing")))
    assert password(RedisConfig()) is None


def test_the_replica_id_defaults_to_the_pod_name_and_a_random_suffix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTNAME", "leakproc-7f9c")
    first, second = replica_id(RedisConfig()), replica_id(RedisConfig())
    assert first.startswith("leakproc-7f9c-")
    assert first != second
    assert replica_id(RedisConfig(replica_id="fixed")) == "fixed"


def test_bad_redis_settings_are_named() -> None:
    with pytest.raises(ConfigError) as excinfo:
        settings_from_mapping({"state": {"backend": "etcd", "redis": {"url": "http://redis:6379", "partitions": 0}}})
    text = "\n".join(excinfo.value.errors)
    assert "state.backend" in text
    assert "state.redis.url: must start with redis:// or rediss://" in text
    assert "state.redis.partitions" in text
    assert settings_from_mapping({}).state.backend == "file"  # `make run` needs no Redis
