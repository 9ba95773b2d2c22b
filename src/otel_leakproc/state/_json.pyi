"""Types of the C extension `_json` (`_json.c`): the JSON text of a checkpoint's plain data."""

from typing import Any

# The bytes of json.dumps(value, separators=(",", ":")), or None for a value it leaves to `json`.
def dumps(value: Any, /) -> bytes | None: ...
