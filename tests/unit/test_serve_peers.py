"""Several `serve` processes (`server.processes`): ownership of series and the hand-over of points between
processes over real Unix sockets, two `PeerGroup`s on one event loop (`cluster/peers.py`), and the
supervisor's settings and state-folder checks (`cluster/supervisor.py`)."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from otel_leakproc.cluster.partitions import LOCAL_PARTITIONS, local_owner, partition_of
from otel_leakproc.cluster.peers import (
    POINTS,
    LocalProcess,
    PeerGroup,
    PeerLink,
    Point,
    decode_points,
    encode_points,
    merge_metrics,
    split_by_owner,
)
from otel_leakproc.cluster.supervisor import check_state_layout, child_settings, reserve, run_processes
from otel_leakproc.config import settings_from_mapping
from otel_leakproc.errors import ConfigError, UnavailableError
from otel_leakproc.model import ProfileKind
from otel_leakproc.query.series import Selection, order
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.uploads import DecodedProfile, UploadRequest, UploadResult, process_upload
from otel_leakproc.state.codec import CodecError
from otel_leakproc.state.health import StoreUnavailableError
from otel_leakproc.state.records import probe_frame

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "tests" / "testdata" / "corpus" / "steady_leak" / "heap" / "0000.pb.gz"


def _upload(services: Sequence[str]) -> UploadResult:
    """A real decoded upload holding the same real heap profile once for each service."""
    body = PROFILE.read_bytes()
    one = process_upload(UploadRequest("ingest", body, query=(("name", "x"), ("format", "pprof"))), DecodeLimits())
    (profile,) = one.profiles
    return UploadResult(tuple(DecodedProfile(s, "pod-1", {"service.name": s}, profile.summary) for s in services))


def test_a_series_has_one_owner_from_the_fixed_local_partitions() -> None:
    owners = [local_owner("t", f"svc-{i}", "pod", 3) for i in range(300)]
    assert set(owners) == {0, 1, 2}
    assert all(60 <= owners.count(n) <= 140 for n in range(3)), [owners.count(n) for n in range(3)]
    for i in range(50):
        p = partition_of("t", f"svc-{i}", "pod", LOCAL_PARTITIONS)
        assert local_owner("t", f"svc-{i}", "pod", 3) == p % 3
    # Every kind of one process lands with the same owner: a heap and a goroutine profile of one pod stay
    # together whichever process receives them.
    (heap,) = _upload(["same"]).profiles
    goroutine = DecodedProfile("same", "pod-1", heap.resource, replace(heap.summary, kind=ProfileKind.GOROUTINE))
    for index in range(3):
        mine, theirs = split_by_owner(
            LocalProcess(index, 3, Path("/nonexistent")), "t", UploadResult((heap, goroutine))
        )
        assert [len(points) for points in (mine, *theirs.values()) if points] == [2]


def test_split_by_owner_keeps_each_point_once_with_its_owner() -> None:
    process = LocalProcess(1, 3, Path("/nonexistent"))
    result = _upload([f"svc-{i}" for i in range(30)])
    mine, theirs = split_by_owner(process, "acme", result)
    assert mine
    assert sorted(theirs) == [0, 2]  # its own points are not filed under its own index
    got = [key for key, _, _ in mine] + [key for points in theirs.values() for key, _, _ in points]
    assert sorted(k.service for k in got) == sorted(f"svc-{i}" for i in range(30))
    assert all(local_owner("acme", k.service, k.instance, 3) == 1 for k, _, _ in mine)
    for owner, points in theirs.items():
        assert all(local_owner("acme", k.service, k.instance, 3) == owner for k, _, _ in points)
    assert all(k.tenant == "acme" for k in got)


def test_points_cross_as_point_records_and_come_back_equal() -> None:
    result = _upload(["a", "b"])
    points = split_by_owner(LocalProcess(0, 1, Path("/x")), "t", result)[0]
    assert decode_points(encode_points(points)) == points
    with pytest.raises(CodecError, match="expected point records"):
        decode_points(probe_frame())
    with pytest.raises(CodecError):
        decode_points(encode_points(points)[:-3])


def test_metrics_of_every_process_are_labelled_with_it() -> None:
    zero = '# HELP x_total Things.\n# TYPE x_total counter\nx_total{kind="a"} 3.0\n# TYPE g gauge\ng 1.0\n'
    one = '# HELP x_total Things.\n# TYPE x_total counter\nx_total{kind="a"} 4.0\n# TYPE g gauge\ng 2.0\n'
    text = merge_metrics([(0, zero), (1, one)]).decode()
    assert 'x_total{kind="a",process="0"} 3.0' in text
    assert 'x_total{kind="a",process="1"} 4.0' in text
    assert 'g{process="0"} 1.0' in text
    assert 'g{process="1"} 2.0' in text
    assert text.count("# TYPE x_total counter") == 1


class _Owner:
    """One process's side: what it applied, and its series as API objects."""

    def __init__(self, process: LocalProcess) -> None:
        self.applied: list[Point] = []
        self.refuse = False
        self.group = PeerGroup(process, self.apply, self, lambda: b"# TYPE up gauge\nup 1.0\n")

    def apply(self, points: Sequence[Point], records: Sequence[bytes | memoryview] | None = None) -> None:
        if self.refuse:
            raise StoreUnavailableError("state cannot be written (disk full)", 2.0)
        self.applied.extend(points)

    async def series(self, selection: Selection) -> list[dict[str, Any]]:  # a SeriesReader
        objects = [
            {"status": "ok", "tenant": k.tenant, "service": k.service, "instance": k.instance, "kind": k.kind.value}
            for k, _, _ in self.applied
        ]
        return sorted((o for o in objects if selection.admits(o)), key=order)


