"""The status page (`web/`) rendered by headless Chromium on real analysed series.

The data is real: the bundled corpus series, decoded as `analyze` decodes them (a version folder names the
`service.version` of its profiles), fed in time order through a real `SeriesTable` as the service feeds
uploads, and turned into `/api/v1/series` objects by the service's own `series_object`. A small aiohttp
app in a background thread serves the page's static files and that JSON, under several path prefixes (one
per scenario, which also proves the page's URLs are relative); Chromium loads the page and the assertions
read the DOM after the page's JavaScript ran.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from browser import Element, dump_dom, parse_html, screenshot

from otel_leakproc.analyze import collect_files, load_series, split_version
from otel_leakproc.config import load_settings
from otel_leakproc.evaluation import corpus_time
from otel_leakproc.model import ProfileSummary, SeriesKey
from otel_leakproc.processor.state import SeriesTable
from otel_leakproc.query.series import series_object
from otel_leakproc.query.web import static_dir

CORPUS = Path(__file__).parent.parent / "testdata" / "corpus"
UPLOAD_EXAMPLE = "curl -g --data-binary @heap.pb.gz 'localhost:4040/ingest?name=checkout{instance=pod-1}&format=pprof'"
NASTY_FUNCTION = 'main.(*cache[K <script>alert("x")</script>]).get&lt;<b>'
NASTY_FILE = "<img src=x onerror=\"document.title='pwned'\">.go"
NASTY_EVIDENCE_KEY = "<svg onload=\"document.title='pwned'\">"

# (corpus scenario, tenant, service, instance, extra resource attributes)
SCENARIOS = [
    ("steady_leak", "acme", "checkout", "checkout-7d9f-pod-1", {"k8s.namespace.name": "shop"}),
    ("warmup_plateau", "acme", "checkout", "checkout-7d9f-pod-2", {"k8s.namespace.name": "shop"}),
    ("goroutine_leak", "acme", "quotes", "quotes-0", {}),
    ("lock_contention", "", "inventory", "inventory-1", {"service.namespace": "supply"}),
    ("restart", "", "catalog", "", {}),
    # Deploys of a leaking v1.4.1 (tests/testdata/versions): one fixed the leak, one did not.
    ("../versions/checkout_fixed", "acme", "payments", "payments-0", {}),
    ("../versions/checkout_unfixed", "acme", "payments", "payments-1", {}),
]


def uploads(scenario: str) -> list[tuple[ProfileSummary, str | None]]:
    """A scenario's profiles in time order, each with the version its version folder names (None without
    one), decoded by analyze's loader: what a service of that version would have uploaded."""
    limits = load_settings(None).decode.to_limits()
    out: list[tuple[ProfileSummary, str | None]] = []
    for (_, label), files in collect_files([str(CORPUS / scenario)]).items():
        _, version = split_version(label)
        by_kind, skipped = load_series(files, limits, None, corpus_time)
        assert not skipped, skipped
        out += [(summary, version) for summaries in by_kind.values() for summary in summaries]
    out.sort(key=lambda entry: entry[0].time_nanos)  # stable: a version's own order is kept on equal times
    return out


@pytest.fixture(scope="module")
def real_series() -> list[dict[str, Any]]:
    """Every scenario's series as `/api/v1/series` serves them: the service's table and `series_object`."""
    settings = load_settings(None)
    table = SeriesTable(settings.processor, settings.state.max_series, settings.state.max_series_per_tenant)
    for scenario, tenant, service, instance, extra in SCENARIOS:
        resource = {"service.name": service, **({"service.instance.id": instance} if instance else {}), **extra}
        for summary, version in uploads(scenario):
            key = SeriesKey(tenant, service, instance, summary.kind)
            table.update(key, {**resource, "service.version": version} if version else resource, summary)
    return [series_object(tracked) for tracked in table]


def by_id(series: list[dict[str, Any]], ident: str) -> dict[str, Any]:
    found = [s for s in series if s["id"] == ident]
    assert len(found) == 1, (ident, [s["id"] for s in series])
    return found[0]


STEADY = "acme/checkout/checkout-7d9f-pod-1/heap"
PLATEAU = "acme/checkout/checkout-7d9f-pod-2/heap"
GOROUTINES = "acme/quotes/quotes-0/goroutine"
CHARTED = (STEADY, PLATEAU, GOROUTINES)


