"""Fuzz targets: one per input decoder, each the path an upload takes through the service's worker.

Every target feeds bytes to a public entry point (`process_upload` with the dialect's content type,
then the boundary checks and string caps the worker applies, or the `/ingest` name parser) and treats
`InvalidProfileError` (and its `PayloadTooLargeError`) as the only acceptable failure: anything else
raised is a bug. No atheris here, so CI can replay seeds and crash inputs without it (`test_fuzz_replay.py`);
`fuzz.py` runs the coverage-guided search with atheris.

Seeds are real inputs: the repository's Go profiles, goroutine dumps, captured Pyroscope requests, and
OTLP requests built from them (`seeds/`). Crash inputs found by fuzzing are kept in `crashes/<target>/`.
"""

from __future__ import annotations

import contextlib
import gzip
import json
from collections.abc import Callable, Iterator
from pathlib import Path

from otel_leakproc.errors import InvalidProfileError
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.labels import parse_label_set
from otel_leakproc.receiver.summary_checks import check_upload
from otel_leakproc.receiver.uploads import Dialect, UploadRequest, process_upload
from otel_leakproc.receiver.value_caps import ValueCaps, cap_upload

HERE = Path(__file__).resolve().parent
TESTDATA = HERE.parent / "testdata"
CRASHES = HERE / "crashes"
SEEDS = HERE / "seeds"

# Small bounds keep each input fast (the bounds themselves are tested elsewhere); same code paths.
LIMITS = DecodeLimits(
    max_decompressed_bytes=4 * 1024 * 1024,
    max_samples=20_000,
    max_locations=20_000,
    max_functions=20_000,
    max_strings=40_000,
)
CAPS = ValueCaps()
NOW = 1_790_000_000_000_000_000


def _upload(dialect: Dialect, data: bytes, content_type: str = "", query: tuple[tuple[str, str], ...] = ()) -> None:
    request = UploadRequest(dialect, data, content_type, "", query, NOW)
    try:
        result = process_upload(request, LIMITS, max_profiles=16)
        check_upload(result)
    except InvalidProfileError:
        return
    cap_upload(result, CAPS)


def pprof(data: bytes) -> None:
    _upload("ingest", data, "binary/octet-stream", (("name", "fuzz"), ("format", "pprof")))


def goroutine_text(data: bytes) -> None:
    _upload("ingest", data, "text/plain", (("name", "fuzz"), ("format", "goroutine")))


def go_text(data: bytes) -> None:
    """Go's `debug=1` text profiles (heap, mutex, block, goroutine), sniffed as `/ingest` does with no format."""
    _upload("ingest", data, "text/plain", (("name", "fuzz"),))


def otlp_proto(data: bytes) -> None:
    _upload("otlp", data, "application/x-protobuf")


def otlp_json(data: bytes) -> None:
    _upload("otlp", data, "application/json")


def push(data: bytes) -> None:
    _upload("push", data, "application/proto")


def ingest_name(data: bytes) -> None:
    """The `/ingest` name syntax, alone and as the query of a real upload."""
    name = data.decode("utf-8", "replace")
    with contextlib.suppress(InvalidProfileError):
        parse_label_set(name)
    _upload("ingest", _HEAP_SEED, "binary/octet-stream", (("name", name), ("format", "pprof")))


TARGETS: dict[str, Callable[[bytes], None]] = {
    "pprof": pprof,
    "goroutine_text": goroutine_text,
    "go_text": go_text,
    "otlp_proto": otlp_proto,
    "otlp_json": otlp_json,
    "push": push,
    "ingest_name": ingest_name,
}


def _files(folder: Path, pattern: str) -> list[Path]:
    return sorted(folder.glob(pattern))


def _captured(client: str, prefix: str) -> Iterator[bytes]:
    for meta in _files(TESTDATA / "uploads" / client, f"{prefix}_*.json"):
        body = meta.with_suffix(".body").read_bytes()
        headers = {k.lower(): v for k, v in json.loads(meta.read_text())["headers"]}
        yield gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body


def seeds(target: str) -> Iterator[bytes]:
    """The seed inputs of a target: real data from the repository."""
    if target == "pprof":
        for path in _files(TESTDATA / "pprof", "*.pb.gz"):
            yield path.read_bytes()
            yield gzip.decompress(path.read_bytes())
    elif target == "goroutine_text":
        for path in _files(TESTDATA / "goroutine-text", "*.txt"):
            yield path.read_bytes()
    elif target == "go_text":
        for path in _files(TESTDATA / "go-text", "*.txt"):
            yield path.read_bytes()
    elif target in ("otlp_proto", "otlp_json"):
        for path in _files(SEEDS / target, "*"):
            yield path.read_bytes()
    elif target == "push":
        yield from _captured("pyroscope-io-1.4.0", "push")
    elif target == "ingest_name":
        for name in ("checkout", "checkout{instance=pod-1}", "a.b-c/d{k=v, x = y ,}", "app{}", "{", "a{b}", "é{=}"):
            yield name.encode()
    else:
        raise KeyError(target)


def crash_inputs(target: str) -> list[Path]:
    return [p for p in _files(CRASHES / target, "*") if p.is_file()]


_HEAP_SEED = (TESTDATA / "pprof" / "go_heap_steady_leak_0059.pb.gz").read_bytes()
