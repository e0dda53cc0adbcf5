"""The remote commands for an OCPP 2.0.1 station (behind `ocpp/commands.py`), on the same REST
routes and bodies as 1.6: each becomes one `ocpp.v201.call.*` request, checked against the
2.0.1 schema before it is sent. Where 2.0.1 says it differently:

| route                  | 2.0.1 request                | the body's words                           |
|------------------------|------------------------------|--------------------------------------------|
| remote-start           | RequestStartTransaction      | id_tag -> idToken (type `id_token_type`,   |
|                        |                              | ISO14443 unless said), connector_id ->     |
|                        |                              | evseId, a fresh remoteStartId              |
| remote-stop            | RequestStopTransaction       | transaction_id: our session id (int,       |
|                        |                              | mapped to the station's) or its own string |
| change-availability    | ChangeAvailability           | type -> operationalStatus; connector_id 0: |
|                        |                              | the station, n: EVSE n                     |
| reset                  | Reset                        | Hard -> Immediate, Soft -> OnIdle (or the  |
|                        |                              | 2.0.1 words)                               |
| unlock-connector       | UnlockConnector              | EVSE connector_id, its connector 1         |
| trigger-message        | TriggerMessage               | 2.0.1 names (TransactionEvent, ...)        |
| configuration (GET)    | GetVariables                 | key=Component.Variable (at least one)      |
| change-configuration   | SetVariables                 | key=Component.Variable, value (409 for     |
|                        |                              | SmartChargingCtrlr.Enabled other than true)|
| clear-charging-profile | ClearChargingProfile         | id, or connector_id/purpose/stack_level    |
| composite-schedule     | GetCompositeSchedule         | connector_id -> evseId                     |
| transaction-status     | GetTransactionStatus (2.0.1) | ?transaction_id= (ours: digits) or         |
|                        |                              | ?station_transaction_id= (the station's)   |
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ocpp.charge_point import remove_nones
from ocpp.v201 import call
from ocpp.v201.enums import (ChargingProfilePurposeEnumType, ChargingRateUnitEnumType,
                             IdTokenEnumType, MessageTriggerEnumType,
                             OperationalStatusEnumType, ResetEnumType)

from smartcharge.ocpp.commands import (Builders, BuiltCommands, CommandInvalid,
                                       CommandRefused, Fields, composite_query)
from smartcharge.ocpp.v201.transactions import station_transaction

RESET_WORDS = {"Hard": "Immediate", "Soft": "OnIdle", "Immediate": "Immediate",
               "OnIdle": "OnIdle"}
# remoteStartId: unique per request (time-seeded, so unlikely to repeat across restarts)
_remote_start_ids = itertools.count(int(time.time()) % 1_000_000_000)


@dataclass(frozen=True)
class ForTransaction:
    """A request that names our session id: the station's own transactionId is looked up
    when the station's link is known (`resolve`)."""

    action: str                 # "RequestStopTransaction" | "GetTransactionStatus"
    our_transaction_id: int


def _transaction(value: Any, action: str) -> Any:
    """An int: our session id (resolved later); a string: the station's own transactionId."""
    if isinstance(value, bool) or value is None:
        raise CommandInvalid("transaction_id is required (our session id, or the station's "
                             "own transactionId as a string)")
    if isinstance(value, int):
        if not 0 < value < 2 ** 63:     # no session id of ours (SQLite's ids: 1 .. 2**63-1)
            raise CommandInvalid(f"no session {value} (our session ids are 1 .. 2**63-1)")
        return ForTransaction(action, value)
    if isinstance(value, str) and 0 < len(value) <= 36:
        return (call.RequestStopTransaction(transaction_id=value)
                if action == "RequestStopTransaction"
                else call.GetTransactionStatus(transaction_id=value))
    raise CommandInvalid("transaction_id must be an integer (our session id) or the "
                         "station's transactionId (a string of 1..36 characters)")