@pytest.fixture(scope="module")
def payload(real_series: list[dict[str, Any]]) -> dict[str, Any]:
    """The real series, with HTML-special text injected into the healthy series (names are untrusted)."""
    series = copy.deepcopy(real_series)
    plateau = by_id(series, PLATEAU)
    plateau["top_growers"].append(
        {
            "function": NASTY_FUNCTION,
            "file": NASTY_FILE,
            "line": 7,
            "growth_per_hour": 12.0,
            "share": 0.0,
            "state": None,
        }
    )
    plateau["evidence"][NASTY_EVIDENCE_KEY] = "<script>document.title='pwned'</script>"
    # The API's order is not the page's order: put the healthy series first on the wire.
    series.sort(key=lambda s: s["status"] != "ok")
    return {"series": series, "targets": TARGETS}


# Scrape targets as `/api/v1/series` lists them (docs/scrape.md): a dump kept for the leaking instance (one
# group's function is hostile text), a failed dump for another, none for the rest.
TARGETS: list[dict[str, Any]] = [
    {
        "id": "static/checkout/checkout-7d9f-pod-1",
        "service": "checkout",
        "instance": "checkout-7d9f-pod-1",
        "dump": {
            "time": 1795723950.2,
            "trigger": "leak.confirmed",
            "kind": "heap",
            "goroutines": 44,
            "groups_total": 6,
            "max_wait_minutes": 3,
            "groups": [
                {
                    "count": 37,
                    "state": "sync.RWMutex.RLock",
                    "max_wait_minutes": 3,
                    "leaked": 0,
                    "function": "main.(*LockedStockMap).Get",
                    "creator": "main.main",
                    "stack": ["sync.(*RWMutex).RLock sync/rwmutex.go:74", "main.(*LockedStockMap).Get main.go:80"],
                },
                {"count": 2, "state": "IO wait", "function": NASTY_FUNCTION, "creator": "", "stack": []},
            ],
        },
    },
    {
        "id": "static/quotes/quotes-0",
        "service": "quotes",
        "instance": "quotes-0",
        "dump": {"time": 1795723950.2, "trigger": "goroutine_leak.suspected", "error": "GET x: timeout"},
    },
    {
        "id": "static/checkout/checkout-7d9f-pod-2",
        "service": "checkout",
        "instance": "checkout-7d9f-pod-2",
        "dump": None,
    },
]


# A test-only hook (served with the page under /scroll/): scroll after the first render, read after the next.
SCROLL_HOOK = """
document.addEventListener("leakproc:rendered", (e) => {
  const root = document.documentElement;
  if (e.detail.refreshes === 1) {
    window.scrollTo(0, 900);
    root.setAttribute("data-scroll-before", String(Math.round(window.scrollY)));
  } else if (e.detail.refreshes === 2) {
    root.setAttribute("data-scroll-after", String(Math.round(window.scrollY)));
  }
});
"""


