"""Tests for `_dataclass_code`: the package's dataclass methods, compiled once and kept beside the bytecode.

Each case runs a real interpreter (the cache lives across processes) with its bytecode cache under a
temporary `PYTHONPYCACHEPREFIX`, imports the package's models and config sections, and prints every
method `@dataclass` generated for them; the methods must be the same, instruction for instruction, with the
cache cold, warm, damaged or off, and as `dataclasses` makes them without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from otel_leakproc import _dataclass_code

PROBE = """
import dataclasses, json, sys, types
import otel_leakproc
from otel_leakproc import _dataclass_code
if sys.argv[1] == "plain":
    del dataclasses.exec  # the builtin again, as in any process without the package
from otel_leakproc import model
from otel_leakproc.processor import config

def code(c):
    consts = [code(k) if isinstance(k, types.CodeType) else repr(k) for k in c.co_consts]
    return [c.co_code.hex(), consts, c.co_names, c.co_varnames, c.co_freevars, c.co_flags, c.co_filename]

out = {}
for module in (model, config):
    for name, cls in sorted(vars(module).items()):
        if dataclasses.is_dataclass(cls) and cls.__module__ == module.__name__:
            for method, f in sorted(vars(cls).items()):
                if isinstance(f, types.FunctionType) and f.__code__.co_filename == "<string>":
                    out[f"{name}.{method}"] = [code(f.__code__), repr(f.__annotations__), repr(f.__defaults__),
                                               repr(f.__kwdefaults__), f.__qualname__]
key, same, later = (model.SeriesKey(t, "s", "i", model.ProfileKind.HEAP) for t in ("t", "t", "u"))
behaviour = [repr(key), key == same, hash(key) == hash(same), key < later]
try:
    key.service = "x"
except dataclasses.FrozenInstanceError as exc:
    behaviour.append(type(exc).__name__)
print(json.dumps({"methods": out, "behaviour": behaviour, "counts": _dataclass_code.counts}))
"""


def probe(prefix: Path, mode: str = "cached", *, write: bool = True) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(prefix)
    if not write:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def cache_files(prefix: Path) -> dict[str, Path]:
    return {path.name: path for path in prefix.rglob(f"*{_dataclass_code.SUFFIX}")}


def test_cached_methods_are_the_ones_dataclasses_compiles(tmp_path: Path) -> None:
    plain = probe(tmp_path / "plain", "plain")
    cold = probe(tmp_path / "cache")
    warm = probe(tmp_path / "cache")
    assert plain["counts"] == {"hits": 0, "misses": 0}  # without the stand-in nothing goes through it
    assert cold["counts"]["hits"] == 0
    # Every generated method, once (and those a class defines itself: `dataclasses` writes them all, then
    # keeps the class's own).
    assert cold["counts"]["misses"] >= len(plain["methods"]) > 50
    assert warm["counts"] == {"hits": cold["counts"]["misses"], "misses": 0}
    assert cold["methods"] == plain["methods"]
    assert warm["methods"] == plain["methods"]
    assert (
        warm["behaviour"]
        == plain["behaviour"]
        == [
            "SeriesKey(tenant='t', service='s', instance='i', kind=<ProfileKind.HEAP: 'heap'>)",
            True,
            True,
            True,
            "FrozenInstanceError",
        ]
    )
    tag = sys.implementation.cache_tag
    assert set(cache_files(tmp_path / "cache")) == {f"model.{tag}.dataclasses", f"config.{tag}.dataclasses"}
    assert cache_files(tmp_path / "plain") == {}


def test_a_damaged_cache_file_is_compiled_again_and_replaced(tmp_path: Path) -> None:
    cold = probe(tmp_path)
    files = cache_files(tmp_path)
    model = files[f"model.{sys.implementation.cache_tag}.dataclasses"]
    model.write_bytes(b"not marshal data")
    files[f"config.{sys.implementation.cache_tag}.dataclasses"].write_bytes(b"")
    damaged = probe(tmp_path)
    assert damaged["counts"] == {"hits": 0, "misses": cold["counts"]["misses"]}
    assert damaged["methods"] == cold["methods"]
    assert probe(tmp_path)["counts"]["misses"] == 0  # rewritten whole
    assert [p.name for p in model.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_nothing_is_written_when_bytecode_writing_is_off(tmp_path: Path) -> None:
    first = probe(tmp_path, write=False)
    again = probe(tmp_path, write=False)
    assert cache_files(tmp_path) == {}
    assert first["counts"] == again["counts"] == {"hits": 0, "misses": first["counts"]["misses"]}


def test_code_of_other_modules_goes_to_the_builtin_exec() -> None:
    before = dict(_dataclass_code.counts)
    namespace: dict[str, Any] = {}
    _dataclass_code._exec("def f():\n return 41 + 1\n", {"__name__": "someone_else"}, namespace)
    assert namespace["f"]() == 42
    assert _dataclass_code.counts == before
    assert "someone_else" not in _dataclass_code._modules
