"""The remote commands for an OCPP 1.6J station (behind `ocpp/commands.py`): each REST command
becomes one `ocpp.v16.call.*` request, checked against the 1.6 schema before it is sent (the
check and the answer's JSON: `BuiltCommands`, shared with 2.0.1)."""

from __future__ import annotations

from collections.abc import Mapping

from ocpp.v16 import call
from ocpp.v16.enums import (
    AvailabilityType,
    ChargingProfilePurposeType,
    ChargingRateUnitType,
    MessageTrigger,
    ResetType,
)

from smartcharge.ocpp.commands import (Builders, BuiltCommands, CommandInvalid, Fields,
                                       composite_query)


def _composite_schedule(body: Fields, query: Mapping[str, str]) -> call.GetCompositeSchedule:
    connector_id, duration_s, unit = composite_query(query)
    return call.GetCompositeSchedule(
        connector_id=connector_id, duration=duration_s,
        charging_rate_unit=ChargingRateUnitType(unit) if unit else None)


def _get_configuration(body: Fields, query) -> call.GetConfiguration:
    keys = query.getall("key", [])
    if any(len(key) > 50 or not key for key in keys):
        raise CommandInvalid("each key is 1..50 characters (CiString50)")
    return call.GetConfiguration(key=keys or None)


BUILDERS: Builders = {
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
        value=b.string("value", required=True, max_chars=500, may_be_empty=True)),
        {"key", "value"}),
    "clear-charging-profile": ("POST", lambda b, q: call.ClearChargingProfile(
        id=b.integer("id"), connector_id=b.integer("connector_id", minimum=0),
        charging_profile_purpose=b.string("charging_profile_purpose",
                                          choices=ChargingProfilePurposeType),
        stack_level=b.integer("stack_level", minimum=0)),
        {"id", "connector_id", "charging_profile_purpose", "stack_level"}),
    "composite-schedule": ("GET", _composite_schedule, set()),
}


class V16Commands(BuiltCommands):
    protocol = "ocpp1.6"
    version = "1.6"
    builders = BUILDERS


__all__ = ["BUILDERS", "V16Commands"]
