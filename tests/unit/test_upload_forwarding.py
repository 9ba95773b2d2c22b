"""Routing `/ingest` uploads to their series' owner before decoding (`cluster/forwarding.py`, `PeerGroup.route`
and `forward`): the name alone gives the series decoding gives, requests and errors cross the process socket
unchanged, and answers of concurrently decoded uploads come back to their own senders."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from otel_leakproc.cluster import forwarding
from otel_leakproc.cluster.forwarding import (
    decode_upload,
    encode_refusal,
    encode_upload,
    raise_refusal,
    upload_series,
)
from otel_leakproc.cluster.partitions import local_owner
from otel_leakproc.cluster.peers import MAX_FORWARDED_BODY, MAX_MESSAGE, LocalProcess, PeerGroup, Point
from otel_leakproc.errors import (
    InvalidProfileError,
    PayloadTooLargeError,
    RefusedError,
    RejectReason,
    UnavailableError,
)
from otel_leakproc.query.series import Selection
from otel_leakproc.receiver.config import IngestConfig, ServerConfig
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.ingest import (
    Credentials,
    DecoderCrashedError,
    IngestCore,
    IngestOutcome,
    OwnerUnavailableError,
)
from otel_leakproc.receiver.uploads import UploadRequest, UploadResult, process_upload
from otel_leakproc.receiver.value_caps import ValueCaps, cap_upload
from otel_leakproc.state.codec import CodecError
from otel_leakproc.telemetry import Telemetry

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "tests" / "testdata" / "corpus" / "steady_leak" / "heap" / "0000.pb.gz"
CAPS = ValueCaps(max_name_chars=512, max_label_chars=16)

NAMES = [
    "svc",
    " svc ",
    "svc{}",
    "svc{instance=pod-1}",
    "svc{pod=p-1,hostname=h-1}",
    "svc{hostname=h-1, service.instance.id=id-1, instance=i-1}",
    "svc{instance= }",
    "svc{service_name=other,instance=pod-2}",
    "checkout.api/v2{instance=pod-3,version=1.2}",
    "a-service-name-longer-than-the-cap{instance=an-instance-name-longer-than-the-cap}",
    "svc{instance=" + "x" * 40 + "}",
]


def _request(name: str, dialect: str = "ingest") -> UploadRequest:
    query = (("name", name), ("format", "pprof"))
    return UploadRequest(dialect, PROFILE.read_bytes(), "application/octet-stream", "", query, 1)  # type: ignore[arg-type]


def test_the_name_alone_gives_the_series_decoding_gives() -> None:
    for name in NAMES:
        decoded, _ = cap_upload(process_upload(_request(name), DecodeLimits()), CAPS)
        (profile,) = decoded.profiles
        assert upload_series(_request(name), CAPS) == (profile.service, profile.instance), name


def test_uploads_whose_series_the_request_does_not_name_are_decoded_where_they_arrive() -> None:
    assert upload_series(_request("svc", "push"), CAPS) is None  # the series are inside the body
    assert upload_series(_request("svc", "otlp"), CAPS) is None
    assert upload_series(UploadRequest("ingest", b"x", query=(("format", "pprof"),)), CAPS) is None
    assert upload_series(_request("  "), CAPS) is None
    for bad in ("svc{instance=pod", "svc{instance}", "svc{a=b}x"):
        with pytest.raises(InvalidProfileError, match="name"):
            process_upload(_request(bad), DecodeLimits())  # the error it gets where it arrived
        assert upload_series(_request(bad), CAPS) is None
    # The first `name` wins, as for the decoder.
    request = UploadRequest("ingest", b"", query=(("name", "a{instance=1}"), ("name", "b{instance=2}")))
    assert upload_series(request, CAPS) == ("a", "1")


def test_a_forwarded_request_crosses_unchanged() -> None:
    request = UploadRequest(
        "ingest",
        PROFILE.read_bytes(),
        'multipart/form-data; boundary="b"',
        "gzip",
        (("name", "svc{instance=pöd}"), ("from", "now-1h"), ("name", "second")),
        1_790_000_000_123_456_789,
    )
    assert decode_upload(encode_upload("tenant-ä", request)) == ("tenant-ä", request)
    for broken in (b"", b"\x05\x00\x00\x00", encode_upload("t", request)[:20], b"\x02\x00\x00\x00" + bytes(8) + b"[]"):
        with pytest.raises(CodecError, match="forwarded upload"):
            decode_upload(broken)


def test_the_owners_errors_are_raised_again_as_the_owner_raised_them() -> None:
    errors: list[InvalidProfileError | RefusedError | DecoderCrashedError] = [
        InvalidProfileError("body: not gzip (bad header)", RejectReason.BAD_GZIP),
        InvalidProfileError("sample[3]: negative value", RejectReason.BAD_VALUES),
        PayloadTooLargeError("body: inflates beyond 1024 bytes"),
        RefusedError("decode queue is full (64 uploads in progress)", 3.0),
        UnavailableError("state cannot be written (disk full)", 5.0),
        DecoderCrashedError("a decoder worker died while decoding this upload"),
    ]
    for error in errors:
        with pytest.raises(type(error)) as raised:
            raise_refusal(encode_refusal(error))
        assert type(raised.value) is type(error)
        assert str(raised.value) == str(error)
        if isinstance(error, InvalidProfileError):
            assert isinstance(raised.value, InvalidProfileError)
            assert raised.value.reason is error.reason
        if isinstance(error, RefusedError):
            assert isinstance(raised.value, RefusedError)
            assert raised.value.retry_after == error.retry_after


class _Decoder:
    """The owner's side of forwarded uploads: answers after a delay the upload's `delay` query asks for,
    so later requests finish first; a `bad` one fails as a bad body does."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def __call__(self, tenant: str, request: UploadRequest) -> IngestOutcome:
        query = dict(request.query)
        await asyncio.sleep(float(query.get("delay", "0")))
        self.seen.append((tenant, query["name"]))
        if "bad" in query:
            raise InvalidProfileError(f"body: bad upload {query['name']}", RejectReason.BAD_PROTOBUF)
        return IngestOutcome(tenant, len(request.body), (query["name"],))


