"""`history.seconds_of` divides int64 nanoseconds by 1e9 exactly as Python divides ints."""

from __future__ import annotations

import random

import numpy as np

from otel_leakproc.processor.history import NANOS, seconds_of


def _python(values: list[int]) -> list[float]:
    return [v / NANOS for v in values]


def test_seconds_of_matches_python_division_on_random_and_edge_values() -> None:
    rng = random.Random(20261206)
    values = [rng.randrange(0, 1 << 63) for _ in range(50_000)]
    values += [rng.randrange(1_700_000_000 * NANOS, 1_900_000_000 * NANOS) for _ in range(50_000)]
    values += [rng.randrange(0, 1 << 40) for _ in range(20_000)]  # before 2^29 s: the Python path
    boundary = (1 << 29) * NANOS
    values += [0, 1, NANOS - 1, NANOS, boundary - 1, boundary, boundary + 1, (1 << 63) - 1]
    # Quotients that are float64 rounding midpoints or next to them (r a multiple of 1e9 / 2^9).
    values += [1_790_000_000 * NANOS + k * 1_953_125 + d for k in range(512) for d in (-1, 0, 1)]
    got = seconds_of(np.array(values, dtype=np.int64))
    assert got.dtype == np.float64
    assert got.tolist() == _python(values)


def test_seconds_of_points_in_window_order() -> None:
    nanos = np.array([1_790_000_030 * NANOS + 7, 1_790_000_000 * NANOS + 123_456_789, 5], dtype=np.int64)
    assert seconds_of(nanos).tolist() == _python(nanos.tolist())