def test_two_processes_hand_points_to_their_owner_and_show_every_series(tmp_path: Path) -> None:
    async def scenario() -> None:
        owners = [_Owner(LocalProcess(i, 2, tmp_path)) for i in range(2)]
        for owner in owners:
            await owner.group.start()
        try:
            for _ in range(100):
                if all(o.group.all_up() for o in owners):
                    break
                await asyncio.sleep(0.05)
            assert all(o.group.all_up() for o in owners)
            services = [f"svc-{i}" for i in range(40)]
            # Half the uploads arrive at each process; each point must end with its owner, once.
            await owners[0].group.accept("acme", UploadRequest("ingest", b""), _upload(services[:20]))
            await owners[1].group.accept("acme", UploadRequest("ingest", b""), _upload(services[20:]))
            for index, owner in enumerate(owners):
                assert owner.applied, "every process owns some of 40 series"
                assert all(local_owner("acme", k.service, k.instance, 2) == index for k, _, _ in owner.applied)
            applied = sorted(k.service for o in owners for k, _, _ in o.applied)
            assert applied == sorted(services)
            # Either process lists all 40, in order, and filters as asked.
            for owner in owners:
                listed = await owner.group.series(Selection(None, {}, timeline=False))
                assert sorted(o["service"] for o in listed) == sorted(services)
                assert [
                    o["service"] for o in await owner.group.series(Selection(frozenset({"acme"}), {"service": "svc-7"}))
                ] == ["svc-7"]
                assert await owner.group.series(Selection(frozenset({"other"}), {}, timeline=False)) == []
            metrics = (await owners[1].group.metrics()).decode()
            assert 'up{process="0"} 1.0' in metrics
            assert 'up{process="1"} 1.0' in metrics
            # An owner that cannot journal refuses: the upload is not acknowledged (503 upstream).
            owners[1].refuse = True
            theirs = [s for s in services if local_owner("acme", s, "pod-1", 2) == 1][:1]
            with pytest.raises(UnavailableError, match="process 1: state cannot be written"):
                await owners[0].group.accept("acme", UploadRequest("ingest", b""), _upload(theirs))
            # A gone owner: the same.
            await owners[1].group.stop()
            with pytest.raises(UnavailableError, match="process 1"):
                await owners[0].group.accept("acme", UploadRequest("ingest", b""), _upload(theirs))
            assert not owners[0].group.all_up()
        finally:
            for owner in owners:
                await owner.group.stop()

    asyncio.run(scenario())


def test_an_owner_refuses_points_of_series_it_does_not_own(tmp_path: Path) -> None:
    async def scenario() -> None:
        owner = _Owner(LocalProcess(0, 2, tmp_path))
        await owner.group.start()
        try:
            stray = [s for s in (f"svc-{i}" for i in range(20)) if local_owner("t", s, "pod-1", 2) == 1][:1]
            points = split_by_owner(LocalProcess(0, 1, tmp_path), "t", _upload(stray))[0]
            link = PeerLink(0, tmp_path / "process-0.sock")
            status, answer = await link.request(POINTS, encode_points(points))
            await link.close()
            assert status != 0
            assert b"not the owner" in answer
            assert owner.applied == []
        finally:
            await owner.group.stop()

    asyncio.run(scenario())


