"""Function names for tracemalloc frames: the resolver agrees with CPython's own code objects."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import pytest

from otel_leakproc.client._resolve import FunctionResolver, normalise_qualname

SOURCE = """
import functools

TABLE = [i * 2 for i in range(3)]


def plain(n):
    out = []
    for i in range(n):
        out.append(bytes(i))
    return out


def decorated_by(fn):
    @functools.wraps(fn)
    def wrapper(*args):
        return fn(*args)

    return wrapper


@decorated_by
def wrapped(x):
    return [x] * 3


class OrderBook:
    LIMIT = 10

    def add(self, order):
        rows = [o for o in order]
        return rows

    @staticmethod
    def parse(text):
        def field(name):
            return {name: text}

        return field("id")

    class Page:
        def render(self):
            return "page"


async def fetch(session):
    return {k: v for k, v in session}


def with_lambda(items):
    items.sort(key=lambda item: item)
    return items


def gen():
    yield from (i for i in range(2))
"""


def _code_objects(code: types.CodeType) -> list[types.CodeType]:
    found = [code]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found.extend(_code_objects(const))
    return found


def test_every_line_of_every_code_object_is_named_like_its_qualname(tmp_path: Path) -> None:
    path = tmp_path / "orders_module.py"
    path.write_text(SOURCE)
    module = compile(SOURCE, str(path), "exec")
    resolver = FunctionResolver()
    checked = 0
    for code in _code_objects(module)[1:]:  # the module body: `<module>`, checked below
        expected = normalise_qualname(code.co_qualname)
        for _start, _end, line in code.co_lines():
            if line is None or line == code.co_firstlineno:
                continue  # the def line (RESUME, decorators) is shared with the enclosing scope
            assert resolver.name(str(path), line) == expected, (line, code.co_qualname)
            checked += 1
    assert checked > 20


def test_names_methods_nested_functions_and_module_level_lines(tmp_path: Path) -> None:
    path = tmp_path / "orders_module.py"
    path.write_text(SOURCE)
    lines = SOURCE.splitlines()

    def line_of(text: str) -> int:
        return next(i for i, line in enumerate(lines, start=1) if text in line)

    resolver = FunctionResolver()
    name = str(path)
    assert resolver.name(name, line_of("out.append(bytes(i))")) == "plain"
    assert resolver.name(name, line_of("rows = [o for o in order]")) == "OrderBook.add"
    assert resolver.name(name, line_of("return {name: text}")) == "OrderBook.parse.<locals>.field"
    assert resolver.name(name, line_of('return "page"')) == "OrderBook.Page.render"
    assert resolver.name(name, line_of("LIMIT = 10")) == "OrderBook"
    assert resolver.name(name, line_of("return fn(*args)")) == "decorated_by.<locals>.wrapper"
    assert resolver.name(name, line_of("return {k: v for k, v in session}")) == "fetch"
    assert resolver.name(name, line_of("items.sort(key=lambda")) == "with_lambda"
    assert resolver.name(name, line_of("TABLE = [i * 2")) == "<module>"


def test_files_without_source_get_a_file_and_line_name() -> None:
    resolver = FunctionResolver()
    assert resolver.name("<frozen importlib._bootstrap>", 241) == "<frozen importlib._bootstrap>:241"
    assert resolver.name("/nonexistent/gone.py", 7) == "gone.py:7"


def test_a_file_that_does_not_parse_gets_file_and_line_names(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("def f(:\n    pass\n")
    assert FunctionResolver().name(str(path), 2) == "broken.py:2"


def test_normalise_qualname_folds_comprehensions_and_lambdas() -> None:
    assert normalise_qualname("OrderBook.add.<locals>.<listcomp>") == "OrderBook.add"
    assert normalise_qualname("f.<locals>.<lambda>.<locals>.<genexpr>") == "f"
    assert normalise_qualname("<genexpr>") == "<module>"
    assert normalise_qualname("OrderBook.add") == "OrderBook.add"


def test_loaded_modules_are_named_from_their_code_objects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "orders_loaded.py"
    path.write_text(SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("orders_loaded")
    try:
        resolver = FunctionResolver()
        lines = SOURCE.splitlines()

        def line_of(text: str) -> int:
            return next(i for i, line in enumerate(lines, start=1) if text in line)

        assert resolver.name(module.__file__, line_of("out.append(bytes(i))")) == "plain"
        assert resolver.name(module.__file__, line_of("rows = [o for o in order]")) == "OrderBook.add"
        assert resolver.name(module.__file__, line_of("return {name: text}")) == "OrderBook.parse.<locals>.field"
        assert resolver.name(module.__file__, line_of('return "page"')) == "OrderBook.Page.render"
        assert resolver.name(module.__file__, line_of("return [x] * 3")) == "wrapped"  # through __wrapped__
        assert resolver.name(module.__file__, line_of("def wrapper(*args)")) == "decorated_by"
        assert resolver.name(module.__file__, line_of("TABLE = [i * 2")) == "<module>"
        assert resolver._tables[module.__file__] is not None  # answered without parsing the source
        assert module.__file__ not in resolver._files
    finally:
        sys.modules.pop("orders_loaded", None)
