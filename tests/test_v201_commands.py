"""Remote commands to a 2.0.1 station on the same REST routes and bodies as 1.6 (issue 8): each
becomes one 2.0.1 request (schema-checked before it is sent) that a strict 2.0.1 station over a
real WebSocket receives; 2.0.1-specific wrong bodies are refused with a clear 422."""

from __future__ import annotations

import pytest

from smartcharge.appkeys import REGISTRY
from smartcharge.ocpp.commands import CommandInvalid, Fields
from smartcharge.ocpp.ports import commands_for
from tests.conftest import PASSWORD
from tests.ocpp201_station import station201

COMMANDS = [
    ("POST", "remote-start", {"id_tag": "DRIVER-1", "connector_id": 1},
     "RequestStartTransaction", {"status": "Accepted"}),
    ("POST", "remote-stop", {"transaction_id": "tx-of-the-station"},
     "RequestStopTransaction", {"status": "Rejected"}),
    ("POST", "change-availability", {"connector_id": 2, "type": "Inoperative"},
     "ChangeAvailability", {"status": "Accepted"}),
    ("POST", "reset", {"type": "Hard"}, "Reset", {"status": "Accepted"}),
    ("POST", "unlock-connector", {"connector_id": 2}, "UnlockConnector",
     {"status": "Unlocked"}),
    ("POST", "trigger-message", {"requested_message": "TransactionEvent", "connector_id": 1},
     "TriggerMessage", {"status": "Accepted"}),
    ("GET", "configuration?key=OCPPCommCtrlr.HeartbeatInterval&key=X.Nope", None,
     "GetVariables", None),
    ("POST", "change-configuration", {"key": "OCPPCommCtrlr.HeartbeatInterval", "value": "60"},
     "SetVariables", None),
    ("POST", "clear-charging-profile", {"connector_id": 1, "charging_profile_purpose":
                                        "TxProfile"}, "ClearChargingProfile",
     {"status": "Unknown"}),
    ("GET", "composite-schedule?connector_id=1&duration_s=3600&charging_rate_unit=A", None,
     "GetCompositeSchedule", {"status": "Rejected"}),   # nothing installed
    ("GET", "transaction-status?transaction_id=tx-of-the-station", None,
     "GetTransactionStatus", {"messagesInQueue": False, "ongoingIndicator": True}),
]


@pytest.mark.parametrize("method, route, body, action, answer", COMMANDS,
                         ids=[c[1].split("?")[0] for c in COMMANDS])
async def test_remote_command_round_trip_2_0_1(harness, method, route, body, action, answer):
    async with station201(harness.url("/ocpp"), "CP1", PASSWORD) as station:
        await harness.wait_for(lambda: harness.app[REGISTRY].get("CP1") is not None)
        response = await harness.api.request(
            method, harness.url(f"/api/stations/CP1/{route}"), json=body)
        assert response.status == 200, await response.text()
        result = await response.json()
        assert result["action"] == action
        if answer is not None:
            assert result["answer"] == answer
        assert [a for a, _ in station.received] == [action]
        received = station.received[0][1]
    if action == "RequestStartTransaction":
        assert received["idToken"] == {"idToken": "DRIVER-1", "type": "ISO14443"}
        assert received["evseId"] == 1 and isinstance(received["remoteStartId"], int)
    elif action == "Reset":
        assert received["type"] == "Immediate"          # 1.6's Hard
    elif action == "ChangeAvailability":
        assert received == {"operationalStatus": "Inoperative", "evse": {"id": 2}}
    elif action == "UnlockConnector":
        assert received == {"evseId": 2, "connectorId": 1}
    elif action == "TriggerMessage":
        assert received["evse"] == {"id": 1, "connectorId": 1}
    elif action == "GetVariables":
        results = {r["variable"]["name"]: r for r in result["answer"]["getVariableResult"]}
        assert results["HeartbeatInterval"]["attributeValue"] == "300"
        assert results["Nope"]["attributeStatus"] == "UnknownVariable"
    elif action == "SetVariables":
        assert result["answer"]["setVariableResult"][0]["attributeStatus"] == "Accepted"
        assert station.variables["OCPPCommCtrlr"]["HeartbeatInterval"] == "60"


BAD = [
    ("reset", {"type": "Gentle"}, "Hard, Soft (1.6) or Immediate, OnIdle (2.0.1)"),
    ("change-configuration", {"key": "HeartbeatInterval", "value": "60"},
     "Component.Variable"),
    ("remote-stop", {"transaction_id": 42}, "no transaction 42 known on this station"),
    ("remote-stop", {"transaction_id": "x" * 37}, "1..36 characters"),
    ("trigger-message", {"requested_message": "DiagnosticsStatusNotification"},
     "requested_message must be one of"),
    ("clear-charging-profile", {}, "name the profile"),
    ("remote-start", {"id_tag": "A", "id_token_type": "Card"}, "id_token_type must be one of"),
]


@pytest.mark.parametrize("route, body, message", BAD, ids=[f"{b[0]}-{i}"
                                                           for i, b in enumerate(BAD)])
async def test_2_0_1_wrong_bodies_are_422_before_anything_is_sent(harness, route, body,
                                                                  message):
    async with station201(harness.url("/ocpp"), "CP1", PASSWORD) as station:
        await harness.wait_for(lambda: harness.app[REGISTRY].get("CP1") is not None)
        response = await harness.api.post(harness.url(f"/api/stations/CP1/{route}"),
                                          json=body)
        assert response.status == 422, await response.text()
        assert message in (await response.json())["detail"]
        assert station.received == []


def test_configuration_needs_named_keys_on_2_0_1():
    commands = commands_for("ocpp2.0.1")

    class Query(dict):
        def getall(self, key, default):
            return self.get(key, default)
    with pytest.raises(CommandInvalid, match="at least one key=Component.Variable"):
        commands.build("configuration", Fields({}, set()), Query())
    # the 1.6 set has no transaction-status; 2.0.1 adds it on the same REST layout
    assert "transaction-status" in commands.catalogue
    assert "transaction-status" not in commands_for("ocpp1.6").catalogue
