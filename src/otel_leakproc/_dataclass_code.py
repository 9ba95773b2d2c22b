"""The methods `@dataclass` writes for this package's classes, compiled once and kept beside the bytecode.

`dataclasses` makes every class's `__init__`, `__repr__`, `__eq__`, `__hash__`, frozen `__setattr__` and
`__delattr__` by writing their source text and compiling it with `exec`, on every import: for the
package's dataclasses that is most of what importing `model` and the config modules costs (about 150
compilations, 10-15 ms, for `analyze` on a pair; more for `serve`). That text depends only on the class's
definition, so its code object can be kept the way Python keeps a module's bytecode.

`install()` (called by the CLI before it imports the rest of the package, so a program that imports the
package as a library keeps `dataclasses` as it is) puts a stand-in for `exec` into the `dataclasses`
module's namespace, where the function that compiles the generated text looks the name up (`_create_fn` in
Python 3.11 and 3.12; a version that calls it otherwise simply does not use the stand-in). For code whose
globals are one of this package's modules, it runs the code object compiled from that exact text, read from
a file next to the module's `.pyc` (`model.cpython-311.dataclasses`, a marshalled dict from text to code);
the text is the key, so a changed class is simply a miss, compiled as before. Code for any other module goes
to the real `exec` unchanged. When a module missed, its file is written again (atomically, once, when the
process exits) with the texts that module used in this process, unless bytecode writing is off
(`sys.dont_write_bytecode`, `PYTHONDONTWRITEBYTECODE`). A file that cannot be read, is of another Python or
is damaged counts as empty; one that cannot be written (a read-only install) is not tried again in that
process, which compiles as it would without the cache. Compiling is done exactly as `exec` does for
`dataclasses` (filename `<string>`, no inherited `__future__` flags), so a cached method is the one `exec`
would have made.
"""

from __future__ import annotations

import _thread
import atexit
import builtins
import contextlib
import marshal
import os
import sys
from importlib.util import cache_from_source
from types import CodeType
from typing import Any

PACKAGE_PREFIX = __name__.rpartition(".")[0] + "."
SUFFIX = ".dataclasses"

_real_exec = builtins.exec


class _ModuleCode:
    """One module's cached code: what the file held, and what this process used (written after a miss)."""

    __slots__ = ("missed", "path", "stored", "used")

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.stored: dict[str, CodeType] = _read(path) if path else {}
        self.used: dict[str, CodeType] = {}
        self.missed = False


_modules: dict[str, _ModuleCode] = {}
# Generated methods of this package run from a cached code object (hits) or compiled (misses), and cache
# files written, this process.
counts = {"hits": 0, "misses": 0, "writes": 0}


def _cache_path(module_file: str | None) -> str | None:
    if not module_file or not module_file.endswith(".py"):
        return None
    try:
        pyc = cache_from_source(module_file)
    except (NotImplementedError, ValueError):  # no cache tag (cache_tag None) or an odd path
        return None
    return pyc.removesuffix(".pyc") + SUFFIX


def _read(path: str) -> dict[str, CodeType]:
    try:
        with open(path, "rb") as handle:
            data = handle.read()  # whole: `marshal.load` on a file reads it piece by piece, 20 times slower
        loaded = marshal.loads(data)
    except (OSError, EOFError, ValueError, TypeError):
        return {}
    if not isinstance(loaded, dict):
        return {}
    return {k: v for k, v in loaded.items() if isinstance(k, str) and isinstance(v, CodeType)}


def _write(entry: _ModuleCode) -> None:
    if entry.path is None or sys.dont_write_bytecode:
        return
    temp = f"{entry.path}.{os.getpid()}.{_thread.get_ident()}.tmp"  # one writer per file name
    try:
        os.makedirs(os.path.dirname(entry.path), exist_ok=True)
        with open(temp, "wb") as handle:
            marshal.dump(entry.used, handle)
        os.replace(temp, entry.path)
        counts["writes"] += 1
    except OSError:  # a read-only install: compiled as before, and not tried again for this module
        entry.path = None
        with contextlib.suppress(OSError):
            os.unlink(temp)


def _exec(source: Any, globals: Any = None, locals: Any = None, /, **kwargs: Any) -> None:
    """`exec` for `dataclasses`: this package's generated text runs from its cached code object."""
    name = globals.get("__name__") if isinstance(globals, dict) else None
    if kwargs or not isinstance(source, str) or not isinstance(name, str) or not name.startswith(PACKAGE_PREFIX):
        return _real_exec(source, globals, locals, **kwargs)
    entry = _modules.get(name)
    if entry is None:
        entry = _modules[name] = _ModuleCode(_cache_path(globals.get("__file__")))
    code = entry.stored.get(source)
    if code is None:
        code = compile(source, "<string>", "exec", dont_inherit=True)
        if not any(module.missed for module in _modules.values()):
            atexit.register(_write_missed)
        entry.missed = True
        counts["misses"] += 1
    else:
        counts["hits"] += 1
    entry.used[source] = code
    return _real_exec(code, globals, locals)


def _write_missed() -> None:
    """At exit: each module that missed gets its file written once, with every text it used."""
    for entry in _modules.values():
        if entry.missed:
            _write(entry)
            entry.missed = False


def install() -> None:
    """Route `dataclasses`' compilations through the cache (idempotent)."""
    import dataclasses  # noqa: PLC0415

    dataclasses.exec = _exec  # type: ignore[attr-defined]
