"""CPU per small profile on `serve`'s path without HTTP: inline decode, journal (a FileStore in a temporary
directory), SeriesTable.update, with the settle task run at `processor.evaluate_every_seconds` as `serve`
runs it. The same bodies and series as `bench_serve_wrk.py` (the 2.2 KiB profile, 240 points over 200
series), fed as fast as one thread goes, after every series is past the detectors' warm-up. Prints
thread CPU per profile; compare commits by alternating runs against copies of their sources:

    PYTHONPATH=/tmp/base/src python benchmarks/bench_serve_path.py --label main
    PYTHONPATH=src python benchmarks/bench_serve_path.py --label branch
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gzip
import tempfile
import time
from pathlib import Path

from bench_serve import SMALL  # type: ignore[import-not-found]

from otel_leakproc.app import Service
from otel_leakproc.config import Settings
from otel_leakproc.receiver.proto import profile_pb2
from otel_leakproc.receiver.uploads import UploadRequest


def bodies(count: int) -> list[bytes]:
    profile = profile_pb2.Profile.FromString(gzip.decompress(Path(SMALL).read_bytes()))
    out = []
    for i in range(count):
        profile.time_nanos = 1_790_000_000 * 10**9 + i * 60 * 10**9
        out.append(gzip.compress(profile.SerializeToString(), 1))
    return out


async def run(seconds: float, series: int, label: str, every: float | None) -> None:
    points = bodies(240)
    settings = Settings()
    settings = dataclasses.replace(settings, state=dataclasses.replace(settings.state, dir=tempfile.mkdtemp()))
    if every is not None:
        processor = dataclasses.replace(settings.processor, evaluate_every_seconds=every)
        settings = dataclasses.replace(settings, processor=processor)
    service = Service(settings, exporters=[])
    service.store.load()  # opens the journal, as the service's start-up does
    core, pipeline = service.core, service.pipeline
    period = settings.processor.evaluate_every_seconds
    sent = 0

    def upload() -> None:
        nonlocal sent
        name, point = f"svc-{sent % series}{{instance=i}}", (sent // series) % len(points)
        sent += 1
        request = UploadRequest(
            dialect="ingest",
            body=points[point],
            content_type="application/octet-stream",
            content_encoding="",
            query=(("name", name), ("format", "pprof")),
            received_nanos=time.time_ns(),
        )
        result = core._decode_inline(request)  # what IngestCore._decode runs for a small body
        assert result is not None
        pipeline.accept("anonymous", request, result)

    for _ in range(series * 35):  # past the 30-profile warm-up
        upload()
    pipeline.settle()
    count = 0
    cpu, start = time.thread_time(), time.monotonic()
    settled = start
    while time.monotonic() - start < seconds:
        upload()
        count += 1
        now = time.monotonic()
        if now - settled >= period:
            pipeline.settle()
            settled = now
    used = time.thread_time() - cpu
    print(
        f"{label}: {count} profiles in {seconds:.0f} s, {used / count * 1e6:.0f} us of CPU per profile "
        f"({count / used:.0f} a CPU second); evaluate_every_seconds {period}"
    )
    service.store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--label", default="run")
    parser.add_argument(
        "--evaluate-every",
        type=float,
        default=None,
        help="processor.evaluate_every_seconds (default: the config's); 0 evaluates every profile, as serve "
        "does for series pushed every 10-60 s",
    )
    args = parser.parse_args()
    asyncio.run(run(args.seconds, args.series, args.label, args.evaluate_every))


if __name__ == "__main__":
    main()
