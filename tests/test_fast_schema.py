"""The compiled schema check (ocpp/fast_schema.py) passes exactly what the library's check
passes: on every schema of a station's message and of our answer to it, for valid payloads
(fewest fields, every field, both edges) and for payloads broken in every place (a field
missing, one too many, a wrong type, 1.0 for an integer, True for a number, a string past its
maxLength, a value outside its enum, an empty array)."""

from __future__ import annotations

import copy
import decimal
import random
from typing import Any

import pytest
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallResult, MessageType, _validate_payload, get_validator

from smartcharge.ocpp import fast_schema
from tests.ocpp_payloads import STATION_ACTIONS, instance

WRONG_VALUES = ("x", 7, 1.0, 1.5, True, None, [], {}, "Z" * 2001, -1)
# a seeded sample of the one-place changes of each payload (all 52 742 of them, checked once,
# agreed; 2.0.1's nested reports make thousands, checked by the slow library at ~0.3 ms each)
MUTANTS_PER_PAYLOAD = 15
DELETE, ADD_FIELD = object(), object()


def library_passes(message_type: int, action: str, version: str, payload: Any) -> bool:
    message = Call("t", action, payload) if message_type == MessageType.Call \
        else CallResult("t", payload)
    message.action = action
    try:
        _validate_payload(message, version)
    except OCPPError:
        return False
    return True


def _paths(value: Any, path: tuple = ()):
    yield path
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _paths(sub, (*path, key))
    elif isinstance(value, list):
        for index, sub in enumerate(value):
            yield from _paths(sub, (*path, index))


def changes(payload: dict) -> list[tuple[tuple, Any]]:
    """Every one-place change of `payload`: (path, DELETE), (path, a wrong value), (path of an
    object, ADD_FIELD)."""
    found = []
    for path in _paths(payload):
        node = payload
        for part in path:
            node = node[part]
        if path:
            found.append((path, DELETE))
            found += [(path, wrong) for wrong in WRONG_VALUES]
        if isinstance(node, dict):
            found.append((path, ADD_FIELD))
    return found


def changed(payload: dict, path: tuple, change: Any) -> Any:
    result = copy.deepcopy(payload)
    parent = result
    for part in path[:-1]:
        parent = parent[part]
    if change is ADD_FIELD:
        node = parent[path[-1]] if path else result
        node["unexpectedField"] = 1
    elif change is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = change
    return result


def cases():
    for version, actions in STATION_ACTIONS.items():
        for action in actions:
            for message_type in (MessageType.Call, MessageType.CallResult):
                yield pytest.param(version, action, message_type,
                                   id=f"{version}-{action}-{message_type}")


@pytest.mark.parametrize("version,action,message_type", list(cases()))
def test_compiled_check_passes_what_the_library_passes(version, action, message_type):
    schema = get_validator(message_type, action, version).schema
    payloads = [instance(schema, full=full, edge=edge)
                for full in (False, True) for edge in (None, "low", "high")]
    checked = 0
    pick = random.Random(f"{version}{action}{message_type}")
    for valid in payloads:
        assert library_passes(message_type, action, version, valid)
        assert fast_schema.passes(message_type, action, version, valid)
        some = changes(valid)
        if len(some) > MUTANTS_PER_PAYLOAD:
            some = pick.sample(some, MUTANTS_PER_PAYLOAD)
        for path, change in some:
            broken = changed(valid, path, change)
            assert fast_schema.passes(message_type, action, version, broken) == \
                library_passes(message_type, action, version, broken), broken
            checked += 1
    assert checked > 0


# the 1.6 payloads the library reads with Decimal (for `multipleOf` 0.1): the station checks
# every SetChargingProfile we send with them (~2 ms each in the library)
DECIMAL_CALLS = ("SetChargingProfile", "RemoteStartTransaction")
LIMITS = (21.4, 16, 0.1, 0.0, -3.2, 4.11, 4.100000000000001, 0.30000000000000004, 1e12, 1e300,
          -1e300, 123456789.3, 1e-7, float("nan"), float("inf"), float("-inf"), True)


def _with_limit(payload: dict, action: str, limit: Any) -> dict:
    result = copy.deepcopy(payload)
    profile = result["csChargingProfiles" if action == "SetChargingProfile"
                     else "chargingProfile"]
    profile["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] = limit
    if "minChargingRate" in profile["chargingSchedule"]:
        profile["chargingSchedule"]["minChargingRate"] = limit
    return result


@pytest.mark.parametrize("action", DECIMAL_CALLS)
def test_decimal_payloads_compiled_with_an_exact_multiple_of(action):
    # read as the library reads it (its cache keeps the first reading's floats)
    schema = get_validator(MessageType.Call, action, "1.6", parse_float=decimal.Decimal).schema
    payloads = [instance(schema, full=full, edge=edge)
                for full in (False, True) for edge in (None, "low", "high")]
    pick = random.Random(action)
    for valid in payloads:
        if action == "RemoteStartTransaction" and "chargingProfile" not in valid:
            continue
        # a valid profile takes the compiled check (not the library's ~2 ms one)
        assert fast_schema.passes(MessageType.Call, action, "1.6", valid)
        tried = [_with_limit(valid, action, limit) for limit in LIMITS]
        tried += [changed(valid, path, change)
                  for path, change in pick.sample(changes(valid), 40)]
        for payload in tried:
            fast = fast_schema.passes(MessageType.Call, action, "1.6", payload)
            # the library's verdict (it never passes what the compiled check refuses wrongly:
            # a refusal only means "ask the library")
            assert not fast or library_passes(MessageType.Call, action, "1.6", payload), payload
        # the usual limits pass the compiled check itself
        for limit in (21.4, 16, 0.1, 0.0, 123456789.3, 1e12):
            assert fast_schema.passes(MessageType.Call, action, "1.6",
                                      _with_limit(valid, action, limit)), limit
        for limit in (4.11, 0.30000000000000004, float("nan"), float("inf"), True):
            assert not fast_schema.passes(MessageType.Call, action, "1.6",
                                          _with_limit(valid, action, limit)), limit


def test_decimal_payloads_keep_their_floats():
    # the library's check turns the payload's floats into Decimal; the compiled one passes
    # the payload as it is (the station reads float(Decimal(repr(x))) == x either way)
    payload = {"connectorId": 1, "csChargingProfiles": {
        "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Absolute", "chargingSchedule": {
            "chargingRateUnit": "W", "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 7360.4}]}}}
    assert fast_schema.passes(MessageType.Call, "SetChargingProfile", "1.6", payload)
    assert payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0][
        "limit"] == 7360.4
    # and what breaks the schema still does
    assert not fast_schema.passes(MessageType.Call, "SetChargingProfile", "1.6",
                                  {"connectorId": 1, "csChargingProfiles": {}})
