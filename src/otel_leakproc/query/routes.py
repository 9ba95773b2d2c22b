"""The read side's HTTP routes: `GET /api/v1/series`, the status page at `GET /` and its assets at
`GET /static/<name>`.

With auth on, each needs valid credentials (`AuthError`, which the HTTP server's error middleware answers
401 with `WWW-Authenticate`, so a browser asks for them); the API then lists only the tenants those
credentials may see (`visible_tenants`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from otel_leakproc.query.series import Selection, SeriesReader
from otel_leakproc.receiver.auth import visible_tenants
from otel_leakproc.receiver.config import AuthConfig

# Only the page's own assets, by exact name: nothing else in the package folder is served.
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}


class ScrapeTargets(Protocol):
    """Per-target scrape health for the API's `targets` list (`receiver/scrape/manager.py`)."""

    tenant: str

    def health(self) -> list[dict[str, Any]]: ...


class QueryRoutes:
    """The read side's handlers over a `SeriesReader`; `add_to(app)` mounts them."""

    def __init__(
        self,
        auth: AuthConfig,
        reader: SeriesReader,
        *,
        targets: ScrapeTargets | None = None,
        static_dir: Path | None = None,
    ) -> None:
        self._auth = auth
        self._reader = reader
        self._targets = targets
        self._static_dir = static_dir

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/series", self._series)
        if self._static_dir is not None:
            app.router.add_get("/", self._index)
            app.router.add_get("/static/{name}", self._asset)

    async def _series(self, request: web.Request) -> web.Response:
        """The selected series, and the scrape targets when scraping is on."""
        query = request.query
        tenants = visible_tenants(self._auth, request.headers.get("Authorization"))
        out: dict[str, Any] = {"series": await self._reader.series(Selection.from_query(tenants, query))}
        if self._targets is not None:
            # Per-target scrape health (docs/scrape.md), filtered like the series.
            visible = tenants is None or self._targets.tenant in tenants
            targets = self._targets.health() if visible else []
            out["targets"] = [
                t for t in targets if all(f not in query or query[f] == t[f] for f in ("service", "instance"))
            ]
        return web.json_response(out, dumps=lambda o: json.dumps(o, allow_nan=False))

    async def _index(self, request: web.Request) -> web.FileResponse:
        visible_tenants(self._auth, request.headers.get("Authorization"))  # credentials needed, any tenant
        assert self._static_dir is not None
        return web.FileResponse(self._static_dir / "index.html")

    async def _asset(self, request: web.Request) -> web.FileResponse:
        visible_tenants(self._auth, request.headers.get("Authorization"))
        name = request.match_info["name"]
        if name not in ASSETS or self._static_dir is None:
            raise web.HTTPNotFound(reason=f"no asset {name!r}")
        return web.FileResponse(self._static_dir / name, headers={"Content-Type": ASSETS[name]})
