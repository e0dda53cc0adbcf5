"""No REST command sends a station an absolute time (session 24's audit): the times it is sent
are moved onto a station's clock beyond the edge margin in ONE place, the SetChargingProfile
leaving a control port (`ocpp/port_base.py`, `_put`), and the operator's commands carry none
today - no ReserveNow (expiryDate), GetDiagnostics / GetLog (start and stop times),
UpdateFirmware (retrieveDate). An operator's absolute time is one the station acts on by its
own clock (a reservation on a station 20 min ahead would expire 20 min early in real time), so
a command that adds one must move it as `_put` does (`schedules.shifted_times` on the wire
payload, `station_shift_s` of the station's port). This guard names such a field the day one
is added, so that it is not sent on our clock unnoticed."""

from __future__ import annotations

import inspect
import json
import os
import re

import ocpp

from smartcharge.ocpp.v16 import commands as commands16
from smartcharge.ocpp.v201 import commands as commands201

# a remote start may carry a charging profile (its validFrom/validTo, startSchedule): our
# builders never give one (no body field makes one; asserted below) - the site's plans go out
# through the control port, moved there
NEVER_BUILT = ("chargingProfile",)


def _date_times(schema: dict, path: str = "") -> list[str]:
    """The paths of every date-time field of a JSON schema (definitions followed by name)."""
    found = []
    definitions = schema.get("definitions", {})

    def walk(node, at: str, seen: frozenset) -> None:
        if not isinstance(node, dict):
            return
        if node.get("format") == "date-time":
            found.append(at)
        ref = node.get("$ref", "")
        if ref.startswith("#/definitions/") and ref not in seen:
            walk(definitions.get(ref.rsplit("/", 1)[1]), at, seen | {ref})
        for name, child in node.get("properties", {}).items():
            walk(child, f"{at}.{name}", seen)
        if "items" in node:
            walk(node["items"], f"{at}[]", seen)
    walk(schema, path, frozenset())
    return found


def _actions(module) -> set[str]:
    """The `ocpp` calls a protocol's command module builds."""
    return set(re.findall(r"\bcall\.([A-Z]\w+)\(", inspect.getsource(module)))


def test_no_rest_command_sends_a_station_an_absolute_time():
    root = os.path.dirname(ocpp.__file__)
    fields = []
    for module, folder, suffix in ((commands16, "v16", ""), (commands201, "v201", "Request")):
        actions = _actions(module)
        assert "RemoteStartTransaction" in actions or "RequestStartTransaction" in actions
        assert "charging_profile=" not in inspect.getsource(module)
        for action in sorted(actions):
            with open(os.path.join(root, folder, "schemas", f"{action}{suffix}.json")) as f:
                fields += [f"{folder} {action}{field}" for field in _date_times(json.load(f))]
    sent = [f for f in fields if f.split(".")[1] not in NEVER_BUILT]
    assert sent == [], sent
