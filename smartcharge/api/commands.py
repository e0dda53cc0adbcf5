"""Remote control of stations over REST: each route sends one call in the protocol the station
speaks (`ocpp/commands.py`, the command port; `ocpp/ports.py` picks the set) and returns the
station's answer. Nothing here names a protocol package.

404: the station is neither in the site file nor ever seen; 422: the body is wrong (checked by
us, then against the protocol's schema, before anything is sent); 409: the station is offline,
or the command would take it out of the site's control (2.0.1 smart charging turned off);
504: it did not answer in time; 502: it answered with a CALLERROR (its code is in the body).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from smartcharge.api.auth import OPERATE, route
from smartcharge.api.query import declared, only_parameters
from smartcharge.appkeys import CLOCK, EVENTS, REGISTRY, SITE, STORE
from smartcharge.events import StationProfilesCleared
from smartcharge.http_body import BodyUndecodable, DuplicateField, json_of
from smartcharge.ocpp.commands import CommandInvalid, CommandRefused, Fields
from smartcharge.ocpp.port import UnknownProtocol
from smartcharge.ocpp.ports import all_commands, commands_for
from smartcharge.ocpp.registry import (StationAnswerInvalid, StationAnswerUnreadable,
                                       StationCallError, StationOffline, StationTimeout)

log = logging.getLogger(__name__)

def _invalid(detail: str) -> web.HTTPUnprocessableEntity:
    return web.HTTPUnprocessableEntity(text=detail)


async def _json_object(request: web.Request) -> dict[str, Any]:
    if request.method == "GET" or not request.can_read_body:
        return {}
    try:
        data = await json_of(request)
    except BodyUndecodable as error:
        raise web.HTTPBadRequest(text=str(error)) from None
    except DuplicateField as error:
        raise _invalid(f"{error.field[:80]}: given twice (one value per field)") from None
    except (ValueError, UnicodeDecodeError, RecursionError):   # RecursionError: nested too deep
        # no JSON at all: 400, as on the site routes (api/site_common.py); JSON of the wrong
        # shape below is 422
        raise web.HTTPBadRequest(text="the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise _invalid("the body must be a JSON object")
    return data


async def _station_known(app: web.Application, station_id: str) -> bool:
    if app[SITE].station(station_id) is not None or app[REGISTRY].get(station_id):
        return True
    stored = await app[STORE].read(lambda tx: tx.boot_status(station_id) is not None
                                   or any(r["station_id"] == station_id for r in tx.stations()))
    return bool(stored)


def command(name: str, method: str):
    taken, lists = declared(method, f"/api/stations/{{station_id}}/{name}")

    async def handler(request: web.Request) -> web.Response:
        app = request.app
        station_id = request.match_info["station_id"]
        only_parameters(request, taken, lists)
        # a bad query is the client's fault whatever the station's state: 422 before 409
        timeout_s = _timeout(request)
        if not await _station_known(app, station_id):
            raise web.HTTPNotFound(text=f"unknown station {station_id!r}")
        link = app[REGISTRY].get(station_id)
        try:
            # the protocol it speaks now; an offline station is checked as the default one
            commands = commands_for(link.protocol if link is not None else None)
            if name not in commands.catalogue:
                raise CommandInvalid(f"station {station_id} ({commands.protocol}) has no "
                                     f"command {name}")
            fields = Fields(await _json_object(request), commands.catalogue[name][1])
            request_payload = commands.build(name, fields, request.query)
            await commands.check(request_payload)
        except CommandRefused as error:
            raise web.HTTPConflict(text=error.detail) from None
        except CommandInvalid as error:
            raise _invalid(error.detail) from None
        except UnknownProtocol as error:
            raise web.HTTPConflict(text=str(error)) from None
        action = commands.action(request_payload)
        link = app[REGISTRY].get(station_id)
        if link is None:
            raise web.HTTPConflict(text=f"station {station_id} is offline")
        try:
            # what only the live connection knows (2.0.1: the station's transactionId)
            request_payload = await commands.resolve(request_payload, link)
            await commands.check(request_payload)
        except CommandInvalid as error:
            raise _invalid(error.detail) from None
        log.info("API: %s to station %s", action, station_id)
        try:
            try:
                answer = await link.call(request_payload, timeout_s=timeout_s)
            finally:
                # answered or not (it may have cleared and then not answered, or dropped),
                # at once - before any other call to the station can be answered: the site
                # must set it up again, or it goes on counting what it installed there
                if commands.sets_up_again(name, request_payload):
                    app[EVENTS].publish(StationProfilesCleared(station_id, app[CLOCK].now()))
        except StationOffline as error:
            raise web.HTTPConflict(text=str(error)) from None
        except StationAnswerUnreadable as error:
            # it answered, at once - not a timeout; nor a CALLERROR it never sent
            return web.json_response({"error": "station_answer_invalid", "detail": str(error),
                                      "frame": error.frame}, status=502)
        except StationTimeout as error:
            # `sent` False: the station was never asked (its line held by our earlier call) -
            # a remote start or a reset may be tried again without doing it twice
            return web.json_response({"error": "station_timeout", "detail": str(error),
                                      "sent": error.sent}, status=504)
        except StationAnswerInvalid as error:
            return web.json_response({"error": "station_answer_invalid",
                                      "detail": f"station {station_id}: {error.description}",
                                      "answer": error.answer}, status=502)
        except StationCallError as error:
            return web.json_response({"error": "station_call_error", "detail": str(error),
                                      "code": error.code, "description": error.description},
                                     status=502)
        return web.json_response({"station_id": station_id, "action": action,
                                  "answer": commands.answer(answer)})
    return handler


def _timeout(request: web.Request) -> float | None:
    text = request.query.get("timeout_s")
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 300:
        raise _invalid("timeout_s must be a number of seconds in (0, 300]")
    return value


def add_routes(app: web.Application) -> None:
    for name, (method, _) in all_commands().items():
        route(app, method, f"/api/stations/{{station_id}}/{name}", command(name, method),
              OPERATE)
