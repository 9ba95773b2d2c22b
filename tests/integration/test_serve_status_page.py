"""The status page of the real service, rendered in headless Chromium after a leaking series was pushed."""

from __future__ import annotations

from pathlib import Path

from browser import dump_dom, parse_html, screenshot
from serve_support import STEADY_LEAK, http, make_settings, running_service

LEAKER = "main.(*orderHistoryArchive).appendOrderSnapshot"


def test_status_page_of_the_running_service_names_the_leak(tmp_path: Path) -> None:
    with running_service(make_settings("")) as svc:
        for path in sorted(STEADY_LEAK.glob("*.pb.gz")):
            reply = http("POST", f"{svc.url}/ingest?name=checkout{{instance=pod-1}}&format=pprof", path.read_bytes())
            assert reply.status == 200
        healthy = (STEADY_LEAK / "0000.pb.gz").read_bytes()
        assert http("POST", f"{svc.url}/ingest?name=quotes{{instance=q-1}}&format=pprof", healthy).status == 200
        doc = parse_html(dump_dom(f"{svc.url}/"))
        cards = {a.attrs.get("data-id"): a for a in doc.find_all("article", cls="series")}
        assert set(cards) == {"default/checkout/pod-1/heap", "default/quotes/q-1/heap"}
        leak = cards["default/checkout/pod-1/heap"]
        assert leak.attrs["data-status"] == "confirmed"
        functions = [td.text() for td in leak.find_all("td", cls="fn")]
        assert functions[0] == LEAKER
        line = leak.find("path", cls="line")
        assert line is not None
        assert line.attrs["d"].count("L") + 1 == 60  # one point per profile of the series
        assert cards["default/quotes/q-1/heap"].attrs["data-status"] == "insufficient_data"
        shot = screenshot(f"{svc.url}/", tmp_path / "status.png")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
