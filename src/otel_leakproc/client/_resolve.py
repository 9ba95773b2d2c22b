"""Names the function that encloses a (file, line): tracemalloc frames carry only those two.

First choice, the interpreter's own answer: the code objects of the loaded module that owns the file
(its functions, methods, properties, the functions they wrap, and every code object nested in those)
and their line tables (`co_lines`); a line maps to the code object that has instructions on it, named by
its `co_qualname` (`OrderBook.add`, `handler.<locals>.inner`). Lines of no function are module or class
bodies: `<module>`. This needs no parsing, and only the one top-level function that can hold a line has
its line table read: everything the client allocates while tracemalloc traces costs several times more
than usual, and a service may have thousands of modules with import-time allocations.

Files that belong to no loaded module (run with `exec`, or a module object that is gone) are parsed once
with `ast` (source through `linecache`) into line ranges of their functions, methods and class bodies.
Either way comprehensions and lambdas are charged to the function they sit in, as a reader of the source
would, and a `def` line belongs to the scope that executes it (where the function object is allocated).
Files with no readable source (frozen or compiled-only modules) are named `<file basename>:<line>`.
"""

from __future__ import annotations

import ast
import bisect
import linecache
import os
import sys
import types
from dataclasses import dataclass, field

# Files parsed at most once; past this many distinct files, the least recently added is forgotten.
MAX_FILES = 4096
# Sources larger than this are not parsed (generated code); their lines get the fallback name.
MAX_SOURCE_BYTES = 4 * 1024 * 1024


@dataclass(slots=True)
class _FileIndex:
    """Line ranges of one file's scopes, sorted by start line (outer before inner on ties)."""

    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    parsed: bool = False


def _first_line(statement: ast.stmt) -> int:
    decorators: list[ast.expr] = getattr(statement, "decorator_list", None) or []
    return min([statement.lineno, *(int(d.lineno) for d in decorators)])


def _scopes(tree: ast.AST) -> list[tuple[int, int, str]]:
    found: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                qualname = prefix + child.name
                # From the first body line: decorators, defaults and the def line itself run in the
                # enclosing scope (that is where a closure or a class object is allocated).
                start = _first_line(child.body[0]) if child.body else child.lineno
                end = getattr(child, "end_lineno", None) or child.lineno
                found.append((start, end, qualname))
                inner = qualname + "." if isinstance(child, ast.ClassDef) else qualname + ".<locals>."
                visit(child, inner)
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def _roots_of(module: types.ModuleType, filename: str) -> list[types.CodeType]:
    """The outermost code objects of `filename` reachable from the module's namespace, by first line.

    Functions, methods (through classes, static/class methods and properties) and the functions they wrap
    (`__wrapped__`); a code object nested in another one found (a closure a module-level call returned)
    is not a root. Roots never overlap, so at most one can hold a given line.
    """
    found: dict[int, types.CodeType] = {}
    seen: set[int] = set()
    pending: list[object] = list(vars(module).values())
    while pending:
        obj = pending.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, types.FunctionType):
            code = obj.__code__
            if code.co_filename == filename:
                found[id(code)] = code
            wrapped = getattr(obj, "__wrapped__", None)
            if wrapped is not None:
                pending.append(wrapped)
        elif isinstance(obj, staticmethod | classmethod):
            pending.append(obj.__func__)
        elif isinstance(obj, property):
            pending.extend(f for f in (obj.fget, obj.fset, obj.fdel) if f is not None)
        elif isinstance(obj, type) and getattr(obj, "__module__", None) == module.__name__:
            pending.extend(vars(obj).values())
    nested: set[int] = set()
    stack = list(found.values())
    while stack:
        for const in stack.pop().co_consts:
            if isinstance(const, types.CodeType) and id(const) not in nested:
                nested.add(id(const))
                stack.append(const)
    return sorted((c for i, c in found.items() if i not in nested), key=lambda c: c.co_firstlineno)


def _tree(root: types.CodeType) -> list[types.CodeType]:
    codes = [root]
    for code in codes:
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return codes


