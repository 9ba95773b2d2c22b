"""With auth on, every endpoint but the probes follows it (issue 16): the status page works in a browser
with basic auth (headless Chromium), /metrics needs a credential that sees every tenant, and every 401
answers `unauthenticated` with `WWW-Authenticate`."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from browser import dump_dom, parse_html
from serve_support import STEADY_LEAK, RunningService, http, make_settings, running_service

AUTH = {
    "credentials": [
        {"tenant": "acme", "username": "acme", "password": "pw1"},
        {"tenant": "ops", "username": "ops", "password": "pw2", "allowed_tenants": ["*"]},
    ]
}
ACME = {"Authorization": "Basic " + base64.b64encode(b"acme:pw1").decode()}
OPS = {"Authorization": "Basic " + base64.b64encode(b"ops:pw2").decode()}


@pytest.fixture(scope="module")
def svc() -> RunningService:
    with running_service(make_settings("", server={"auth": AUTH})) as running:
        profile = (STEADY_LEAK / "0000.pb.gz").read_bytes()
        assert http("POST", f"{running.url}/ingest?name=checkout&format=pprof", profile, ACME).status == 200
        yield running  # type: ignore[misc]


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/metrics", "/api/v1/series", "/ingest?name=x"])
def test_every_endpoint_answers_401_unauthenticated_with_www_authenticate(svc: RunningService, path: str) -> None:
    method = "POST" if path.startswith("/ingest") else "GET"
    for headers in ({}, {"Authorization": "Basic " + base64.b64encode(b"acme:wrong").decode()}):
        reply = http(method, svc.url + path, b"" if method == "POST" else None, headers)
        assert reply.status == 401, (path, reply.body)
        assert reply.json()["code"] == "unauthenticated"
        assert reply.headers["www-authenticate"].startswith('Basic realm="otel-leakproc"')


def test_probes_stay_open(svc: RunningService) -> None:
    assert http("GET", f"{svc.url}/livez").status == 200
    assert http("GET", f"{svc.url}/readyz").status == 200


def test_metrics_need_a_credential_that_sees_every_tenant(svc: RunningService) -> None:
    denied = http("GET", f"{svc.url}/metrics", headers=ACME)
    assert denied.status == 403
    assert denied.json()["code"] == "permission_denied"
    allowed = http("GET", f"{svc.url}/metrics", headers=OPS)
    assert allowed.status == 200
    assert b'otel_leakproc_profiles_received_total{dialect="ingest",tenant="acme"}' in allowed.body


def test_the_status_page_works_in_a_browser_with_basic_auth(svc: RunningService, tmp_path: Path) -> None:
    # Chromium answers the 401 challenge of the page with the URL's credentials, then the page's own
    # fetch of the API goes out with the credentials the browser holds for this origin.
    url = svc.url.replace("http://", "http://acme:pw1@") + "/"
    doc = parse_html(dump_dom(url))
    cards = {a.attrs.get("data-id") for a in doc.find_all("article", cls="series")}
    assert cards == {"acme/checkout//heap"}, dump_dom(url)[:2000]
