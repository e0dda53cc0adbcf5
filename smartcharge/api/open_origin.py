"""Who may use an open API (`--insecure-open-api`): this machine's own clients, not every web
site its browser visits.

The open API checks no token, and is allowed on a loopback address only. But a browser on this
machine runs any web site's scripts: a page elsewhere may send a "simple" request (a POST or
PUT with a text/plain body, no preflight) to 127.0.0.1 - it sets a cap, resets a station - and,
by DNS rebinding (its own name resolved to 127.0.0.1), read the answers as its own: id tags,
billing data. So an open API answers only a request addressed to a loopback name (`Host`) that
no other origin sent (`Origin`, which browsers add to cross-origin requests); curl, scripts and
the dashboard's own page pass. A token-checked API needs none of this: a browser never adds a
bearer token by itself.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from smartcharge.api.errors import ApiError
from smartcharge.serve_checks import is_loopback


def check_open_api_caller(request: web.Request) -> None:
    """Raise 403 unless the request is addressed to a loopback name and, when it says its
    origin, comes from the same host and port."""
    host = request.headers.get("Host", "")
    if not is_loopback(_hostname(host)):
        raise ApiError(403, "forbidden", "the open API (--insecure-open-api) answers only "
                       "requests addressed to a loopback name (Host: 127.0.0.1, localhost, "
                       "[::1]); a web site's name resolved to this machine is refused")
    origin = request.headers.get("Origin")
    if origin is not None and _origin_host(origin) != host.lower():
        raise ApiError(403, "forbidden", "the open API (--insecure-open-api) answers no "
                       "request another web site's page sent (Origin)")


def _hostname(host: str) -> str:
    """The name in a Host header, without its port ('[::1]:8080' -> '::1')."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _origin_host(origin: str) -> str | None:
    """'http://127.0.0.1:8080' -> '127.0.0.1:8080' (None: 'null' or no URL)."""
    try:
        parts = urlsplit(origin)
    except ValueError:
        return None
    return parts.netloc.lower() or None