def _ignore(points: Sequence[Point], records: object = None) -> None:
    raise AssertionError("a forwarded upload must not cross as point records")


class _Nothing:
    async def series(self, selection: Selection) -> list[dict[str, object]]:
        return []


async def _all_up(groups: Sequence[PeerGroup], seconds: float = 5.0) -> None:
    """Wait until every group is connected to every other."""
    for _ in range(int(seconds / 0.05)):
        if all(g.all_up() for g in groups):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"peer groups not all up after {seconds} s")


def test_concurrent_forwards_get_their_own_answers_and_a_gone_owner_gives_503(tmp_path: Path) -> None:
    async def scenario() -> None:
        groups = [PeerGroup(LocalProcess(i, 2, tmp_path), _ignore, _Nothing(), lambda: b"", CAPS) for i in range(2)]
        decoder = _Decoder()
        groups[1].uploads = decoder
        for group in groups:
            await group.start()
        try:
            await _all_up(groups)
            names = [f"svc-{i}" for i in range(40)]
            theirs = [n for n in names if local_owner("acme", n, "", 2) == 1]
            mine = [n for n in names if local_owner("acme", n, "", 2) == 0]
            assert groups[0].route("acme", UploadRequest("ingest", b"", query=(("name", theirs[0]),))) == 1
            assert groups[0].route("acme", UploadRequest("ingest", b"", query=(("name", mine[0]),))) is None
            assert groups[0].route("acme", UploadRequest("push", b"", query=(("name", theirs[0]),))) is None
            # A body too large for one message on the socket is decoded where it arrived (its point crosses).
            huge = UploadRequest("ingest", bytes(MAX_FORWARDED_BODY + 1), query=(("name", theirs[0]),))
            assert groups[0].route("acme", huge) is None
            assert len(encode_upload("acme", replace(huge, body=b""))) + MAX_FORWARDED_BODY <= MAX_MESSAGE
            # The first requests take longest: answers must still reach their own senders.
            requests = [
                UploadRequest("ingest", b"x" * i, query=(("name", n), ("delay", str(0.01 * (10 - i)))))
                for i, n in enumerate(theirs[:10])
            ]
            bad = UploadRequest("ingest", b"", query=(("name", theirs[1]), ("bad", "1"), ("delay", "0.05")))
            outcomes = await asyncio.gather(
                *(groups[0].forward(1, "acme", r) for r in [*requests, bad]), return_exceptions=True
            )
            for i, outcome in enumerate(outcomes[:-1]):
                assert outcome == IngestOutcome("acme", i, (theirs[i],))
            assert isinstance(outcomes[-1], InvalidProfileError)
            assert str(outcomes[-1]) == f"body: bad upload {theirs[1]}"
            assert outcomes[-1].reason is RejectReason.BAD_PROTOBUF
            assert sorted(decoder.seen) == sorted([("acme", n) for n in theirs[:10]] + [("acme", theirs[1])])
            # A gone owner: 503 at once, not a hang.
            await groups[1].stop()
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(UnavailableError, match="process 1"):
                await groups[0].forward(1, "acme", requests[0])
            assert loop.time() - start < 2.0
        finally:
            for group in groups:
                await group.stop()

    asyncio.run(scenario())


