"""YAML for config files: PyYAML's safe loader, refusing duplicate keys, with errors that name the place.

Imported only when a config file is read, so commands running on the built-in defaults (`analyze`
without `--config`) do not pay for PyYAML.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml

from otel_leakproc.errors import ConfigError

YAML_SYNTAX = "line {line}, column {column}: invalid YAML: {problem}"
YAML_INVALID = "invalid YAML: {problem}"


class _StrictLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key given twice in one mapping (plain YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            # Merge keys (`<<: *base`) may be overridden on purpose; only plain scalar keys are compared.
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)  # a scalar, so hashable
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str) -> object:
    """The document in `text`, or a ConfigError naming the line and column of what is wrong."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # safe: _StrictLoader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        problem = exc.problem or "syntax error"
        if exc.context:
            problem = f"{problem} ({exc.context})"
        mark = exc.problem_mark or exc.context_mark
        if mark is None:
            raise ConfigError([YAML_INVALID.format(problem=problem)]) from exc
        message = YAML_SYNTAX.format(line=mark.line + 1, column=mark.column + 1, problem=problem)
        raise ConfigError([message]) from exc
    except yaml.reader.ReaderError as exc:
        # Raised for control characters; it carries a character offset instead of a mark.
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        problem = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
        raise ConfigError([YAML_SYNTAX.format(line=line, column=column, problem=problem)]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([YAML_INVALID.format(problem=exc)]) from exc