def test_child_settings_give_each_process_its_folder_ports_and_share_of_workers(tmp_path: Path) -> None:
    settings = settings_from_mapping(
        {
            "server": {"processes": 2},
            "state": {"dir": str(tmp_path / "state"), "redis": {"replica_id": "node-a"}},
            "export": {"events": {"spool_dir": str(tmp_path / "spool")}},
        }
    )
    child = child_settings(settings, 1, 2, "127.0.0.1:5000", "127.0.0.1:5001")
    assert child.server.http.address == "127.0.0.1:5000"
    assert child.server.grpc.address == "127.0.0.1:5001"
    assert child.state.dir == str(tmp_path / "state" / "process-1-of-2")
    assert child.export.events.spool_dir == str(tmp_path / "spool" / "process-1")
    assert child.state.redis.replica_id == "node-a-1"
    assert child.ingest.workers >= 1


def test_a_state_folder_of_another_process_count_is_refused(tmp_path: Path) -> None:
    def settings(processes: int) -> Any:
        return settings_from_mapping({"server": {"processes": processes}, "state": {"dir": str(tmp_path)}})

    check_state_layout(settings(3), 3)
    assert (tmp_path / "processes").read_text() == "3\n"
    check_state_layout(settings(3), 3)  # the same count again: fine
    with pytest.raises(ConfigError, match=r"server\.processes: .* holds the state of 3 serve processes"):
        check_state_layout(settings(2), 2)
    with pytest.raises(ConfigError, match=r"server\.processes"):
        check_state_layout(settings(1), 1)
    single = tmp_path / "single"
    single.mkdir()
    (single / "checkpoint.bin").write_bytes(b"")
    one = settings_from_mapping({"server": {"processes": 2}, "state": {"dir": str(single)}})
    with pytest.raises(ConfigError, match="holds the state of one serve process"):
        check_state_layout(one, 2)


def test_processes_is_validated_and_refused_with_the_prometheus_listener() -> None:
    with pytest.raises(ConfigError, match=r"server\.processes: must be from 0"):
        settings_from_mapping({"server": {"processes": 65}})
    both = settings_from_mapping({"server": {"processes": 2}, "export": {"prometheus": {"enabled": True}}})
    with pytest.raises(ConfigError, match=r"server\.processes: export\.prometheus"):
        run_processes(both, "info")  # refused before anything is bound or started
    assert settings_from_mapping({"server": {"processes": 0}}).server.process_count() >= 1


def test_a_reserved_port_is_shared_and_never_answers_itself() -> None:
    held, address = reserve("127.0.0.1:0")
    try:
        port = int(address.rpartition(":")[2])
        assert port > 0
        child = socket.socket()
        child.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        child.bind(("127.0.0.1", port))  # what each child does
        child.listen()
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        accepted, _ = child.accept()  # the one connection went to the listening socket
        accepted.close()
        client.close()
        child.close()
    finally:
        held.close()


def test_an_answer_after_the_timeout_is_skipped_and_the_next_request_gets_its_own(tmp_path: Path) -> None:
    async def scenario() -> None:
        release = asyncio.Event()

        async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for answer in (b"first", b"second"):
                length, _ = struct.unpack("<IB", await reader.readexactly(5))
                await reader.readexactly(length)
                if answer == b"first":
                    await release.wait()  # answered only after the asker gave up
                writer.write(struct.pack("<IB", len(answer), 0) + answer)
                await writer.drain()
            writer.close()

        path = tmp_path / "slow.sock"
        server = await asyncio.start_unix_server(slow, path=str(path))
        link = PeerLink(1, path)
        try:
            with pytest.raises(UnavailableError, match=r"did not answer within 0\.2 s"):
                await link.request(POINTS, b"x", timeout=0.2)
            release.set()
            assert await link.request(POINTS, b"y", timeout=5) == (0, b"second")
        finally:
            await link.close()
            server.close()

    asyncio.run(scenario())


def test_a_link_whose_connection_was_lost_connects_again(tmp_path: Path) -> None:
    async def scenario() -> None:
        async def one_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            length, _ = struct.unpack("<IB", await reader.readexactly(5))
            payload = await reader.readexactly(length)
            writer.write(struct.pack("<IB", len(payload), 0) + payload)
            await writer.drain()
            writer.close()  # one answer per connection

        path = tmp_path / "once.sock"
        server = await asyncio.start_unix_server(one_answer, path=str(path))
        link = PeerLink(1, path)
        try:
            assert await link.request(POINTS, b"a", timeout=5) == (0, b"a")
            for _ in range(100):  # the link notices the closed connection
                if not link.up:
                    break
                await asyncio.sleep(0.02)
            assert not link.up
            assert await link.request(POINTS, b"b", timeout=5) == (0, b"b")  # on a new connection
        finally:
            await link.close()
            server.close()

    asyncio.run(scenario())
