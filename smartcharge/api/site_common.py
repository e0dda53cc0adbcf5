"""What the site routes share: the controller of the app, the obligation writer, and the
parsing of a JSON body (times RFC 3339 with a zone, watts finite and >= 0)."""

from __future__ import annotations

import math
from datetime import datetime

from aiohttp import web

from smartcharge.api.errors import ApiError
from smartcharge.clock import TIMES_FROM, TIMES_UNTIL, parse_ocpp_time
from smartcharge.http_body import BodyUndecodable, DuplicateField, json_of
from smartcharge.site.obligations import StoreUnavailable
from smartcharge.site.applied import limits_told
from smartcharge.site.setup import CONTROLLER, DISPATCHER
from smartcharge.site.setup import OBLIGATIONS as WRITER   # shared with the OpenADR VENs
RETRY_AFTER_S = 5
EARLIEST, LATEST = TIMES_FROM, TIMES_UNTIL   # the times a limit may reach (clock.py)


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


async def applied(request: web.Request) -> dict:
    """After a limit is committed and a re-plan asked for: wait (bounded) until the round
    that applies it has had the stations' decreases answered; what they hold then, for the
    answer's `applied` (site/applied.py). A client may send it back in a PUT: it is ignored."""
    done = await limits_told(request.app[CONTROLLER], request.app[DISPATCHER])
    return done.as_json()


async def json_body(request: web.Request) -> dict:
    try:
        body = await json_of(request)
    except BodyUndecodable as error:
        raise ApiError(400, "bad_request", str(error)) from None
    except DuplicateField as error:
        raise ApiError(422, "invalid_body", f"{error.field[:80]}: given twice (one value "
                       "per field)") from None
    # ValueError: not JSON, and JSON the parser will not read (an integer of over 4 300
    # digits: a plain ValueError, not a JSONDecodeError); RecursionError: nested too deep
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "bad_request", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_body", "the body must be a JSON object")
    return body


def known_fields(body: dict, fields: frozenset[str], where: str = "") -> None:
    """422 naming a field the route does not take: a limit in another unit (`"unit": "kW"`
    beside `limit_w`, `limit_kw`) must not be read as watts, nor a field we do not act on
    (`circuit_id`) be silently dropped. `fields` includes what a GET answers, so a client may
    PUT back what it read."""
    unknown = sorted(set(body) - fields)
    if unknown:
        raise ApiError(422, "invalid_body", f"{where}{unknown[0]}: not a field of this request "
                       f"(it takes {', '.join(sorted(fields))}; power in W, energy in Wh, "
                       "times RFC 3339)")


def time_field(body: dict, name: str, *, required: bool = True) -> datetime | None:
    if name not in body or body[name] is None:
        if required:
            raise ApiError(422, "invalid_body", f"{name}: required (RFC 3339 time with a zone)")
        return None
    try:
        moment = parse_ocpp_time(body[name])
    except ValueError as exc:
        raise ApiError(422, "invalid_body", f"{name}: {exc}") from None
    if not EARLIEST <= moment < LATEST:
        # year 9999 is a date, but not a second after it: a DR event until then made every
        # dispatch fail (OverflowError), so no profile went out at all
        raise ApiError(422, "invalid_body", f"{name}: must be in the years "
                       f"{EARLIEST.year}-{LATEST.year - 1}")
    return moment


def number_field(body: dict, name: str, *, required: bool = False) -> float | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(422, "invalid_body", f"{name}: required, a number of watts")
        return None
    try:   # an integer of 400 digits is JSON too, and no float holds it
        number = float(value) if isinstance(value, (int, float)) else math.nan
    except OverflowError:
        number = math.inf
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise ApiError(422, "invalid_body", f"{name}: must be a finite number >= 0")
    return number + 0.0   # JSON's -0.0 passes `< 0`; + 0.0 makes it 0.0, never echoed "-0"


SQLITE_INTEGERS = range(-2 ** 63, 2 ** 63)


def stored_id(text: str, what: str) -> int:
    """An integer id from a path: 404 unless it is one the store could hold."""
    try:
        value = int(text)
    except ValueError:
        raise ApiError(404, "not_found", f"{what} ids are integers") from None
    if value not in SQLITE_INTEGERS:
        raise ApiError(404, "not_found", f"no {what} {text}")
    return value
