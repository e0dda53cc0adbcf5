"""The REST API under /api, one package: one error middleware (`errors.py`), one auth check
(`auth.py`: roles, `require`, the middleware), and the routes grouped by audience — stations
(`stations.py`), sessions and the billing CSV (`sessions.py`), remote commands (`commands.py`),
the site's caps, demand-response events and session needs (`site_limits.py`), the live snapshot
(`snapshot.py`), the store's health (`health.py`, token-free), and the OpenAPI document
(`openapi.py`, `openapi.json`, `openapi_site.json`).

Every error is JSON `{"error": <short code>, "detail": <what is wrong>}`; a client never sees a
stack trace. Imports point one way: this package uses `smartcharge.site`, never the reverse.
"""

from __future__ import annotations

from aiohttp import web

from smartcharge.api import (commands, health, openapi, sessions, site_limits, snapshot,
                             stations)
from smartcharge.api.auth import setup_auth
from smartcharge.api.errors import json_errors
from smartcharge.appkeys import CLOCK, SITE


def add_routes(app: web.Application, *, open_api: bool = False) -> None:
    """The API's error middleware (outermost), its auth middleware, and the central system's
    routes. `open_api` is `--insecure-open-api`: no token checked at all."""
    app.middlewares.append(json_errors)
    setup_auth(app, app[SITE], app[CLOCK], open_api=open_api)
    openapi.add_routes(app)
    health.add_routes(app)
    stations.add_routes(app)
    sessions.add_routes(app)
    commands.add_routes(app)


def add_site_routes(app: web.Application) -> None:
    """The site controller's routes (snapshot, caps, DR events, session needs); after
    `add_routes` and `smartcharge.site.setup.setup_site_control`, whose controller they use."""
    snapshot.add_routes(app)
    site_limits.add_routes(app)
