"""glint's own web client (web/, built by Vite into web/dist) served beside the API.

Hashed files under /assets/ are cached for a year; index.html is revalidated on every load; any
other path that is not the API's or the websocket's answers index.html, so the single-page app's
routes (/p/123, /admin/reports, ...) survive a reload. Unknown /api/ paths keep their JSON 404.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from handlers.common import ApiError, NotFound, add_route

DEFAULT_DIST = Path(__file__).resolve().parents[1] / "web" / "dist"
IMMUTABLE = "public, max-age=31536000, immutable"

# what the catch-all route leaves to the API: /api/..., /ws and the operations routes
_NOT_APP = ("/api/", "/ws", "/healthz", "/readyz", "/metrics")


def is_app_path(path: str) -> bool:
    """A path served by the web client rather than by the API (not rate limited)."""
    return not (path.startswith(_NOT_APP) or path == "/api")


class NotBuilt(ApiError):
    status, code = 503, "web_client_not_built"


def add_web_routes(app: web.Application, dist: Path) -> None:
    """Register the client's routes; call after every API route so those match first."""

    def file(relative: str) -> Path | None:
        path = (dist / relative).resolve()
        if dist.resolve() not in path.parents or not path.is_file():
            return None
        return path

    async def asset(request: web.Request) -> web.StreamResponse:
        path = file("assets/" + request.match_info["name"])
        if path is None:
            raise NotFound()
        return web.FileResponse(path, headers={"Cache-Control": IMMUTABLE})

    async def page(request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        # a real file at the top of dist (favicon, robots.txt) is served as itself
        path = file(tail) if tail and "/" not in tail else None
        if path is not None:
            return web.FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})
        index = file("index.html")
        if index is None:
            raise NotBuilt("The web client is not built: run `make web` (needs Node.js 18 or newer).")
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

    add_route(app, "GET", "/assets/{name:.+}", asset)
    # every GET path but the API's: (?!...) keeps /api/... resolving to its 404 or 405
    add_route(app, "GET", r"/{tail:(?!api/|api$|ws$|healthz$|readyz$|metrics$).*}", page)