class PageServer:
    """The page's static files and a canned `/api/v1/series` per path prefix, on 127.0.0.1 port 0."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload
        self.hits: dict[str, int] = {}
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="page-server", daemon=True)

    def url(self, prefix: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{prefix + '/' if prefix else ''}"

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.index)
        app.router.add_get("/static/{name}", self.static)
        app.router.add_get("/api/v1/series", self.series)
        app.router.add_get("/{prefix}/", self.index)
        app.router.add_get("/{prefix}/static/{name}", self.static)
        app.router.add_get("/{prefix}/api/v1/series", self.series)
        return app

    async def index(self, request: web.Request) -> web.Response:
        html = (static_dir() / "index.html").read_text(encoding="utf-8")
        if request.match_info.get("prefix") == "scroll":
            html = html.replace("</head>", '<script src="static/testhook.js" defer></script>\n</head>')
        return web.Response(text=html, content_type="text/html")

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == "testhook.js" and request.match_info.get("prefix") == "scroll":
            return web.Response(text=SCROLL_HOOK, content_type="text/javascript")
        if name not in {"app.js", "style.css"}:
            raise web.HTTPNotFound()
        return web.FileResponse(static_dir() / name)

    async def series(self, request: web.Request) -> web.Response:
        prefix = request.match_info.get("prefix", "")
        self.hits[prefix] = self.hits.get(prefix, 0) + 1
        if prefix == "empty":
            return web.json_response({"series": []})
        if prefix == "broken" or (prefix == "flaky" and self.hits[prefix] > 1):
            return web.json_response({"code": "unavailable", "message": "state store is not ready"}, status=503)
        return web.json_response(self.payload)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)

    async def _start(self) -> None:
        self._runner = web.AppRunner(self._app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


@pytest.fixture(scope="module")
def server(payload: dict[str, Any]) -> Iterator[PageServer]:
    srv = PageServer(payload)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def page(server: PageServer) -> Element:
    return parse_html(dump_dom(server.url("data")))


def articles(doc: Element) -> list[Element]:
    return doc.find_all("article", cls="series")


def article(doc: Element, ident: str) -> Element:
    found = [a for a in articles(doc) if a.attrs.get("data-id") == ident]
    assert len(found) == 1, (ident, [a.attrs.get("data-id") for a in articles(doc)])
    return found[0]


def need(node: Element | None) -> Element:
    assert node is not None
    return node


def path_points(d: str) -> int:
    return sum(1 for token in d.replace(",", " ").split() if token[:1] in {"M", "L"})


def test_real_data_has_the_expected_verdicts(real_series: list[dict[str, Any]]) -> None:
    """Guard for the fixtures: the corpus gives a confirmed heap leak and a healthy plateau."""
    assert by_id(real_series, STEADY)["status"] == "confirmed"
    assert by_id(real_series, PLATEAU)["status"] == "ok"
    assert by_id(real_series, GOROUTINES)["status"] in {"confirmed", "suspected"}
    # The timeline is the series' current history: one point per profile for these (no restart; a contention
    # series has one point fewer, the rate between two profiles; a restart starts a new history).
    assert all(len(by_id(real_series, i)["timeline"]) == by_id(real_series, i)["profiles"] for i in CHARTED)


def test_flagged_series_first_then_ok_then_insufficient(page: Element, payload: dict[str, Any]) -> None:
    arts = articles(page)
    assert len(arts) == len(payload["series"])
    statuses = [a.attrs["data-status"] for a in arts]
    assert statuses[0] in {"confirmed", "suspected"}
    # within each service, flagged series come before ok, ok before insufficient_data
    rank = {"confirmed": 0, "suspected": 1, "ok": 2, "insufficient_data": 3}
    for section in page.find_all("section", cls="service"):
        ranks = [rank[a.attrs["data-status"]] for a in section.find_all("article", cls="series")]
        assert ranks == sorted(ranks), section.attrs
    # services with a flagged series come before services without one
    worst = [
        min(rank[a.attrs["data-status"]] for a in s.find_all("article", cls="series"))
        for s in page.find_all("section", cls="service")
    ]
    assert worst == sorted(worst)
    ids = [a.attrs["data-id"] for a in arts]
    assert ids.index(STEADY) < ids.index(PLATEAU)
    # grouped: tenant/service sections, then instances
    checkout = page.find("section", cls="service", attrs={"data-service": "checkout", "data-tenant": "acme"})
    assert checkout is not None
    instances = [d.attrs["data-instance"] for d in checkout.find_all("div", cls="instance")]
    assert instances == ["checkout-7d9f-pod-1", "checkout-7d9f-pod-2"]


def test_leaking_series_shows_status_numbers_and_top_grower(page: Element, payload: dict[str, Any]) -> None:
    data = by_id(payload["series"], STEADY)
    art = article(page, STEADY)
    badge = art.find("span", cls="badge")
    assert badge is not None
    assert "Confirmed" in badge.text()  # status in words, not colour only
    stats = {dt.text(): dd.text() for dt, dd in zip(art.find_all("dt"), art.find_all("dd"), strict=False)}
    assert stats["Current"].endswith("MiB")
    assert stats["Current"] == f"{data['current'] / 2**20:.1f} MiB"
    assert stats["Growth"].startswith("+")
    assert stats["Growth"].endswith("MiB per hour")
    assert stats["Restarts"] == "0"
    assert "UTC" in stats["Flagged since"]
    table = art.find("table", cls="growers")
    assert table is not None
    assert table.find("caption") is not None
    assert [th.attrs.get("scope") for th in table.find_all("th")] == ["col"] * len(table.find_all("th"))
    first_row = need(need(table.find("tbody")).find("tr"))
    cells = [td.text() for td in first_row.find_all("td")]
    top = data["top_growers"][0]
    assert top["function"] == "main.(*orderHistoryArchive).appendOrderSnapshot"
    assert cells[0] == top["function"]
    assert cells[1] == f"{top['file']}:{top['line']}"
    assert cells[-1] == f"{round(top['share'] * 100)}%"
    fill = first_row.find("span", cls="bar-fill")
    assert fill is not None
    assert "width:" in fill.attrs["style"]


def test_chart_has_one_point_per_profile_and_marks_the_flag(page: Element, payload: dict[str, Any]) -> None:
    for ident in CHARTED:
        data = by_id(payload["series"], ident)
        art = article(page, ident)
        svg = art.find("svg")
        assert svg is not None
        assert svg.attrs.get("role") == "img"
        assert svg.find("title") is not None
        line = svg.find("path", cls="line")
        assert line is not None
        assert path_points(line.attrs["d"]) == len(data["timeline"]) == data["profiles"]
        marker = svg.find("g", cls="flag-marker")
        if data["first_flagged_at"] is None:
            assert marker is None
        else:
            assert marker is not None
            assert marker.attrs["data-time"] == data["first_flagged_at"]
            assert "flagged" in marker.text()


def test_healthy_series_shows_ok_and_goroutines_in_their_unit(page: Element) -> None:
    art = article(page, PLATEAU)
    assert art.attrs["data-status"] == "ok"
    assert "OK" in need(art.find("span", cls="badge")).text()
    goroutines = article(page, GOROUTINES)
    head = goroutines.find("summary", cls="series-head")
    assert head is not None
    assert "goroutines" in head.text()
    state_cell = goroutines.find("td", cls="state")
    assert state_cell is not None
    assert state_cell.text() == "chan receive"
    mutex = article(page, "/inventory/inventory-1/mutex")
    assert "ms/s" in need(mutex.find("summary", cls="series-head")).text()
    catalog = article(page, "/catalog//heap")
    assert catalog.attrs["data-status"] == "insufficient_data"
    assert "warm-up" in need(catalog.find("p", cls="reason")).text()


def test_a_deploy_shows_growth_before_and_after_the_new_version(page: Element, payload: dict[str, Any]) -> None:
    fixed = by_id(payload["series"], "acme/payments/payments-0/heap")
    before = fixed["fix"]["before"]["growth_per_hour"] / 2**20
    text = need(article(page, "acme/payments/payments-0/heap").find("p", cls="fix")).text()
    assert text.startswith(f"Fixed: growth {before:.1f} MiB/h before v1.4.2, 0 B/h after")
    assert "(both from start-up to 20 min)" in text
    unfixed = need(article(page, "acme/payments/payments-1/heap").find("p", cls="fix"))
    assert unfixed.attrs["data-verdict"] == "not_fixed"
    assert unfixed.text().startswith("Not fixed: growth ")
    assert article(page, "acme/payments/payments-1/heap").attrs["data-status"] in {"suspected", "confirmed"}
    assert article(page, STEADY).find("p", cls="fix") is None  # no deploy, no fix line
    # The verdict shows in the series head too, folded or not.
    fixed_head = need(article(page, "acme/payments/payments-0/heap").find("summary", cls="series-head"))
    assert "fixed in v1.4.2" in fixed_head.text()
    unfixed_head = need(article(page, "acme/payments/payments-1/heap").find("summary", cls="series-head"))
    assert "v1.4.2 did not fix it" in unfixed_head.text()


def test_untrusted_strings_are_escaped(server: PageServer, page: Element) -> None:
    dom = dump_dom(server.url("data"))
    assert "&lt;script&gt;alert(" in dom
    doc = parse_html(dom)
    # the only scripts are the page's own; no injected element became markup
    assert [s.attrs.get("src") for s in doc.find_all("script")] == ["static/app.js"]
    assert doc.find("img") is None
    assert doc.find("b") is None
    assert all(svg.find("svg") is None for svg in doc.find_all("svg"))
    title = doc.find("title")
    assert title is not None
    assert title.text() == "otel-leakproc status"
    functions = [c.text() for c in article(doc, PLATEAU).find_all("td", cls="fn")]
    assert " ".join(NASTY_FUNCTION.split()) in functions
    locations = [c.text() for c in article(doc, PLATEAU).find_all("td", cls="loc")]
    assert f"{NASTY_FILE}:7" in locations
    keys = [dt.text() for dt in article(doc, PLATEAU).find_all("dt")]
    assert NASTY_EVIDENCE_KEY in keys


def instance(doc: Element, name: str) -> Element:
    found = [d for d in doc.find_all("div", cls="instance") if d.attrs.get("data-instance") == name]
    assert len(found) == 1, name
    return found[0]


def test_goroutine_dump_of_a_scraped_target_is_shown_under_its_instance(page: Element) -> None:
    box = need(instance(page, "checkout-7d9f-pod-1").find("details", cls="dump"))
    assert "open" in box.attrs  # the instance has a flagged series
    assert "after leak.confirmed: 44 goroutines, 6 groups" in need(box.find("summary")).text()
    rows = [[cell.text() for cell in row.find_all("td")] for row in box.find_all("tr")[1:]]
    assert rows[0] == ["37", "sync.RWMutex.RLock", "main.(*LockedStockMap).Get", "main.main", "3 min"]
    assert rows[1][2] == " ".join(NASTY_FUNCTION.split())  # text, not markup
    assert rows[1][3] == "\u2014"
    failed = need(instance(page, "quotes-0").find("p", cls="dump-error"))
    assert failed.text() == "Goroutine dump after goroutine_leak.suspected failed: GET x: timeout"
    assert instance(page, "checkout-7d9f-pod-2").find(cls="dump") is None


def test_permalink_opens_a_folded_series(server: PageServer, page: Element) -> None:
    folded = need(article(page, PLATEAU).find("details", cls="series-details"))
    assert "open" not in folded.attrs  # ok series are folded by default
    anchor = article(page, PLATEAU).attrs["id"]
    doc = parse_html(dump_dom(server.url("data") + "#" + anchor))
    assert "open" in need(article(doc, PLATEAU).find("details", cls="series-details")).attrs


def test_empty_state_tells_how_to_upload(server: PageServer) -> None:
    doc = parse_html(dump_dom(server.url("empty")))
    assert not articles(doc)
    empty = doc.find("section", cls="empty")
    assert empty is not None
    assert "No profiles received yet" in empty.text()
    code = empty.find("pre")
    assert code is not None
    assert code.text() == UPLOAD_EXAMPLE
    banner = doc.get_by_id("banner")
    assert banner is not None
    assert "hidden" in banner.attrs


def test_api_error_shows_a_banner(server: PageServer) -> None:
    doc = parse_html(dump_dom(server.url("broken")))
    banner = doc.get_by_id("banner")
    assert banner is not None
    assert "hidden" not in banner.attrs
    assert banner.attrs.get("role") == "alert"
    assert "HTTP 503" in banner.text()
    assert "state store is not ready" in banner.text()
    assert not articles(doc)


def test_refresh_failure_keeps_the_last_data_and_shows_the_banner(server: PageServer) -> None:
    # 20 s of virtual time: the first load succeeds, the 15 s refresh gets a 503.
    doc = parse_html(dump_dom(server.url("flaky"), virtual_time_budget_ms=20000))
    assert server.hits["flaky"] >= 2
    banner = doc.get_by_id("banner")
    assert banner is not None
    assert "hidden" not in banner.attrs
    assert "HTTP 503" in banner.text()
    assert "Showing data from" in banner.text()
    assert articles(doc), "the data of the last good refresh stays on screen"
    updated = doc.get_by_id("updated")
    assert updated is not None
    assert "Stale since" in updated.text()


def test_auto_refresh_keeps_the_scroll_position(server: PageServer) -> None:
    doc = parse_html(dump_dom(server.url("scroll"), virtual_time_budget_ms=20000, window_size=(1280, 800)))
    root = doc.find("html")
    assert root is not None
    assert int(root.attrs["data-refreshes"]) >= 2
    assert server.hits["scroll"] >= 2
    before = int(root.attrs["data-scroll-before"])
    assert before > 0
    assert int(root.attrs["data-scroll-after"]) == before


def test_screenshot(server: PageServer, tmp_path: Path) -> None:
    out = screenshot(server.url(), tmp_path / "status.png", window_size=(1280, 1600))
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 20_000  # a rendered page, not a blank viewport
    keep = os.environ.get("LEAKPROC_SCREENSHOT")
    if keep:
        Path(keep).write_bytes(data)


def test_api_objects_serialise(payload: dict[str, Any]) -> None:
    # what the page reads is plain JSON (no NaN/Infinity, which JSON.parse rejects)
    json.loads(json.dumps(payload["series"], allow_nan=False))
