"""`GET /api/health`: whether the server can store what it is sent - for a load balancer or a
monitoring system, so token-free (as `/api/openapi.json`). It answers the store's state only:
no station, session, id tag or billing figure; the database file is named without its
directory. 200 while the store writes, 503 while it refuses writes (a full or failed disk,
the file replaced or moved under us: stations get CALLERRORs, the API's writes 503s)."""

from __future__ import annotations

import os

from aiohttp import web

from smartcharge.api.auth import PUBLIC, route
from smartcharge.appkeys import STORE


async def health(request: web.Request) -> web.Response:
    store = request.app[STORE]
    state = store.refusals.state()
    if state["cause"] is not None:
        state["cause"] = state["cause"].replace(store.path, os.path.basename(store.path))
    return web.json_response(state, status=503 if state["store"] == "refusing" else 200)


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/api/health", health, PUBLIC)
