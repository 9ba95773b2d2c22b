"""`Settings`, the whole configuration, and the loader that builds it from a YAML file.

The loader works in stages: read the file, substitute environment variables, parse the YAML, build the
dataclass tree (rejecting unknown keys and wrong types), then call `validate()` on every node. The build
and validate stages collect every problem and raise one `ConfigError` at the end, each message starting
with the dotted key path (`processor.max_points: must be >= 8, got 3`).

The builder is generic over dataclasses: a stage adds a field to its config dataclass and the loader
understands it with no change here. Supported field types: `bool`, `int`, `float`, `str`, enums, `Literal`,
nested dataclasses, `X | None` and other unions, `tuple[X, ...]`, fixed tuples, `list[X]`, `dict[K, V]`
and `Any`. Any other type raises `TypeError`, because it is a programming error and not a config error.

Conventions for a config dataclass:
- a missing key takes the field's default (a field without a default is a required key);
- `validate() -> list[str]` checks the node's own fields only (the loader walks its children). A message
  that starts with a field name (`window: must be >= 8, got 3`) gets the node's path joined with a dot;
  any other message gets `<path>: ` in front.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import os
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, cast, get_args, get_origin, get_type_hints

from otel_leakproc.errors import ConfigError
from otel_leakproc.exporter.config import ExportConfig
from otel_leakproc.processor.config import ProcessorConfig, StateConfig
from otel_leakproc.receiver.config import DecodeConfig, IngestConfig, ServerConfig
from otel_leakproc.receiver.scrape.config import ScrapeConfig

__all__ = [
    "Settings",
    "build_config",
    "config_to_mapping",
    "load_settings",
    "settings_from_mapping",
    "settings_to_mapping",
    "substitute_env",
]

T = TypeVar("T")

# Error message templates. Key paths are dotted (`processor.heap.z_suspect`), list items indexed (`x.items[2]`).
ROOT_PATH = "(top level)"
UNKNOWN_KEY = "{path}: unknown key (expected one of: {choices})"
UNKNOWN_KEY_SUGGESTION = "{path}: unknown key (did you mean {suggestion!r}?)"
MISSING_KEY = "{path}: required key is missing"
KEY_NOT_STRING = "{path}: keys must be strings, got {key!r}"
EXPECTED = "{path}: expected {expected}, got {value}"
WRONG_LENGTH = "{path}: expected a list of {count} items, got {value}"
CONSTRUCT_FAILED = "{path}: {problem}"
ENV_UNSET = "line {line}: environment variable {name!r} is not set and has no default"
ENV_BAD_REFERENCE = (
    "line {line}: invalid environment reference {text!r} (write ${{NAME}}, ${{NAME:-default}}, or $$ for a $)"
)
READ_FAILED = "{file}: cannot read config file: {problem}"


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole configuration: one section per pipeline stage.

    Attributes:
        server: HTTP and gRPC listeners, TLS, auth and request bounds (the `server` section).
        ingest: decoder worker pool and queue (the `ingest` section).
        decode: bounds for decoding one upload (the `decode` section).
        processor: detector settings (the `processor` section).
        state: snapshot file and series bounds (the `state` section).
        export: where derived signals go (the `export` section).
        scrape: pulling profiles from pprof endpoints, static or discovered in Kubernetes (the `scrape` section).
    """

    server: ServerConfig = field(default_factory=ServerConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    processor: ProcessorConfig = field(default_factory=ProcessorConfig)
    state: StateConfig = field(default_factory=StateConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    scrape: ScrapeConfig = field(default_factory=ScrapeConfig)


def load_settings(path: str | os.PathLike[str] | None) -> Settings:
    """Load, check and return the settings in a YAML file.

    Args:
        path: the config file, or None for the built-in defaults.

    Returns:
        The validated settings; keys missing from the file keep their defaults.

    Raises:
        ConfigError: the file cannot be read, refers to an unset environment variable, is not valid YAML,
            or does not describe valid settings. For the last, `errors` holds every problem found.
    """
    if path is None:
        return Settings()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([READ_FAILED.format(file=os.fspath(path), problem=exc.strerror or exc)]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([READ_FAILED.format(file=os.fspath(path), problem=exc)]) from exc
    from otel_leakproc.config_yaml import parse_yaml  # noqa: PLC0415 (PyYAML only when there is a file)

    data = parse_yaml(substitute_env(text, os.environ))
    # An empty file (or one with only comments) means "all defaults".
    return build_config(Settings, {} if data is None else data)


def settings_from_mapping(data: Mapping[str, object]) -> Settings:
    """Build and validate settings from parsed YAML (or any plain mapping).

    Args:
        data: the top-level mapping; missing keys keep their defaults.

    Returns:
        The validated settings.

    Raises:
        ConfigError: with every unknown key, wrong type and failed validation found.
    """
    return build_config(Settings, data)


def settings_to_mapping(settings: Settings) -> dict[str, object]:
    """Turn settings into plain data (dicts, lists, scalars), e.g. to print the effective config as YAML.

    Args:
        settings: the settings to convert.

    Returns:
        A dict that `settings_from_mapping` turns back into equal settings.
    """
    return config_to_mapping(settings)


def build_config(cls: type[T], data: object) -> T:
    """Build a config dataclass from plain data and validate the whole tree.

    Args:
        cls: a dataclass whose fields follow the conventions in this module's docstring.
        data: plain data, normally the parsed YAML mapping; None means all defaults.

    Returns:
        An instance of `cls`.

    Raises:
        ConfigError: with every problem found, each prefixed with its key path.
        TypeError: `cls` is not a dataclass, or a field has a type the builder does not support.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"build_config needs a dataclass type, got {cls!r}")
    errors: list[str] = []
    built = _convert(cls, data, "", errors)
    if built is not _INVALID:
        # Validate even when building reported errors: failed fields fell back to their defaults,
        # and the user should see every problem in one run.
        _validate_tree(built, "", errors)
    if errors:
        raise ConfigError(errors)
    return cast(T, built)


def config_to_mapping(config: object) -> dict[str, object]:
    """Turn a config dataclass into plain data: the inverse of `build_config`.

    Args:
        config: a config dataclass instance.

    Returns:
        Nested dicts, lists and scalars; enums become their values and tuples become lists.

    Raises:
        TypeError: `config` is not a dataclass instance.
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config_to_mapping needs a dataclass instance, got {config!r}")
    return cast(dict[str, object], _to_plain(config))


def substitute_env(text: str, environ: Mapping[str, str]) -> str:
    """Replace environment references in config text.

    `${NAME}` is the variable's value; `${NAME:-default}` is the value, or `default` when the variable is
    unset or empty; `$$` is a literal `$`; any other `$` is kept as is. Lines that are only a comment are
    left alone, so a commented-out example can name a variable that is not set.

    Args:
        text: the config file's text.
        environ: the environment to read (normally `os.environ`).

    Returns:
        The text with every reference replaced.

    Raises:
        ConfigError: listing every unset variable without a default and every malformed reference.
    """
    errors: list[str] = []
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if "$" not in line or line.lstrip().startswith("#"):
            continue
        lines[index] = _ENV_TOKEN.sub(_env_replacer(index + 1, environ, errors), line)
    if errors:
        raise ConfigError(errors)
    return "".join(lines)


# --- environment substitution ------------------------------------------------------------------

# `$$`, or `${...}` up to the closing brace (or the end of the line, which is then reported as malformed).
_ENV_TOKEN = re.compile(r"\$(?:\$|\{[^}\r\n]*\}?)")
_ENV_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def _env_replacer(line: int, environ: Mapping[str, str], errors: list[str]) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        token = match.group()
        if token == "$$":
            return "$"
        reference = _ENV_REFERENCE.fullmatch(token)
        if reference is None:
            errors.append(ENV_BAD_REFERENCE.format(line=line, text=token))
            return token
        name, default = reference.group("name"), reference.group("default")
        value = environ.get(name)
        if default is not None:
            # Shell semantics for `:-`: an empty variable counts as unset.
            return value if value else default
        if value is None:
            errors.append(ENV_UNSET.format(line=line, name=name))
            return token
        return value

    return replace


# --- building dataclasses ------------------------------------------------------------------------


class _Invalid:
    """Marks a value that could not be converted; its error is already recorded."""


_INVALID = _Invalid()

# PyYAML follows YAML 1.1, which reads `1e6` (no dot) as a string; accept it where a number is expected.
_EXPONENT_ONLY_FLOAT = re.compile(r"[-+]?[0-9]+[eE][-+]?[0-9]+")

_SEQUENCE_TYPES: tuple[type, ...] = (tuple, list)
_MAPPING_TYPES: tuple[object, ...] = (dict, Mapping)


def _convert(tp: object, value: object, path: str, errors: list[str]) -> object:
    """Convert plain `value` to type `tp`, recording problems in `errors`; `_INVALID` on failure."""
    origin = get_origin(tp)
    if tp is Any or tp is object:
        return value
    if origin is Union or origin is types.UnionType:
        return _convert_union(tp, value, path, errors)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        # `section:` with every key commented out parses as None; treat it as an empty section.
        return _build_dataclass(tp, {} if value is None else value, path, errors)
    if origin is Literal or (isinstance(tp, type) and issubclass(tp, enum.Enum)):
        return _convert_choice(tp, value, path, errors)
    if tp in _SEQUENCE_TYPES or origin in _SEQUENCE_TYPES:
        return _convert_sequence(tp, value, path, errors)
    if tp in _MAPPING_TYPES or origin in _MAPPING_TYPES:
        return _convert_mapping(tp, value, path, errors)
    if tp in (bool, int, float, str, type(None)):
        return _convert_scalar(cast(type, tp), value, path, errors)
    raise TypeError(f"{_name(path)}: config field type {tp!r} is not supported by the config builder")


def _convert_scalar(tp: type, value: object, path: str, errors: list[str]) -> object:
    # bool is a subclass of int in Python, but `window: true` is a mistake, never a number.
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and not isinstance(value, bool):
        if isinstance(value, str) and _EXPONENT_ONLY_FLOAT.fullmatch(value.strip()):
            return float(value)
        if isinstance(value, int | float) and not math.isnan(value):
            return float(value)
    if tp in (bool, str) and isinstance(value, tp):
        return value
    if tp is type(None) and value is None:
        return None
    return _fail(tp, value, path, errors)


def _convert_union(tp: object, value: object, path: str, errors: list[str]) -> object:
    args = get_args(tp)
    if value is None and type(None) in args:
        return None
    candidates = [arg for arg in args if arg is not type(None)]
    if len(candidates) == 1:
        # `X | None`: report X's own (possibly nested) errors rather than a blanket message.
        return _convert(candidates[0], value, path, errors)
    for candidate in candidates:
        attempt: list[str] = []
        converted = _convert(candidate, value, path, attempt)
        if not attempt:
            return converted
    return _fail(tp, value, path, errors)


def _convert_choice(tp: object, value: object, path: str, errors: list[str]) -> object:
    choices: list[object] = list(get_args(tp)) if get_origin(tp) is Literal else list(cast(type[enum.Enum], tp))
    for choice in choices:
        plain = choice.value if isinstance(choice, enum.Enum) else choice
        # Compare types too, so `true` does not match a choice of 1.
        if type(plain) is type(value) and plain == value:
            return choice
    return _fail(tp, value, path, errors)


def _convert_sequence(tp: object, value: object, path: str, errors: list[str]) -> object:
    if not isinstance(value, list | tuple):
        return _fail(tp, value, path, errors)
    origin = get_origin(tp) or tp
    args = get_args(tp)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(value) != len(args):
            errors.append(WRONG_LENGTH.format(path=_name(path), count=len(args), value=_show(value)))
            return _INVALID
        item_types: list[object] = list(args)
    else:
        item_types = [args[0] if args else Any] * len(value)
    items = [
        _convert(item_tp, item, f"{path}[{i}]", errors)
        for i, (item_tp, item) in enumerate(zip(item_types, value, strict=True))
    ]
    if any(item is _INVALID for item in items):
        return _INVALID
    return tuple(items) if origin is tuple else items


def _convert_mapping(tp: object, value: object, path: str, errors: list[str]) -> object:
    if not isinstance(value, Mapping):
        return _fail(tp, value, path, errors)
    key_tp, value_tp = get_args(tp) or (Any, Any)
    result: dict[object, object] = {}
    ok = True
    for key, item in value.items():
        item_path = _join(path, str(key))
        converted_key = _convert(key_tp, key, item_path, errors)
        converted = _convert(value_tp, item, item_path, errors)
        if converted_key is _INVALID or converted is _INVALID:
            ok = False
        else:
            result[converted_key] = converted
    return result if ok else _INVALID


def _build_dataclass(cls: type, value: object, path: str, errors: list[str]) -> object:
    if not isinstance(value, Mapping):
        return _fail(cls, value, path, errors)
    hints = get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, object] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            errors.append(KEY_NOT_STRING.format(path=_name(path), key=key))
            continue
        key_path = _join(path, key)
        if key not in known:
            errors.append(_unknown_key(key_path, key, list(known)))
            continue
        converted = _convert(hints[key], item, key_path, errors)
        if converted is not _INVALID:
            kwargs[key] = converted
    complete = True
    for name, f in known.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in kwargs:
            complete = False
            if name not in value:
                errors.append(MISSING_KEY.format(path=_join(path, name)))
    if not complete:
        return _INVALID
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        # A `__post_init__` may reject values too; report it like any other problem.
        errors.append(CONSTRUCT_FAILED.format(path=_name(path), problem=exc))
        return _INVALID


def _unknown_key(path: str, key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return UNKNOWN_KEY_SUGGESTION.format(path=path, suggestion=close[0])
    return UNKNOWN_KEY.format(path=path, choices=", ".join(known))


def _fail(tp: object, value: object, path: str, errors: list[str]) -> _Invalid:
    errors.append(EXPECTED.format(path=_name(path), expected=_describe(tp), value=_show(value)))
    return _INVALID


def _describe(tp: object) -> str:
    """What a value of type `tp` looks like in YAML, for error messages."""
    origin = get_origin(tp)
    simple = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    if isinstance(tp, type) and tp in simple:
        return simple[tp]
    if origin is Union or origin is types.UnionType:
        return " or ".join(_describe(arg) for arg in get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(member.value) for member in tp)
    if tp in _SEQUENCE_TYPES or origin in _SEQUENCE_TYPES:
        return "a list"
    return "a mapping"  # dataclasses and dicts, the only types left that `_convert` accepts


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _name(path: str) -> str:
    return path or ROOT_PATH


# --- validation and output -----------------------------------------------------------------------

# A validate() message that starts with a field name (`window: ...`, `limits.max: ...`, `items[0]: ...`).
_FIELD_MESSAGE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\[\]]*:")


def _validate_tree(node: object, path: str, errors: list[str]) -> None:
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        validate = getattr(node, "validate", None)
        if callable(validate):
            for message in validate():
                if not path:
                    errors.append(message)
                elif _FIELD_MESSAGE.match(message):
                    errors.append(f"{path}.{message}")
                else:
                    errors.append(f"{path}: {message}")
        for f in dataclasses.fields(node):
            _validate_tree(getattr(node, f.name), _join(path, f.name), errors)
    elif isinstance(node, list | tuple):
        for i, item in enumerate(node):
            _validate_tree(item, f"{path}[{i}]", errors)
    elif isinstance(node, dict):
        for key, item in node.items():
            _validate_tree(item, _join(path, str(key)), errors)


def _to_plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_to_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {(key.value if isinstance(key, enum.Enum) else key): _to_plain(item) for key, item in value.items()}
    return value
