"""What handing a point or an upload to its owner costs with several `serve` processes (`server.processes`,
cluster/peers.py, cluster/forwarding.py).

Two real processes on one machine: an owner runs a `PeerGroup` whose apply keeps nothing and whose decoder
of forwarded uploads answers without decoding (so only the hand-over is timed, not the decode, journal or
detector), and a sender hands it, `--count` times and `--concurrency` at a time as concurrent uploads
would, the point of a real small heap profile through `PeerGroup.accept` (what push and OTLP uploads
cost), then the raw `/ingest` upload of the same profile through `PeerGroup.forward` (what small `/ingest`
uploads cost), then its result as a decoder worker pickles it through `PeerGroup.forward_decoded` (what
`/ingest` uploads a worker decodes cost; the owner unpickles it). Prints the CPU time each side used per
item (user + system, from /proc) and the wall time; the cost a `serve` process pays per forwarded item is
the sum of both sides. Prints figures only.

    python benchmarks/bench_handover.py --count 5000 --concurrency 8
    python benchmarks/bench_handover.py --count 2000 --profile benchmarks/out/large/heap_0029.pb.gz
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from otel_leakproc.cluster.partitions import local_owner
from otel_leakproc.cluster.peers import LocalProcess, PeerGroup, Point
from otel_leakproc.query.series import Selection
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.ingest import IngestOutcome
from otel_leakproc.receiver.uploads import DecodedProfile, UploadRequest, UploadResult, process_upload

HERE = Path(__file__).resolve().parent
SMALL = HERE.parent / "tests" / "testdata" / "pprof" / "go_heap_steady_leak_0059.pb.gz"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class _Nothing:
    async def series(self, selection: Selection) -> list[dict[str, object]]:
        return []


def _discard(points: Sequence[Point], records: object = None) -> None:
    pass


async def _undecoded(tenant: str, request: UploadRequest) -> IngestOutcome:
    return IngestOutcome(tenant, 1, ())


async def _unpickled(tenant: str, dialect: str, pickled: bytes) -> IngestOutcome:
    result = pickle.loads(pickled)  # what the owner does with a result decoded elsewhere, before its sink
    return IngestOutcome(tenant, len(result.profiles), ())


async def _owner(runtime: Path) -> None:
    group = PeerGroup(LocalProcess(1, 2, runtime), _discard, _Nothing(), lambda: b"")
    group.uploads = _undecoded
    group.decoded = _unpickled
    await group.start()
    await asyncio.Event().wait()  # until killed


async def _sender(runtime: Path, count: int, concurrency: int, owner_pid: int, profile: Path) -> None:
    body = profile.read_bytes()
    one = process_upload(UploadRequest("ingest", body, query=(("name", "x"), ("format", "pprof"))), DecodeLimits())
    service = next(f"svc-{i}" for i in range(100) if local_owner("bench", f"svc-{i}", "pod", 2) == 1)
    result = UploadResult((DecodedProfile(service, "pod", {"service.name": service}, one.profiles[0].summary),))
    group = PeerGroup(LocalProcess(0, 2, runtime), _discard, _Nothing(), lambda: b"")
    await group.start()
    while not group.all_up():
        await asyncio.sleep(0.05)
    request = UploadRequest("ingest", b"")
    upload = UploadRequest(
        "ingest", body, "application/octet-stream", "", (("name", f"{service}{{instance=pod}}"), ("format", "pprof"))
    )
    assert group.route("bench", upload) == 1

    async def point(n: int) -> None:
        for _ in range(n):
            await group.accept("bench", request, result)

    async def forward(n: int) -> None:
        for _ in range(n):
            await group.forward(1, "bench", upload)

    pickled = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)

    async def decoded(n: int) -> None:
        for _ in range(n):
            await group.forward_decoded(1, "bench", "ingest", pickled)

    for what, worker in (("point", point), ("upload", forward), ("decoded upload's result", decoded)):
        await worker(200)  # warm
        mine, theirs, start = cpu_seconds(os.getpid()), cpu_seconds(owner_pid), time.perf_counter()
        await asyncio.gather(*(worker(count // concurrency) for _ in range(concurrency)))
        wall = time.perf_counter() - start
        mine, theirs = cpu_seconds(os.getpid()) - mine, cpu_seconds(owner_pid) - theirs
        done = count // concurrency * concurrency
        print(
            f"hand-over of one heap {what} of {len(body) / 1024:.1f} KiB ({done}, {concurrency} at a time): "
            f"sender {mine / done * 1000:.3f} ms CPU, owner {theirs / done * 1000:.3f} ms CPU, "
            f"together {(mine + theirs) / done * 1000:.3f} ms; wall {wall / done * 1000:.3f} ms each"
        )
    print(f"load average: {Path('/proc/loadavg').read_text().strip()}")
    await group.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--profile", type=Path, default=SMALL, help="the heap profile handed over (default: a small one)"
    )
    parser.add_argument("--owner", metavar="RUNTIME", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.owner:
        asyncio.run(_owner(Path(args.owner)))
        return 0
    import subprocess  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as runtime:
        owner = subprocess.Popen([sys.executable, __file__, "--owner", runtime])
        try:
            asyncio.run(_sender(Path(runtime), args.count, args.concurrency, owner.pid, args.profile))
        finally:
            owner.kill()
            owner.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
