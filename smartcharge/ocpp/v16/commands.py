"""The remote commands for an OCPP 1.6J station (behind `ocpp/commands.py`): each REST command
becomes one `ocpp.v16.call.*` request, checked against the 1.6 schema before it is sent."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

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

from smartcharge.ocpp.commands import CommandInvalid, Fields, StationCommands, query_int


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


def _composite_schedule(body: Fields, query: Mapping[str, str]) -> call.GetCompositeSchedule:
    unit = query.get("charging_rate_unit")
    if unit is not None and unit not in ("A", "W"):
        raise CommandInvalid('charging_rate_unit must be "A" or "W"')
    return call.GetCompositeSchedule(
        connector_id=query_int(query, "connector_id", required=True),
        duration=query_int(query, "duration_s", required=True, minimum=1),
        charging_rate_unit=ChargingRateUnitType(unit) if unit else None)


def _get_configuration(body: Fields, query) -> call.GetConfiguration:
    keys = query.getall("key", [])
    if any(len(key) > 50 or not key for key in keys):
        raise CommandInvalid("each key is 1..50 characters (CiString50)")
    return call.GetConfiguration(key=keys or None)


# command name -> (HTTP method, builder(fields, query), body fields allowed)
BUILDERS: dict[str, tuple[str, Callable, set[str]]] = {
    "remote-start": ("POST", lambda b, q: call.RemoteStartTransaction(
        id_tag=b.string("id_tag", required=True, max_chars=20),
        connector_id=b.integer("connector_id", minimum=1)), {"id_tag", "connector_id"}),
    "remote-stop": ("POST", lambda b, q: call.RemoteStopTransaction(
        transaction_id=b.integer("transaction_id", required=True)), {"transaction_id"}),
    "change-availability": ("POST", lambda b, q: call.ChangeAvailability(
        connector_id=b.integer("connector_id", required=True, minimum=0),
        type=b.string("type", required=True, choices=AvailabilityType)),
        {"connector_id", "type"}),
    "reset": ("POST", lambda b, q: call.Reset(
        type=b.string("type", required=True, choices=ResetType)), {"type"}),
    "unlock-connector": ("POST", lambda b, q: call.UnlockConnector(
        connector_id=b.integer("connector_id", required=True, minimum=1)), {"connector_id"}),
    "trigger-message": ("POST", lambda b, q: call.TriggerMessage(
        requested_message=b.string("requested_message", required=True,
                                   choices=MessageTrigger),
        connector_id=b.integer("connector_id", minimum=0)),
        {"requested_message", "connector_id"}),
    "configuration": ("GET", _get_configuration, set()),
    "change-configuration": ("POST", lambda b, q: call.ChangeConfiguration(
        key=b.string("key", required=True, max_chars=50),
        value=b.string("value", required=True, max_chars=500)), {"key", "value"}),
    "clear-charging-profile": ("POST", lambda b, q: call.ClearChargingProfile(
        id=b.integer("id"), connector_id=b.integer("connector_id", minimum=0),
        charging_profile_purpose=b.string("charging_profile_purpose",
                                          choices=ChargingProfilePurposeType),
        stack_level=b.integer("stack_level", minimum=0)),
        {"id", "connector_id", "charging_profile_purpose", "stack_level"}),
    "composite-schedule": ("GET", _composite_schedule, set()),
}


class V16Commands(StationCommands):
    protocol = "ocpp1.6"
    catalogue = {name: (method, allowed) for name, (method, _, allowed) in BUILDERS.items()}

    def build(self, name: str, fields: Fields, query: Mapping[str, str]) -> Any:
        return BUILDERS[name][1](fields, query)

    async def check(self, request: Any) -> None:
        message = Call("api-check", type(request).__name__, _camel(request))
        try:
            await validate_payload(message, "1.6")
        except OCPPError as error:
            cause = error.details.get("cause") if isinstance(error.details, dict) else None
            raise CommandInvalid(f"not a valid OCPP 1.6 {message.action}: "
                                 f"{cause or error.description}") from None

    def action(self, request: Any) -> str:
        return type(request).__name__

    def answer(self, result: Any) -> dict[str, Any]:
        return _camel(result)


__all__ = ["BUILDERS", "V16Commands"]