def _key(text: str) -> tuple[str, str]:
    parts = text.split(".")
    if len(parts) != 2 or not all(0 < len(p) <= 50 for p in parts):
        raise CommandInvalid(f"a 2.0.1 key is Component.Variable (each 1..50 characters), "
                             f"e.g. OCPPCommCtrlr.HeartbeatInterval; got {text!r}")
    return parts[0], parts[1]


def _evse(fields: Fields, *, connector: bool = False) -> dict | None:
    connector_id = fields.integer("connector_id", minimum=0)
    if not connector_id:
        return None
    return {"id": connector_id, **({"connector_id": 1} if connector else {})}


def _remote_start(b: Fields, q) -> call.RequestStartTransaction:
    kind = b.string("id_token_type", choices=IdTokenEnumType) or IdTokenEnumType.iso14443
    return call.RequestStartTransaction(
        id_token={"id_token": b.string("id_tag", required=True, max_chars=36),
                  "type": kind.value},
        remote_start_id=next(_remote_start_ids),
        evse_id=b.integer("connector_id", minimum=1))


def _reset(b: Fields, q) -> call.Reset:
    word = b.string("type", required=True)
    if word not in RESET_WORDS:
        raise CommandInvalid(f"type must be one of Hard, Soft (1.6) or Immediate, OnIdle "
                             f"(2.0.1), got {word!r}")
    return call.Reset(type=ResetEnumType(RESET_WORDS[word]))


def _get_configuration(b: Fields, query) -> call.GetVariables:
    keys = query.getall("key", [])
    if not keys:
        raise CommandInvalid("name at least one key=Component.Variable (a 2.0.1 station "
                             "reports all its variables only through GetBaseReport)")
    return call.GetVariables(get_variable_data=[
        {"component": {"name": c}, "variable": {"name": v}} for c, v in map(_key, keys)])


def _smart_charging_switch(component: str, variable: str) -> bool:
    # names are CiString (case-insensitive, Part 2 2.1)
    return component.lower() == "smartchargingctrlr" and variable.lower() == "enabled"


def _turns_on(value: str) -> bool:
    return value.strip().lower() == "true"


def _set_configuration(b: Fields, q) -> call.SetVariables:
    component, variable = _key(b.string("key", required=True))
    value = b.string("value", required=True, max_chars=1000, may_be_empty=True)
    switch = _smart_charging_switch(component, variable)
    if switch and _turns_on(value):
        # as 2.0.1 writes a boolean ("true", nothing else): "TRUE" or " true" is rejected by a
        # strict station (smart charging stays off), maybe read as false by a lenient one
        value = "true"
    if switch and not _turns_on(value):
        # off, the station ignores every profile we installed (its fail-safe defaults too) and
        # draws its maximum, outside every limit the site keeps; anything but "true" may be
        # read as off by a lenient station
        raise CommandRefused(
            "SmartChargingCtrlr.Enabled is only set to true through smartcharge: turned off, "
            "the station ignores the site's charging profiles and its fail-safe defaults and "
            "draws its maximum outside the grid, circuit and demand-response limits the site "
            "keeps. To stop it charging use change-availability (Inoperative) or "
            "remote-stop; to take it out of the site's control remove it from the site file.")
    return call.SetVariables(set_variable_data=[{
        "attribute_value": value,
        "component": {"name": component}, "variable": {"name": variable}}])


def _clear(b: Fields, q) -> call.ClearChargingProfile:
    purpose = b.string("charging_profile_purpose", choices=ChargingProfilePurposeEnumType)
    criteria = remove_nones({"evse_id": b.integer("connector_id", minimum=0),
                             "charging_profile_purpose": purpose.value if purpose else None,
                             "stack_level": b.integer("stack_level", minimum=0)})
    profile_id = b.integer("id")
    if profile_id is None and not criteria:
        raise CommandInvalid("name the profile: id, or connector_id / "
                             "charging_profile_purpose / stack_level")
    return call.ClearChargingProfile(charging_profile_id=profile_id,
                                     charging_profile_criteria=criteria or None)


