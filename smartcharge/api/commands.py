"""Remote control of stations over REST: each route sends one OCPP 1.6 call and returns the
station's answer.

404: the station is neither in the site file nor ever seen; 422: the body is wrong (checked by
us, then against the OCPP schema, before anything is sent); 409: the station is offline; 504: it
did not answer in time; 502: it answered with a CALLERROR (its code is in the body).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from aiohttp import web
from ocpp.charge_point import remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, validate_payload
from ocpp.v16 import call
from ocpp.v16.enums import (
    AvailabilityType,
    ChargingProfilePurposeType,
    ChargingRateUnitType,
    MessageTrigger,
    ResetType,
)

from smartcharge.api.auth import OPERATE, route
from smartcharge.appkeys import REGISTRY, SITE, STORE
from smartcharge.ocpp.registry import StationCallError, StationOffline, StationTimeout

log = logging.getLogger(__name__)

_MISSING = object()


class Body:
    """A JSON object from the client, read field by field with clear 422 messages."""

    def __init__(self, data: dict[str, Any], allowed: set[str]) -> None:
        unknown = set(data) - allowed
        if unknown:
            raise _invalid(f"unknown field(s) {', '.join(sorted(unknown))}; allowed: "
                           f"{', '.join(sorted(allowed)) or 'none'}")
        self._data = data

    def integer(self, name: str, *, required: bool = False, minimum: int | None = None):
        value = self._data.get(name, _MISSING)
        if value is _MISSING or value is None:
            if required:
                raise _invalid(f"{name} is required")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise _invalid(f"{name} must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise _invalid(f"{name} must be >= {minimum}, got {value}")
        return value

    def string(self, name: str, *, required: bool = False, max_chars: int | None = None,
               choices: type | None = None):
        value = self._data.get(name, _MISSING)
        if value is _MISSING or value is None:
            if required:
                raise _invalid(f"{name} is required")
            return None
        if not isinstance(value, str) or not value:
            raise _invalid(f"{name} must be a non-empty string, got {value!r}")
        if max_chars is not None and len(value) > max_chars:
            raise _invalid(f"{name} is at most {max_chars} characters")
        if choices is not None:
            allowed = [member.value for member in choices]
            if value not in allowed:
                raise _invalid(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
            return choices(value)
        return value


def _invalid(detail: str) -> web.HTTPUnprocessableEntity:
    return web.HTTPUnprocessableEntity(text=detail)


async def _json_object(request: web.Request) -> dict[str, Any]:
    if request.method == "GET" or not request.can_read_body:
        return {}
    try:
        data = await request.json(loads=json.loads)
    except (ValueError, UnicodeDecodeError):
        raise _invalid("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise _invalid("the body must be a JSON object")
    return data


def _camel(payload: Any) -> dict[str, Any]:
    return _plain(snake_to_camel_case(remove_nones(serialize_as_dict(payload))))


def _plain(value: Any) -> Any:
    """JSON-ready: the library parses schedule limits as Decimal (for `multipleOf 0.1`)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


async def _schema_check(request_payload: Any) -> None:
    message = Call("api-check", type(request_payload).__name__, _camel(request_payload))
    try:
        await validate_payload(message, "1.6")
    except OCPPError as error:
        cause = error.details.get("cause") if isinstance(error.details, dict) else None
        raise _invalid(f"not a valid OCPP 1.6 {message.action}: {cause or error.description}"
                       ) from None


async def _station_known(app: web.Application, station_id: str) -> bool:
    if app[SITE].station(station_id) is not None or app[REGISTRY].get(station_id):
        return True
    stored = await app[STORE].read(lambda tx: tx.boot_status(station_id) is not None
                                   or any(r["station_id"] == station_id for r in tx.stations()))
    return bool(stored)


