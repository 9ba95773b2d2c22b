"""The C JSON writer of the checkpoint encoder (`otel_leakproc.state._json`) against `json.dumps` with compact
separators: the same bytes for every kind of plain data and every number and string that is hard to get right
(escapes, characters past 0xFFFF, NaN, -0.0, ints past int64), the same for a real detector's state; and None,
leaving it to `json`, for whatever it does not write exactly so (subclasses, keys that are not str, depth)."""

from __future__ import annotations

import enum
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from otel_leakproc.model import ProfileKind
from otel_leakproc.processor.config import ProcessorConfig
from otel_leakproc.state._json import dumps
from otel_leakproc.state.codec import Columns
from otel_leakproc.state.records import _json_bytes, _take_arrays, resolve_state

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
from bench_series_memory import fed_series


def _reference(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


STRINGS = [
    "",
    "plain",
    'quote " and backslash \\',
    "\n\r\t\b\f",
    "\x00\x01\x1f\x7f\x80",
    "ünïcödé",
    "日本語",
    "emoji \U0001f600 past 0xFFFF",
    "\ud800 lone surrogate",
    "/slash/ stays",
    "a" * 5000,
]
NUMBERS: list[Any] = [
    0,
    -1,
    7,
    2**63 - 1,
    -(2**63),
    2**63,
    -(2**64) - 5,
    10**40,
    0.0,
    -0.0,
    1.0,
    0.1,
    1e16,
    1e-7,
    5e-324,
    1.7976931348623157e308,
    -10566.195509802226,
    1790000000.0,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
    None,
]


@pytest.mark.parametrize("value", STRINGS + NUMBERS)
def test_every_scalar_is_written_as_json_writes_it(value: Any) -> None:
    assert dumps(value) == _reference(value)
    assert dumps({value if isinstance(value, str) else "k": [value, value]}) == _reference(
        {value if isinstance(value, str) else "k": [value, value]}
    )


def test_nested_containers_in_order() -> None:
    value = {
        "b": [],
        "a": {},
        "list": [1, [2, [3, ()]], {"x": None}],
        "tuple": (1.5, "s", (True,)),
        "z": {"deep": {"er": [{"": ""}]}},
    }
    assert dumps(value) == _reference(value)


def test_a_detector_state_is_written_as_json_writes_it() -> None:
    config = ProcessorConfig()
    for kind in (ProfileKind.HEAP, ProfileKind.GOROUTINE, ProfileKind.MUTEX):
        detector = fed_series(kind, "pod-1", config.max_points + 40, 64, config)  # a full window
        state = resolve_state(detector.to_state(arrays=True))
        assert dumps(state["report"]) == _reference(state["report"])
        rest = _take_arrays({k: v for k, v in state.items() if k != "report"}, (), Columns(), [])
        assert dumps(rest) == _reference(rest)


class _Level(enum.IntEnum):
    HIGH = 3


class _Text(str):
    pass


@pytest.mark.parametrize(
    "value",
    [
        {1: "int key"},
        {"k": _Level.HIGH},
        [_Text("s")],
        {"k": np.float64(1.5)},
        {"k": {1, 2}},
        {"k": b"bytes"},
    ],
)
def test_what_it_does_not_write_exactly_it_leaves_to_json(value: Any) -> None:
    assert dumps(value) is None
    try:
        expected: bytes | type[Exception] = _reference(value)
    except TypeError:
        expected = TypeError
    if expected is TypeError:
        with pytest.raises(TypeError):
            _json_bytes(value)
    else:
        assert _json_bytes(value) == expected


def test_nesting_past_its_depth_is_left_to_json() -> None:
    value: Any = []
    for _ in range(150):
        value = [value]
    assert dumps(value) is None
    assert _json_bytes(value) == _reference(value)
