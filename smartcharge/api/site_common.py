"""What the site routes share: the controller of the app, the obligation writer, and the
parsing of a JSON body (times RFC 3339 with a zone, watts finite and >= 0)."""

from __future__ import annotations

import json
from datetime import datetime

from aiohttp import web

from smartcharge.api.errors import ApiError
from smartcharge.clock import parse_ocpp_time
from smartcharge.site.obligations import StoreUnavailable
from smartcharge.site.setup import CONTROLLER
from smartcharge.site.setup import OBLIGATIONS as WRITER   # shared with the OpenADR VENs
RETRY_AFTER_S = 5


async def commit(request: web.Request, check, work, apply):
    """Commit an obligation, then apply it in memory (site/obligations.py); 503 if the store
    cannot take it, with nothing changed."""
    try:
        return await request.app[WRITER].commit(check, work, apply)
    except StoreUnavailable:
        raise ApiError(503, "store_unavailable", "the store could not commit this change, so "
                       "it was not made; try again later",
                       headers={"Retry-After": str(RETRY_AFTER_S)}) from None


def controller(request: web.Request):
    return request.app[CONTROLLER]


async def json_body(request: web.Request) -> dict:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "bad_request", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_body", "the body must be a JSON object")
    return body


def time_field(body: dict, name: str, *, required: bool = True) -> datetime | None:
    if name not in body or body[name] is None:
        if required:
            raise ApiError(422, "invalid_body", f"{name}: required (RFC 3339 time with a zone)")
        return None
    try:
        return parse_ocpp_time(body[name])
    except ValueError as exc:
        raise ApiError(422, "invalid_body", f"{name}: {exc}") from None


def number_field(body: dict, name: str, *, required: bool = False) -> float | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(422, "invalid_body", f"{name}: required, a number of watts")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
            or value != value or value in (float("inf"),):
        raise ApiError(422, "invalid_body", f"{name}: must be a finite number >= 0")
    return float(value)