def command(build: Callable[[Body, web.Request], Any], allowed: set[str]):
    async def handler(request: web.Request) -> web.Response:
        app = request.app
        station_id = request.match_info["station_id"]
        if not await _station_known(app, station_id):
            raise web.HTTPNotFound(text=f"unknown station {station_id!r}")
        request_payload = build(Body(await _json_object(request), allowed), request)
        await _schema_check(request_payload)
        action = type(request_payload).__name__
        link = app[REGISTRY].get(station_id)
        if link is None:
            raise web.HTTPConflict(text=f"station {station_id} is offline")
        timeout_s = _timeout(request)
        log.info("API: %s to station %s", action, station_id)
        try:
            answer = await link.call(request_payload, timeout_s=timeout_s)
        except StationOffline as error:
            raise web.HTTPConflict(text=str(error)) from None
        except StationTimeout as error:
            raise web.HTTPGatewayTimeout(text=str(error)) from None
        except StationCallError as error:
            return web.json_response({"error": "station_call_error", "detail": str(error),
                                      "code": error.code, "description": error.description},
                                     status=502)
        return web.json_response({"station_id": station_id, "action": action,
                                  "answer": _camel(answer)})
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


def _query_int(request: web.Request, name: str, *, required: bool, minimum: int = 0):
    text = request.query.get(name)
    if text is None:
        if required:
            raise _invalid(f"query parameter {name} is required")
        return None
    try:
        value = int(text)
    except ValueError:
        raise _invalid(f"query parameter {name} must be an integer, got {text!r}") from None
    if value < minimum:
        raise _invalid(f"query parameter {name} must be >= {minimum}")
    return value


def _composite_schedule(body: Body, request: web.Request) -> call.GetCompositeSchedule:
    unit = request.query.get("charging_rate_unit")
    if unit is not None and unit not in ("A", "W"):
        raise _invalid('charging_rate_unit must be "A" or "W"')
    return call.GetCompositeSchedule(
        connector_id=_query_int(request, "connector_id", required=True),
        duration=_query_int(request, "duration_s", required=True, minimum=1),
        charging_rate_unit=ChargingRateUnitType(unit) if unit else None)


def _get_configuration(body: Body, request: web.Request) -> call.GetConfiguration:
    keys = request.query.getall("key", [])
    if any(len(key) > 50 or not key for key in keys):
        raise _invalid("each key is 1..50 characters (CiString50)")
    return call.GetConfiguration(key=keys or None)


COMMANDS: dict[str, tuple[str, Callable, set[str]]] = {
    "remote-start": ("POST", lambda b, r: call.RemoteStartTransaction(
        id_tag=b.string("id_tag", required=True, max_chars=20),
        connector_id=b.integer("connector_id", minimum=1)), {"id_tag", "connector_id"}),
    "remote-stop": ("POST", lambda b, r: call.RemoteStopTransaction(
        transaction_id=b.integer("transaction_id", required=True)), {"transaction_id"}),
    "change-availability": ("POST", lambda b, r: call.ChangeAvailability(
        connector_id=b.integer("connector_id", required=True, minimum=0),
        type=b.string("type", required=True, choices=AvailabilityType)),
        {"connector_id", "type"}),
    "reset": ("POST", lambda b, r: call.Reset(
        type=b.string("type", required=True, choices=ResetType)), {"type"}),
    "unlock-connector": ("POST", lambda b, r: call.UnlockConnector(
        connector_id=b.integer("connector_id", required=True, minimum=1)), {"connector_id"}),
    "trigger-message": ("POST", lambda b, r: call.TriggerMessage(
        requested_message=b.string("requested_message", required=True,
                                   choices=MessageTrigger),
        connector_id=b.integer("connector_id", minimum=0)),
        {"requested_message", "connector_id"}),
    "configuration": ("GET", _get_configuration, set()),
    "change-configuration": ("POST", lambda b, r: call.ChangeConfiguration(
        key=b.string("key", required=True, max_chars=50),
        value=b.string("value", required=True, max_chars=500)), {"key", "value"}),
    "clear-charging-profile": ("POST", lambda b, r: call.ClearChargingProfile(
        id=b.integer("id"), connector_id=b.integer("connector_id", minimum=0),
        charging_profile_purpose=b.string("charging_profile_purpose",
                                          choices=ChargingProfilePurposeType),
        stack_level=b.integer("stack_level", minimum=0)),
        {"id", "connector_id", "charging_profile_purpose", "stack_level"}),
    "composite-schedule": ("GET", _composite_schedule, set()),
}


def add_routes(app: web.Application) -> None:
    for name, (method, build, allowed) in COMMANDS.items():
        route(app, method, f"/api/stations/{{station_id}}/{name}", command(build, allowed),
              OPERATE)
