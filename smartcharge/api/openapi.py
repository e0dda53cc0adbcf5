"""The OpenAPI document of the whole API, served publicly at /api/openapi.json: the central
system's `openapi.json` with the site controller's routes (`openapi_site.json`) merged in."""

from __future__ import annotations

import functools
import json
from importlib import resources

from aiohttp import web

from smartcharge.api.auth import PUBLIC, route


@functools.cache
def openapi_document() -> dict:
    """The merged document (the two files sit beside the routes they describe, in this package)."""
    package = resources.files("smartcharge.api")
    document = json.loads(package.joinpath("openapi.json").read_text(encoding="utf-8"))
    site = json.loads(package.joinpath("openapi_site.json").read_text(encoding="utf-8"))
    for path, operations in site["paths"].items():
        document["paths"].setdefault(path, {}).update(operations)
    for section, entries in site.get("components", {}).items():
        document.setdefault("components", {}).setdefault(section, {}).update(entries)
    return document


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/api/openapi.json", openapi, PUBLIC)