def test_an_upload_whose_owner_is_gone_is_refused_503_and_counted_where_it_arrived(tmp_path: Path) -> None:
    async def scenario() -> None:
        # Process 0 of 2 with a real ingest core (decoder workers and all); process 1 never started.
        group = PeerGroup(LocalProcess(0, 2, tmp_path), _ignore, _Nothing(), lambda: b"", CAPS)
        telemetry = Telemetry()
        kept: list[UploadResult] = []
        core = IngestCore(
            ServerConfig(),
            IngestConfig(workers=1),
            DecodeLimits(),
            lambda tenant, request, result: kept.append(result),
            telemetry,
            CAPS,
            router=group,
        )
        group.uploads = core.decode_forwarded
        await core.start()
        await group.start()
        try:
            names = [f"svc-{i}" for i in range(40)]
            tenant = ServerConfig().auth.default_tenant  # the tenant of an upload without credentials
            theirs = next(n for n in names if local_owner(tenant, n, "pod", 2) == 1)
            mine = next(n for n in names if local_owner(tenant, n, "pod", 2) == 0)
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(OwnerUnavailableError, match="process 1 is not reachable"):
                await core.ingest(Credentials(), _request(f"{theirs}{{instance=pod}}"))
            assert loop.time() - start < 2.0
            assert telemetry.registry.get_sample_value("otel_leakproc_uploads_forwarded_total") == 1
            rejected = "otel_leakproc_profiles_rejected_total"
            assert telemetry.registry.get_sample_value(rejected, {"reason": "owner_unavailable"}) == 1
            assert core.in_flight == 0  # its admission was given back
            # Its own series' uploads are decoded and kept here as before.
            outcome = await core.ingest(Credentials(), _request(f"{mine}{{instance=pod}}"))
            assert outcome.accepted == 1
            assert [p.service for r in kept for p in r.profiles] == [mine]
            assert telemetry.registry.get_sample_value("otel_leakproc_uploads_forwarded_total") == 1
        finally:
            await group.stop()
            core.close()

    asyncio.run(scenario())


