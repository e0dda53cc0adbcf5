"""The dashboard: one static page that reads the site snapshot and its live stream.

`setup_dashboard(app)` serves the page at `/` and its assets at `/static/<name>`. Everything the
page needs ships in this package (no CDN): control rooms are often offline. The data comes from
`GET /api/site` and `GET /api/site/stream`, which the site controller adds.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

WEB_DIR = Path(__file__).resolve().parent
# Only these files are served: the package directory also holds Python sources.
STATIC_FILES = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(
        WEB_DIR / "index.html",
        headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache"},
    )


async def _static(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    content_type = STATIC_FILES.get(name)
    if content_type is None:
        raise web.HTTPNotFound(text=f"no static file named {name!r}")
    return web.FileResponse(
        WEB_DIR / name,
        headers={"Content-Type": f"{content_type}; charset=utf-8", "Cache-Control": "no-cache"},
    )


def setup_dashboard(app: web.Application) -> None:
    """Add the dashboard routes (`/`, `/static/{name}`) to app."""
    app.router.add_get("/", _index, name="dashboard")
    app.router.add_get("/static/{name}", _static, name="dashboard-static")
