"""Impossible values are rejected with the field named and change no series (issue 16)."""

from __future__ import annotations

from hostile import HEAP, negative_in_use
from serve_support import http, make_settings, metric, running_service, series


def test_negative_in_use_bytes_are_rejected_naming_the_field() -> None:
    with running_service(make_settings("")) as svc:
        url = f"{svc.url}/ingest?name=forged&format=pprof"
        assert http("POST", url, HEAP.read_bytes()).status == 200
        reply = http("POST", url, negative_in_use())
        assert reply.status == 400
        assert reply.json()["code"] == "invalid_argument"
        assert "sample.value" in reply.json()["message"]
        assert "negative" in reply.json()["message"]
        assert metric(svc.url, "otel_leakproc_profiles_rejected_total", reason="bad_values") == 1
        (only,) = series(svc.url, service="forged")
        assert only["profiles"] == 1
        assert only["current"] >= 0
