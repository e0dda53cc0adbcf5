"""The query string a route takes: a parameter it does not read, or one given twice, is a 422
naming it. Dropped without a word, `?statoin=CP1` exported every station's sessions and
`connector_id=1&connector_id=2` read the first (session 31's judge)."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from smartcharge.api.openapi import openapi_document  # the served contract decides


def only_parameters(request: web.Request, taken: Iterable[str],
                    lists: Iterable[str] = ()) -> None:
    """Refuse (422) a query parameter not in `taken`, or one given twice unless in `lists`."""
    taken, lists = frozenset(taken), frozenset(lists)
    for name in request.query:
        if name not in taken:
            offered = ", ".join(sorted(taken)) or "none"
            raise web.HTTPUnprocessableEntity(
                text=f"query parameter {name[:40]!r} is not taken here (it takes {offered})")
        if name not in lists and len(request.query.getall(name)) > 1:
            raise web.HTTPUnprocessableEntity(text=f"query parameter {name!r} is given twice")


def declared(method: str, path: str) -> tuple[frozenset[str], frozenset[str]]:
    """The query parameters the OpenAPI document declares for a route: (all, the lists)."""
    operation = openapi_document()["paths"].get(path, {}).get(method.lower(), {})
    params = [p for p in operation.get("parameters", []) if p.get("in") == "query"]
    return (frozenset(p["name"] for p in params),
            frozenset(p["name"] for p in params if p.get("schema", {}).get("type") == "array"))
