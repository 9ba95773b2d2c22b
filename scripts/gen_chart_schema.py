"""Keeps the `config` part of the Helm chart's values.schema.json equal to the service's config dataclasses.

The chart's `config` value is the otel-leakproc config file. Its JSON schema is derived from
`otel_leakproc.config.Settings` (the same dataclasses the loader builds), so unknown keys and wrong types are
rejected by `helm install` already, with no second list of keys to maintain by hand.

Usage:
    python scripts/gen_chart_schema.py          # rewrite properties.config in values.schema.json
    python scripts/gen_chart_schema.py --check  # exit 1 when the file is out of date (CI)
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "deploy" / "helm" / "otel-leakproc" / "values.schema.json"

_SCALARS: dict[type, dict[str, Any]] = {
    bool: {"type": "boolean"},
    int: {"type": "integer"},
    float: {"type": "number"},
    str: {"type": "string"},
}


def type_schema(tp: Any) -> dict[str, Any]:
    """JSON schema of one annotated config field type (the types the config loader supports)."""
    if tp is Any:
        return {}
    if tp in _SCALARS:
        return dict(_SCALARS[tp])
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [member.value for member in tp]}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return dataclass_schema(tp)
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        nullable = len(options) < len(args)
        schemas = [type_schema(a) for a in options]
        if nullable:
            schemas.append({"type": "null"})
        return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    if origin in (tuple, list):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return {"type": "array", "minItems": len(args), "maxItems": len(args)}
        return {"type": "array", "items": type_schema(args[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": type_schema(args[1])}
    raise TypeError(f"no JSON schema for config type {tp!r}")


def dataclass_schema(cls: type) -> dict[str, Any]:
    """A strict object schema: every field a property, no other keys, the fields without a default required."""
    hints = get_type_hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        properties[f.name] = type_schema(hints[f.name])
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        schema["required"] = required
    return schema


def config_schema() -> dict[str, Any]:
    """The schema of the chart's `config` value: the whole otel-leakproc config file."""
    sys.path.insert(0, str(ROOT / "src"))
    from otel_leakproc.config import Settings  # noqa: PLC0415 (needs src on the path first)

    schema = dataclass_schema(Settings)
    schema["description"] = (
        "The otel-leakproc config file (config/leakproc.yaml documents every key); generated from the "
        "config dataclasses by scripts/gen_chart_schema.py"
    )
    return schema


def updated_schema_text() -> str:
    """values.schema.json with `properties.config` regenerated."""
    doc = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    doc["properties"]["config"] = config_schema()
    return json.dumps(doc, indent=2) + "\n"


def main(argv: list[str]) -> int:
    text = updated_schema_text()
    if "--check" in argv:
        if SCHEMA_PATH.read_text(encoding="utf-8") != text:
            print(f"{SCHEMA_PATH}: properties.config is out of date; run python scripts/gen_chart_schema.py")
            return 1
        return 0
    SCHEMA_PATH.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
