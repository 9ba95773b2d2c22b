"""Tests for `_dataclass_code`: the package's dataclass methods, compiled once and kept beside the bytecode.

Each case runs a real interpreter (the cache lives across processes) with its bytecode cache under a
temporary `PYTHONPYCACHEPREFIX`, imports the package's models and config sections, and prints every
method `@dataclass` generated for them; the methods must be the same, instruction for instruction, with the
cache cold, warm, damaged or off, and as `dataclasses` makes them without it.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from otel_leakproc import _dataclass_code

PROBE = """
import dataclasses, json, sys, types
from otel_leakproc import _dataclass_code
if sys.argv[1] != "plain":
    _dataclass_code.install()  # as the CLI does first
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
counts = dict(_dataclass_code.counts)
del counts["writes"]  # (done at exit, after this line)
print(json.dumps({"methods": out, "behaviour": behaviour, "counts": counts}))
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


WRITES = """
import atexit, json, sys
from otel_leakproc import _dataclass_code
atexit.register(lambda: print(json.dumps(_dataclass_code.counts)))  # first in, last out: after the writer
_dataclass_code.install()
from otel_leakproc import model
from otel_leakproc.processor import config
"""


def test_each_module_that_missed_is_written_once_at_exit(tmp_path: Path) -> None:
    """Not once per generated method (the file grew by one text per write, over 60 writes for `model`)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path)

    def run() -> dict[str, int]:
        done = subprocess.run([sys.executable, "-c", WRITES], capture_output=True, text=True, env=env, check=True)
        counts: dict[str, int] = json.loads(done.stdout)
        return counts

    cold, warm = run(), run()
    assert cold["misses"] > 50
    assert cold["writes"] == 2  # model and config
    assert warm == {"hits": cold["misses"], "misses": 0, "writes": 0}


LIBRARY = """
import dataclasses, sys
import otel_leakproc.model, otel_leakproc.client
untouched = "exec" not in vars(dataclasses)
import otel_leakproc.cli
print(untouched, vars(dataclasses).get("exec") is sys.modules["otel_leakproc._dataclass_code"]._exec)
"""


def test_the_package_imported_as_a_library_leaves_dataclasses_alone_and_the_cli_installs_the_cache() -> None:
    done = subprocess.run([sys.executable, "-c", LIBRARY], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["True", "True"]


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


def test_every_dataclass_of_the_package_has_a_docstring() -> None:
    """`@dataclass` writes a missing docstring from `inspect.signature(cls)`: about 0.5 ms per class at import
    (one class without a docstring was 2% of the dataclass work of an `analyze` run on a pair)."""
    package = Path(_dataclass_code.__file__).parent
    missing = []
    for source in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if not isinstance(node, ast.ClassDef) or ast.get_docstring(node) is not None:
                continue
            if any("dataclass" in ast.unparse(d) for d in node.decorator_list):
                missing.append(f"{source.relative_to(package)}: {node.name}")
    assert missing == []
