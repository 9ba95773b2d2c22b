"""Tests for `profile_messages`: profile.proto's classes for the decoder without `descriptor_pool` and the
pure-Python protobuf modules it imports. They must be the generated module's classes, and a real Go heap
profile must decode to the same summary through them, with the upb backend and with the pure-Python one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from otel_leakproc.receiver.proto import profile_descriptor, profile_messages, profile_pb2

PROFILE = Path(__file__).resolve().parents[2] / "testdata" / "pprof" / "go_heap_restart_after_0036.pb.gz"
PURE_PYTHON_MODULES = (
    "google.protobuf.descriptor_pool",
    "google.protobuf.internal.python_message",
    "google.protobuf.text_format",
    "otel_leakproc.receiver.proto.profile_pb2",
)
PROBE = """
import json, sys
from otel_leakproc.receiver.decode import DecodeLimits, decode_profile
summary = decode_profile(open(sys.argv[1], "rb").read(), DecodeLimits())
loaded = sorted(m for m in sys.modules if m.startswith(tuple(sys.argv[2:])))
from google.protobuf.internal import api_implementation
print(json.dumps([api_implementation.Type(), loaded, repr(summary)]))
"""


def decode_in_a_process(backend: str | None) -> list[object]:
    env = {k: v for k, v in os.environ.items() if k != "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"}
    if backend is not None:
        env["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = backend
    argv = [sys.executable, "-c", PROBE, str(PROFILE), *PURE_PYTHON_MODULES]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr
    result: list[object] = json.loads(done.stdout)
    return result


def test_the_serialized_file_is_the_generated_modules() -> None:
    """`make proto` writes both; a .proto edited without it fails here."""
    assert profile_pb2.DESCRIPTOR.serialized_pb == profile_descriptor.SERIALIZED


def test_every_message_is_the_generated_class() -> None:
    assert set(profile_messages.MESSAGES) == set(profile_pb2.DESCRIPTOR.message_types_by_name)
    for name in profile_messages.MESSAGES:
        assert getattr(profile_messages, name) is getattr(profile_pb2, name), name
    sample = profile_messages.Sample(location_id=[3, 4], value=[1, 2])
    assert profile_pb2.Sample.FromString(sample.SerializeToString()) == sample
    assert str(sample) == "location_id: 3\nlocation_id: 4\nvalue: 1\nvalue: 2\n"


def test_a_profile_decodes_the_same_without_the_pure_python_modules_with_upb() -> None:
    upb = decode_in_a_process(None)
    pure = decode_in_a_process("python")
    assert upb[:2] == ["upb", []]  # none of them imported for a decode
    assert pure[0] == "python"
    assert "otel_leakproc.receiver.proto.profile_pb2" in pure[1]  # the fallback: the generated module's classes
    assert upb[2] == pure[2]
    assert "ProfileSummary(" in str(upb[2])