def _line_table(codes: list[types.CodeType]) -> dict[int, str]:
    """Line -> name for one function and everything nested in it."""
    table: dict[int, str] = {}
    first_lines: dict[int, str] = {}
    for code in codes:
        name = normalise_qualname(getattr(code, "co_qualname", code.co_name))
        for _start, _end, line in code.co_lines():
            if line is None:
                continue
            if line == code.co_firstlineno:  # the def line: the enclosing scope's, unless nobody else has it
                first_lines.setdefault(line, name)
            else:
                table.setdefault(line, name)
    for line, name in first_lines.items():
        table.setdefault(line, name)
    return table


@dataclass(slots=True)
class _ModuleCodes:
    """The roots of one loaded file; line tables are built per root on first use."""

    starts: list[int]
    roots: list[types.CodeType]
    tables: dict[int, dict[int, str]] = field(default_factory=dict)

    def name(self, line: int) -> str:
        i = bisect.bisect_right(self.starts, line) - 1
        if i < 0:
            return "<module>"
        table = self.tables.get(i)
        if table is None:
            table = self.tables[i] = _line_table(_tree(self.roots[i]))
        return table.get(line, "<module>")


class FunctionResolver:
    """Maps (file, line) to a function name; caches per file and per (file, line)."""

    def __init__(self) -> None:
        self._files: dict[str, _FileIndex] = {}
        self._lines: dict[tuple[str, int], str] = {}
        self._tables: dict[str, _ModuleCodes | None] = {}
        self._modules: dict[str, types.ModuleType] = {}
        self._modules_seen = -1

    def _module_for(self, filename: str) -> types.ModuleType | None:
        module = self._modules.get(filename)
        if module is None and len(sys.modules) != self._modules_seen:
            self._modules_seen = len(sys.modules)
            self._modules = {}
            for loaded in list(sys.modules.values()):
                path = getattr(loaded, "__file__", None)
                if isinstance(path, str) and isinstance(loaded, types.ModuleType):
                    self._modules.setdefault(path, loaded)
            module = self._modules.get(filename)
        return module

    def _table(self, filename: str) -> _ModuleCodes | None:
        if filename in self._tables:
            return self._tables[filename]
        module = self._module_for(filename)
        table = None
        if module is not None:
            roots = _roots_of(module, filename)
            table = _ModuleCodes([r.co_firstlineno for r in roots], roots)
        if len(self._tables) >= MAX_FILES:
            self._tables.pop(next(iter(self._tables)))
        self._tables[filename] = table
        return table

    def _index(self, filename: str) -> _FileIndex:
        index = self._files.get(filename)
        if index is not None:
            return index
        index = _FileIndex()
        if filename:
            try:
                lines = linecache.getlines(filename)
                source = "".join(lines)
                if source and len(source) <= MAX_SOURCE_BYTES:
                    scopes = sorted(_scopes(ast.parse(source, filename)), key=lambda s: (s[0], -s[1]))
                    index.starts = [s[0] for s in scopes]
                    index.ends = [s[1] for s in scopes]
                    index.names = [s[2] for s in scopes]
                    index.parsed = True
            except (SyntaxError, ValueError, MemoryError, RecursionError, OSError, UnicodeError):
                index.parsed = False
        if len(self._files) >= MAX_FILES:
            forget = next(iter(self._files))
            del self._files[forget]
            self._lines = {k: v for k, v in self._lines.items() if k[0] != forget}
        self._files[filename] = index
        return index

    def name(self, filename: str, line: int) -> str:
        """The qualified name of the function holding `line` of `filename`."""
        key = (filename, line)
        found = self._lines.get(key)
        if found is not None:
            return found
        table = self._table(filename)
        if table is not None:
            found = table.name(line)
            if len(self._lines) < 262144:
                self._lines[key] = found
            return found
        index = self._index(filename)
        if not index.parsed:
            found = f"{os.path.basename(filename)}:{line}"
        else:
            found = "<module>"
            # The innermost scope holding the line starts last among those starting at or before it.
            i = bisect.bisect_right(index.starts, line) - 1
            while i >= 0:
                if index.ends[i] >= line:
                    found = index.names[i]
                    break
                i -= 1
        if len(self._lines) < 262144:
            self._lines[key] = found
        return found


_INNER = ("<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>", "<lambda>")


def normalise_qualname(qualname: str) -> str:
    """A code object's `co_qualname` as the resolver names the same line (comprehensions folded in)."""
    while True:
        for inner in _INNER:
            if qualname.endswith(".<locals>." + inner):
                qualname = qualname[: -len(inner) - 10]
                break
        else:
            return "<module>" if qualname in _INNER else qualname
