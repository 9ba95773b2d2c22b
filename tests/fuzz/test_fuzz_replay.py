"""CI replays every fuzz seed and every crash input found so far through its target (seconds, no atheris):
a decoder that raises anything but InvalidProfileError on them fails here."""

from __future__ import annotations

import pytest
from targets import TARGETS, crash_inputs, seeds


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_seeds_and_crash_inputs_replay_without_unexpected_errors(target: str) -> None:
    inputs = list(seeds(target)) + [p.read_bytes() for p in crash_inputs(target)]
    assert len(inputs) >= 2, f"{target}: no seeds"
    for data in inputs:
        TARGETS[target](data)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_seeds_are_accepted_inputs(target: str) -> None:
    # Real data must get through (a seed that is rejected would seed only the error paths).
    first = next(seeds(target))
    if target == "ingest_name":
        return
    from targets import LIMITS, NOW

    from otel_leakproc.receiver.uploads import UploadRequest, process_upload

    dialect, content_type, query = {
        "pprof": ("ingest", "", (("name", "s"), ("format", "pprof"))),
        "goroutine_text": ("ingest", "text/plain", (("name", "s"), ("format", "goroutine"))),
        "go_text": ("ingest", "text/plain", (("name", "s"),)),
        "otlp_proto": ("otlp", "application/x-protobuf", ()),
        "otlp_json": ("otlp", "application/json", ()),
        "push": ("push", "application/proto", ()),
    }[target]
    result = process_upload(UploadRequest(dialect, first, content_type, "", query, NOW), LIMITS)  # type: ignore[arg-type]
    assert result.profiles or result.ignored