def _composite(b: Fields, query: Mapping[str, str]) -> call.GetCompositeSchedule:
    evse_id, duration_s, unit = composite_query(query)
    return call.GetCompositeSchedule(
        evse_id=evse_id, duration=duration_s,
        charging_rate_unit=ChargingRateUnitEnumType(unit) if unit else None)


def _transaction_status(b: Fields, query: Mapping[str, str]):
    text, theirs = query.get("transaction_id"), query.get("station_transaction_id")
    if theirs is not None:
        # the station's own id as it writes it: digits too (many stations number their
        # transactions), which `transaction_id` reads as ours
        if text is not None:
            raise CommandInvalid("give transaction_id (our session id) or "
                                 "station_transaction_id (the station's own), not both")
        return _transaction(theirs, "GetTransactionStatus")
    if text is None:
        return call.GetTransactionStatus()
    # ASCII digits: our session id (str.isdigit also takes digits int() does not read, "²");
    # more than 19 of them is past every id of ours and past int()'s limit at 4 300
    ours = text.isascii() and text.isdigit()
    if ours and len(text) > 19:
        raise CommandInvalid(f"no session {text[:40]}... (our session ids are 1 .. 2**63-1)")
    return _transaction(int(text) if ours else text, "GetTransactionStatus")


BUILDERS: Builders = {
    "remote-start": ("POST", _remote_start, {"id_tag", "connector_id", "id_token_type"}),
    "remote-stop": ("POST", lambda b, q: _transaction(
        b.raw("transaction_id"), "RequestStopTransaction"), {"transaction_id"}),
    "change-availability": ("POST", lambda b, q: call.ChangeAvailability(
        operational_status=b.string("type", required=True, choices=OperationalStatusEnumType),
        evse=_evse(b)), {"connector_id", "type"}),
    "reset": ("POST", _reset, {"type"}),
    "unlock-connector": ("POST", lambda b, q: call.UnlockConnector(
        evse_id=b.integer("connector_id", required=True, minimum=1), connector_id=1),
        {"connector_id"}),
    "trigger-message": ("POST", lambda b, q: call.TriggerMessage(
        requested_message=b.string("requested_message", required=True,
                                   choices=MessageTriggerEnumType),
        evse=_evse(b, connector=True)), {"requested_message", "connector_id"}),
    "configuration": ("GET", _get_configuration, set()),
    "change-configuration": ("POST", _set_configuration, {"key", "value"}),
    "clear-charging-profile": ("POST", _clear,
                               {"id", "connector_id", "charging_profile_purpose",
                                "stack_level"}),
    "composite-schedule": ("GET", _composite, set()),
    "transaction-status": ("GET", _transaction_status, set()),
}


class V201Commands(BuiltCommands):
    protocol = "ocpp2.0.1"
    version = "2.0.1"
    builders = BUILDERS

    async def check(self, request: Any) -> None:
        if isinstance(request, ForTransaction):
            return   # an int id, checked when the station's own id is known (`resolve`)
        await super().check(request)

    async def resolve(self, request: Any, link: Any) -> Any:
        if not isinstance(request, ForTransaction):
            return request
        station_tx = await station_transaction(link, request.our_transaction_id)
        if station_tx is None:
            raise CommandInvalid(f"no transaction {request.our_transaction_id} known on this "
                                 "station (give the station's own transactionId as a string; "
                                 "in a query: station_transaction_id)")
        return _transaction(station_tx, request.action)

    def action(self, request: Any) -> str:
        if isinstance(request, ForTransaction):
            return request.action
        return super().action(request)

    def sets_up_again(self, name: str, request: Any) -> bool:
        """Also smart charging turned on: whoever turned it off (at the station) may have
        dropped what we installed, and nothing else tells the site."""
        if isinstance(request, call.SetVariables):
            return any(_smart_charging_switch(item["component"]["name"],
                                              item["variable"]["name"])
                       and _turns_on(item["attribute_value"])
                       for item in request.set_variable_data)
        return super().sets_up_again(name, request)


__all__ = ["BUILDERS", "ForTransaction", "RESET_WORDS", "V201Commands"]
