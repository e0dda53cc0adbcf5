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


# On every HTTP answer of the app: the page keeps the API token in sessionStorage, so nothing
# may frame it (clickjacking), run script from elsewhere, or sniff a JSON answer into a page.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def setup_dashboard(app: web.Application) -> None:
    """Add the dashboard routes (`/`, `/static/{name}`) to app, and the security headers to
    every HTTP answer of app."""
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/", _index, name="dashboard")
    app.router.add_get("/static/{name}", _static, name="dashboard-static")