def test_a_body_a_worker_decodes_is_decoded_where_it_arrived_and_its_result_kept_by_the_owner(
    tmp_path: Path,
) -> None:
    """Bodies over `ingest.inline_max_bytes` are not forwarded: the receiving process decodes them in its
    worker and only the pickled result crosses (DECODED requests); smaller ones still cross as received."""

    async def scenario() -> None:
        groups = [PeerGroup(LocalProcess(i, 2, tmp_path), _ignore, _Nothing(), lambda: b"", CAPS) for i in range(2)]
        telemetry = [Telemetry(), Telemetry()]
        kept: list[list[UploadResult]] = [[], []]
        cores = [
            IngestCore(
                ServerConfig(),
                IngestConfig(workers=1, inline_max_bytes=512),
                DecodeLimits(),
                lambda tenant, request, result, i=i: kept[i].append(result),  # type: ignore[misc]
                telemetry[i],
                CAPS,
                router=groups[i],
            )
            for i in range(2)
        ]
        for group, core in zip(groups, cores, strict=True):
            group.uploads = core.decode_forwarded
            group.decoded = core.keep_decoded
            await core.start()
            await group.start()
        try:
            await _all_up(groups)
            tenant = ServerConfig().auth.default_tenant
            theirs = [n for n in (f"svc-{i}" for i in range(40)) if local_owner(tenant, n, "pod", 2) == 1]
            assert len(PROFILE.read_bytes()) > 512
            outcomes = await asyncio.gather(
                *(cores[0].ingest(Credentials(), _request(f"{n}{{instance=pod}}")) for n in theirs[:4])
            )
            assert [o.accepted for o in outcomes] == [1, 1, 1, 1]
            assert kept[0] == []
            assert sorted(p.service for r in kept[1] for p in r.profiles) == sorted(theirs[:4])
            summaries = [p.summary for r in kept[1] for p in r.profiles]
            assert all(len(s.sites) > 0 and s.total > 0 for s in summaries)

            def sample(i: int, name: str, labels: dict[str, str] | None = None) -> float | None:
                return telemetry[i].registry.get_sample_value(name, labels or {})

            # Decoded by process 0's worker, counted as received by the owner, forwarded from 0.
            assert sample(0, "otel_leakproc_decode_seconds_count") == 4
            assert sample(1, "otel_leakproc_decode_seconds_count") == 0
            received = "otel_leakproc_profiles_received_total"
            assert sample(1, received, {"tenant": tenant, "dialect": "ingest"}) == 4
            assert sample(0, received, {"tenant": tenant, "dialect": "ingest"}) is None
            assert sample(0, "otel_leakproc_uploads_forwarded_total") == 4
            # A bad large body is refused where it was decoded; nothing reaches the owner.
            bad = replace(_request(f"{theirs[5]}{{instance=pod}}"), body=b"\x1f\x8b" + bytes(1000))
            with pytest.raises(InvalidProfileError, match="gzip"):
                await cores[0].ingest(Credentials(), bad)
            rejected = "otel_leakproc_profiles_rejected_total"
            assert sample(0, rejected, {"reason": "bad_gzip"}) == 1
            assert len(kept[1]) == 4
            # A small body (decoded on an event loop) still crosses as received and is decoded by its owner.
            small = replace(bad, body=b"\x1f\x8bnot gzip")
            with pytest.raises(InvalidProfileError, match="gzip"):
                await cores[0].ingest(Credentials(), small)
            assert sample(1, rejected, {"reason": "bad_gzip"}) == 1
            assert sample(0, rejected, {"reason": "bad_gzip"}) == 1
            assert all(core.in_flight == 0 for core in cores)
        finally:
            for group, core in zip(groups, cores, strict=True):
                await group.stop()
                core.close()

    asyncio.run(scenario())


def test_the_routing_cache_of_names_stays_bounded() -> None:
    for i in range(forwarding._SERIES_CACHE_SIZE + 10):
        assert upload_series(UploadRequest("ingest", b"", query=(("name", f"svc-{i}{{instance=p}}"),)), CAPS)
    assert len(forwarding._SERIES_CACHE) <= forwarding._SERIES_CACHE_SIZE
    long = "s" * 5000 + "{instance=pod}"
    assert upload_series(UploadRequest("ingest", b"", query=(("name", long),)), CAPS) == ("s" * 13 + "...", "pod")
    assert all(len(name) <= forwarding._CACHED_NAME_CHARS for name, _ in forwarding._SERIES_CACHE)
